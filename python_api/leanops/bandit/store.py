"""``Experiment``: an experiment store in one SQLite file (WAL mode, one transaction per logged batch).

Tables: ``meta`` (arms, policy, created), ``exposures(unit_id UNIQUE, arm, time)``, ``conversions(unit_id
UNIQUE -> exposures, time)``. Logging is idempotent on ``unit_id`` (INSERT OR IGNORE: a retried event counts
once); a batch is checked whole before anything is written and written in one ``BEGIN IMMEDIATE``
transaction, so a batch with a bad row (unknown arm, conversion of an unknown unit, conversion before its
exposure, an exposure retried with another arm) writes nothing, and a writer killed mid-batch leaves the
committed batches intact (SQLite's journal). Several processes may log at once: a writer waits for the
lock (``busy_timeout``) instead of failing.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import sqlite3
import time as _time
from dataclasses import dataclass

import numpy as np
from scipy import stats

from .estimators import em_estimate
from .model import Observations
from .policies import beta_params, expected_loss, make_policy, prob_best

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS exposures (unit_id TEXT NOT NULL UNIQUE, arm INTEGER NOT NULL, time REAL NOT NULL);
CREATE TABLE IF NOT EXISTS conversions (unit_id TEXT NOT NULL UNIQUE REFERENCES exposures(unit_id),
                                        time REAL NOT NULL);
"""
STORE_POLICIES = ("dts_em", "ts_naive", "bayes_grid", "ab")  # the ones that need no known delay CDF
CSV_FIELDS = ("kind", "unit_id", "arm", "time")


@dataclass
class ArmReport:
    arm: str
    exposures: int
    conversions: int
    rate: float             # EM estimate of the eventual conversion rate
    rate_low: float         # credible interval (Beta on the delay-adjusted counts)
    rate_high: float
    mean_delay: float       # 1 / lam (same unit as the logged times); NaN before a first conversion
    prob_best: float
    expected_loss: float    # E[max_j theta_j - theta_arm]: conversion rate lost by stopping now with this arm


class Experiment:
    """An experiment in the SQLite file ``path``; ``arms`` (names) are needed only to create it.

    ``Experiment(path, ["A", "B"])`` creates the file (or opens it if it holds the same arms);
    ``Experiment(path)`` opens an existing one."""

    def __init__(self, path, arms=None, *, policy: str = "dts_em", busy_timeout_s: float = 60.0):
        self.path = os.fspath(path)
        self._conn = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None)
        self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = FULL")  # a committed batch survives a crash of the machine too
        self._on_batch_written = None  # test hook: called inside the transaction, before COMMIT
        with self._transaction():
            for statement in filter(str.strip, SCHEMA.split(";")):  # not executescript: it would COMMIT
                self._conn.execute(statement)
            stored = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
            if not stored:
                if arms is None:
                    raise ValueError(f"{self.path} holds no experiment; pass arms=[...] to create one")
                arms = self._check_arms(arms)
                if policy not in STORE_POLICIES:
                    raise ValueError(f"policy must be one of {STORE_POLICIES}, got {policy!r}")
                self._conn.executemany("INSERT INTO meta VALUES (?, ?)",
                                       [("arms", json.dumps(arms)), ("policy", policy),
                                        ("created", repr(_time.time()))])
                stored = {"arms": json.dumps(arms), "policy": policy}
            elif arms is not None and list(arms) != json.loads(stored["arms"]):
                raise ValueError(f"{self.path} holds arms {json.loads(stored['arms'])}, not {list(arms)}")
        self.arms: list[str] = json.loads(stored["arms"])
        self.policy: str = stored["policy"]
        self._arm_index = {a: i for i, a in enumerate(self.arms)}
        self._estimate = None  # EM warm start between calls
        self._snapshot = {"exp_rowid": 0, "conv_rowid": 0, "rowid": np.zeros(0, np.int64),
                          "arm": np.zeros(0, np.int64), "t_exp": np.zeros(0), "t_conv": np.zeros(0)}

    @staticmethod
    def _check_arms(arms) -> list[str]:
        if isinstance(arms, str) or not hasattr(arms, "__iter__"):
            raise TypeError(f"arms must be a list of arm names, got {type(arms).__name__}")
        arms = [str(a) for a in arms]
        if len(arms) < 2 or len(set(arms)) != len(arms) or any(not a for a in arms):
            raise ValueError(f"arms must be at least two distinct non-empty names, got {arms}")
        return arms

    def close(self) -> None:
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- writing -------------------------------------------------------------------------------------
    class _Tx:
        def __init__(self, conn):
            self.conn = conn

        def __enter__(self):
            self.conn.execute("BEGIN IMMEDIATE")  # take the write lock now: no lock upgrade deadlock

        def __exit__(self, exc_type, *_):
            self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")

    def _transaction(self):
        return self._Tx(self._conn)

    def _parse_exposures(self, rows, first_line: int = 1):
        out, errors = [], []
        for i, row in enumerate(rows):
            try:
                unit_id, arm, t = row
                unit_id = self._unit(unit_id)
                if arm not in self._arm_index:
                    raise ValueError(f"unknown arm {arm!r} (arms: {self.arms})")
                out.append((unit_id, self._arm_index[arm], self._time(t)))
            except (ValueError, TypeError) as exc:
                errors.append(f"row {first_line + i}: {exc}")
        return out, errors

    def _parse_conversions(self, rows, first_line: int = 1):
        out, errors = [], []
        for i, row in enumerate(rows):
            try:
                unit_id, t = row
                out.append((self._unit(unit_id), self._time(t)))
            except (ValueError, TypeError) as exc:
                errors.append(f"row {first_line + i}: {exc}")
        return out, errors

    @staticmethod
    def _unit(unit_id) -> str:
        if unit_id is None or str(unit_id).strip() == "":
            raise ValueError("unit_id is empty")
        return str(unit_id).strip()

    @staticmethod
    def _time(t) -> float:
        try:
            t = float(t)
        except (TypeError, ValueError):
            raise ValueError(f"time {t!r} is not a number") from None
        if not math.isfinite(t):
            raise ValueError(f"time {t!r} is not finite")
        return t

    @staticmethod
    def _raise(errors, what):
        if errors:
            shown = "; ".join(errors[:20]) + (f"; ... ({len(errors)} bad rows)" if len(errors) > 20 else "")
            raise ValueError(f"{what}: nothing was written; {shown}")

    def _write(self, exposures, conversions) -> tuple[int, int]:
        """Writes checked exposures and conversions in one transaction; returns how many were new."""
        c = self._conn
        with self._transaction():
            c.execute("CREATE TEMP TABLE IF NOT EXISTS batch_exp (unit_id TEXT, arm INTEGER, time REAL)")
            c.execute("CREATE TEMP TABLE IF NOT EXISTS batch_conv (unit_id TEXT, time REAL)")
            c.execute("DELETE FROM batch_exp")
            c.execute("DELETE FROM batch_conv")
            c.executemany("INSERT INTO batch_exp VALUES (?, ?, ?)", exposures)
            c.executemany("INSERT INTO batch_conv VALUES (?, ?)", conversions)
            clash = c.execute("""SELECT b.unit_id, b.arm, e.arm FROM batch_exp b JOIN exposures e USING (unit_id)
                                 WHERE b.arm != e.arm
                                 UNION ALL
                                 SELECT b1.unit_id, b1.arm, b2.arm FROM batch_exp b1 JOIN batch_exp b2
                                 ON b1.unit_id = b2.unit_id AND b1.arm < b2.arm LIMIT 5""").fetchall()
            if clash:
                raise ValueError("exposures: nothing was written; a unit cannot be exposed to two arms: " +
                                 ", ".join(f"{u!r} ({self.arms[x]} vs {self.arms[y]})" for u, x, y in clash))
            before = c.execute("SELECT (SELECT count(*) FROM exposures), (SELECT count(*) FROM conversions)").fetchone()
            c.execute("INSERT OR IGNORE INTO exposures SELECT unit_id, arm, time FROM batch_exp")
            unknown = c.execute("""SELECT unit_id FROM batch_conv WHERE unit_id NOT IN
                                   (SELECT unit_id FROM exposures) LIMIT 5""").fetchall()
            if unknown:
                raise ValueError("conversions: nothing was written; conversion of a unit that was never exposed: "
                                 + ", ".join(repr(u) for (u,) in unknown))
            early = c.execute("""SELECT b.unit_id FROM batch_conv b JOIN exposures e USING (unit_id)
                                 WHERE b.time < e.time LIMIT 5""").fetchall()
            if early:
                raise ValueError("conversions: nothing was written; conversion time before the unit's exposure: "
                                 + ", ".join(repr(u) for (u,) in early))
            c.execute("INSERT OR IGNORE INTO conversions SELECT unit_id, min(time) FROM batch_conv GROUP BY unit_id")
            after = c.execute("SELECT (SELECT count(*) FROM exposures), (SELECT count(*) FROM conversions)").fetchone()
            if self._on_batch_written is not None:
                self._on_batch_written()
        return after[0] - before[0], after[1] - before[1]

    def log_exposures(self, rows) -> int:
        """Logs ``(unit_id, arm_name, time)`` rows in one transaction; returns how many units were new."""
        exposures, errors = self._parse_exposures(list(rows))
        self._raise(errors, "exposures")
        return self._write(exposures, [])[0]

    def log_conversions(self, rows) -> int:
        """Logs ``(unit_id, time)`` rows in one transaction; returns how many conversions were new."""
        conversions, errors = self._parse_conversions(list(rows))
        self._raise(errors, "conversions")
        return self._write([], conversions)[1]

    def log_csv(self, text_or_file) -> tuple[int, int]:
        """Logs a CSV with header ``kind,unit_id,arm,time`` (kind ``exposure`` or ``conversion``; arm empty
        for conversions) in one transaction. Any malformed row rejects the whole file, naming its line."""
        fh = io.StringIO(text_or_file) if isinstance(text_or_file, str) else text_or_file
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != list(CSV_FIELDS):
            raise ValueError(f"CSV line 1: header must be {','.join(CSV_FIELDS)}, got {header}")
        exposures, conversions, errors = [], [], []
        for row in reader:
            line = reader.line_num
            if not row or all(not x.strip() for x in row):
                continue
            if len(row) != 4:
                errors.append(f"line {line}: expected 4 fields, got {len(row)}")
                continue
            kind, unit_id, arm, t = (x.strip() for x in row)
            if kind == "exposure":
                ok, bad = self._parse_exposures([(unit_id, arm, t)], line)
                exposures += ok
            elif kind == "conversion":
                if arm:
                    bad = [f"row {line}: a conversion has no arm (got {arm!r})"]
                    ok = []
                else:
                    ok, bad = self._parse_conversions([(unit_id, t)], line)
                conversions += ok
            else:
                bad = [f"row {line}: kind must be 'exposure' or 'conversion', got {kind!r}"]
            errors += [b.replace("row ", "line ", 1) for b in bad]
        self._raise(errors, "CSV")
        return self._write(exposures, conversions)

    # --- reading -------------------------------------------------------------------------------------
    def counts(self) -> tuple[int, int]:
        return self._conn.execute("SELECT (SELECT count(*) FROM exposures), (SELECT count(*) FROM conversions)"
                                  ).fetchone()

    def _refresh(self) -> None:
        """Brings the in-memory copy of the event tables up to date, reading only rows added since the last
        call (both tables only grow: rows are never updated or deleted, and rowids increase), all in one read
        transaction (a consistent WAL snapshot even while other processes write)."""
        snap = self._snapshot
        c = self._conn
        c.execute("BEGIN")
        try:
            new_exp = c.execute("SELECT rowid, arm, time FROM exposures WHERE rowid > ? ORDER BY rowid",
                                (snap["exp_rowid"],)).fetchall()
            new_conv = c.execute("""SELECT c.rowid, e.rowid, c.time FROM conversions c JOIN exposures e
                                    USING (unit_id) WHERE c.rowid > ?""", (snap["conv_rowid"],)).fetchall()
        finally:
            c.execute("COMMIT")
        if new_exp:
            arr = np.array(new_exp, dtype=float)
            snap["rowid"] = np.concatenate([snap["rowid"], arr[:, 0].astype(np.int64)])
            snap["arm"] = np.concatenate([snap["arm"], arr[:, 1].astype(np.int64)])
            snap["t_exp"] = np.concatenate([snap["t_exp"], arr[:, 2]])
            snap["t_conv"] = np.concatenate([snap["t_conv"], np.full(len(new_exp), np.nan)])
            snap["exp_rowid"] = int(arr[-1, 0])
        if new_conv:
            arr = np.array(new_conv, dtype=float)
            snap["t_conv"][np.searchsorted(snap["rowid"], arr[:, 1].astype(np.int64))] = arr[:, 2]
            snap["conv_rowid"] = max(snap["conv_rowid"], int(arr[:, 0].max()))

    def observations(self, now: float | None = None) -> Observations:
        """The snapshot the policy sees at time ``now`` (default: the latest logged time). Events after
        ``now`` are not yet seen. Only events logged since the previous call are read from the file."""
        self._refresh()
        snap = self._snapshot
        if snap["arm"].size == 0:
            return Observations.empty(len(self.arms))
        arm, t_exp, t_conv = snap["arm"], snap["t_exp"], snap["t_conv"]
        if now is None:
            now = float(np.nanmax(np.concatenate([t_exp, t_conv])))
        seen = t_exp <= now
        arm, t_exp, t_conv = arm[seen], t_exp[seen], t_conv[seen]
        converted = np.isfinite(t_conv) & (t_conv <= now)
        delay = np.where(converted, t_conv - t_exp, np.nan)
        return Observations(arm, now - t_exp, converted, delay, len(self.arms))

    def allocate(self, n: int, *, now: float | None = None, min_share: float = 0.0, seed=None) -> list[str]:
        """The next ``n`` assignments (arm names) from the current estimates by the experiment's policy."""
        obs = self.observations(now)
        pol = make_policy(self.policy, len(self.arms), min_share=min_share)
        if hasattr(pol, "estimate"):
            pol.estimate = self._estimate
        idx = pol.allocate(n, obs, np.random.default_rng(seed))
        self._estimate = getattr(pol, "estimate", None)
        return [self.arms[i] for i in idx]

    def report(self, *, now: float | None = None, level: float = 0.95, draws: int = 20000, seed=0) -> list[ArmReport]:
        """Per arm: EM conversion rate with a credible interval, mean delay, probability of being best and
        expected loss of stopping now with that arm (Monte Carlo over the delay-adjusted Beta posteriors)."""
        if not (0 < level < 1):
            raise ValueError(f"level must be in (0, 1), got {level}")
        obs = self.observations(now)
        k = len(self.arms)
        n, s = obs.counts()
        theta, lam = em_estimate(obs.elapsed, obs.converted, obs.delay, obs.arm, n_arms=k, init=self._estimate)
        self._estimate = (theta, lam)
        lam_u = np.nan_to_num(lam, nan=1.0)[obs.arm]
        n_eff = np.bincount(obs.arm, weights=-np.expm1(-lam_u * obs.elapsed), minlength=k)
        a, b = beta_params(s, n_eff)
        samples = np.random.default_rng(seed).beta(a, b, size=(draws, k))
        pb, loss = prob_best(samples), expected_loss(samples)
        lo, hi = stats.beta.ppf((1 - level) / 2, a, b), stats.beta.ppf((1 + level) / 2, a, b)
        return [ArmReport(self.arms[j], int(n[j]), int(s[j]), float(theta[j]), float(lo[j]), float(hi[j]),
                          float(1 / lam[j]) if s[j] > 0 else math.nan, float(pb[j]),
                          float(loss[j])) for j in range(k)]


def format_report(rows: list[ArmReport]) -> str:
    lines = [f"{'arm':>10} {'exposed':>8} {'converted':>9} {'rate (EM)':>9} {'95% interval':>17} "
             f"{'mean delay':>10} {'P(best)':>7} {'loss if stop':>12}"]
    for r in rows:
        lines.append(f"{r.arm:>10} {r.exposures:8d} {r.conversions:9d} {r.rate:9.4f} "
                     f"{f'{r.rate_low:.4f}-{r.rate_high:.4f}':>17} {r.mean_delay:10.1f} {r.prob_best:7.3f} "
                     f"{r.expected_loss:12.5f}")
    return "\n".join(lines)

"""Bandit benchmarks (``leanops bench bandit``), side by side in one process with the interleaved timer:

1. the EM update (fixed number of cycles, same start) on 10^6 logged units x 3 arms: ``em_estimate``
   (numpy: pending units sorted by arm once, then in-place passes over each arm's slice) against the same
   algorithm as a straightforward per-unit Python loop (``em_estimate_loop``, the anchor), plus an ablation
   row vectorised the obvious way (theta and lam gathered per unit, ``np.bincount`` by arm every cycle),
   which isolates what the sorted in-place layout adds;
2. ``Experiment.allocate(500)`` on a SQLite store holding 10^6 exposures and their conversions: cold (a
   fresh connection reads every event), warm (the product loop: log the 500 exposures just served, then
   allocate; the store reads only rows added since its last call), and EM + sampling alone;
3. the simulation study: one repetition (n = 10,000 exposures, batches of 500) per policy, anchor
   ``bayes_grid`` (the paper's slow fully Bayesian comparison).
Quick: 10^5 units and events, n = 2,000.
"""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from ..bandit.estimators import _initial, em_estimate, em_estimate_loop
from ..bandit.model import check_units
from ..bandit.simulate import run_one
from .timing import device_tag, machine, ratio, runner_note, time_providers

FULL = dict(units=1_000_000, events=1_000_000, sim_n=10_000)
QUICK = dict(units=100_000, events=100_000, sim_n=2_000)
CYCLES = 10  # a warm-started update runs a few to a few tens of cycles
LOOP = "per-unit Python loop"
VECTORISED = "numpy vectorised (em_estimate)"
PER_ARM = "ablation: per-unit gathers + bincount"
SIM_POLICIES = ("dts_em", "dts_known", "ts_naive", "ducb", "dbucb", "ab", "bayes_grid")


def logged_units(n: int, seed: int = 0):
    """n units on 3 arms (rates 0.5/0.4/0.3, mean delays 1000/750/500), exposed uniformly over the last
    4000 time units: many conversions still pending."""
    rng = np.random.default_rng(seed)
    arm = rng.integers(0, 3, n)
    elapsed = rng.uniform(1.0, 4000.0, n)
    delay = rng.exponential(np.array([1000.0, 750.0, 500.0])[arm])
    converted = (rng.random(n) < np.array([0.5, 0.4, 0.3])[arm]) & (delay <= elapsed)
    return elapsed, converted, np.where(converted, delay, np.nan), arm


def em_bincount_gather(elapsed, converted, delay, arm, cycles: int = CYCLES):
    """The ablation: the same EM vectorised the obvious way, gathering theta and lam per unit and summing
    with ``np.bincount`` by arm every cycle (no sort into per-arm slices, no in-place passes)."""
    e, c, d, a, k = check_units(elapsed, converted, delay, arm)
    n = np.bincount(a, minlength=k).astype(float)
    s = np.bincount(a, weights=c.astype(float), minlength=k)
    sum_d = np.bincount(a, weights=np.where(c, d, 0.0), minlength=k)
    theta, lam = _initial(s, n, sum_d, None, float(e.mean()))
    e_w, a_w = e[~c], a[~c]
    for _ in range(cycles):
        th, la = theta[a_w], lam[a_w]
        still = th * np.exp(-la * e_w)
        w = still / np.maximum(1.0 - th + still, 1e-300)
        sw = np.bincount(a_w, weights=w, minlength=k)
        swe = np.bincount(a_w, weights=w * e_w, minlength=k)
        total = s + sw
        theta, lam = total / n, np.where(s > 0, total / (sum_d + swe + sw / lam), lam)
    return theta, lam


def build_store(path: str, events: int, seed: int = 0):
    from ..bandit.store import Experiment

    e, c, d, a = logged_units(events, seed)
    t_exp = 10_000.0 - e
    ex = Experiment(path, ["A", "B", "C"])
    ids = [f"u{i}" for i in range(events)]
    names = np.array(["A", "B", "C"])[a].tolist()
    for lo in range(0, events, 200_000):  # batches of 200k events
        hi = min(lo + 200_000, events)
        ex.log_exposures(zip(ids[lo:hi], names[lo:hi], t_exp[lo:hi].tolist()))
    conv = np.flatnonzero(c)
    ex.log_conversions(zip([ids[i] for i in conv], (t_exp[conv] + d[conv]).tolist()))
    return ex, 10_000.0


def run(device=None, quick=False, out_dir="benchmarks/results", repeats=None):
    from tqdm import tqdm

    if device not in (None, "cpu"):
        raise ValueError(f"the bandit benchmarks run on the CPU (numpy, SQLite); got device={device!r}")
    shape = QUICK if quick else FULL
    repeats = repeats or (3 if quick else 5)
    rows, parts = [], tqdm(total=3, desc="bench bandit", unit="part")

    data = logged_units(shape["units"])
    fns = {LOOP: lambda: em_estimate_loop(*data, cycles=CYCLES),
           VECTORISED: lambda: em_estimate(*data, cycles=CYCLES),
           PER_ARM: lambda: em_bincount_gather(*data)}
    t = time_providers(fns, "cpu", repeats, keep_result=True)
    agree = float(np.max(np.abs(np.array(t[LOOP].last_result) - np.array(t[VECTORISED].last_result))
                         / np.abs(np.array(t[LOOP].last_result))))
    for name in fns:
        rows.append({"part": f"EM update, {shape['units']} units x 3 arms, {CYCLES} cycles", "provider": name,
                     **t[name].to_dict("ms"), "vs_anchor": ratio(t[LOOP], t[name], LOOP).to_dict()})
    parts.update()

    with tempfile.TemporaryDirectory() as tmp:
        from ..bandit.policies import EMDelayTS
        from ..bandit.store import Experiment

        path = os.path.join(tmp, "bench.db")
        ex, now = build_store(path, shape["events"])
        n_exp, n_conv = ex.counts()
        obs = ex.observations(now)
        fresh_ids = iter(range(10**9))

        def cold():  # a new process's first call: opens the file and reads every event
            with Experiment(path) as fresh:
                return fresh.allocate(500, now=now, seed=0)

        def warm():  # the product loop: log the batch just served, allocate the next (reads only the new rows)
            batch = [(f"new{next(fresh_ids)}", "A", now) for _ in range(500)]
            ex.log_exposures(batch)
            return ex.allocate(500, now=now, seed=0)

        cold_name = "cold: open + allocate(500) (reads all events)"
        fns = {cold_name: cold, "warm: log 500 exposures + allocate(500)": warm,
               "EM from a cold start + sampling, on the snapshot":
                   lambda: EMDelayTS(3).allocate(500, obs, np.random.default_rng(0))}
        ta = time_providers(fns, "cpu", repeats)
        for name in fns:
            rows.append({"part": f"store with {n_exp} exposures + {n_conv} conversions", "provider": name,
                         **ta[name].to_dict("ms"), "vs_anchor": ratio(ta[cold_name], ta[name], cold_name).to_dict()})
        ex.close()
    parts.update()

    sim = {p: (lambda p=p: run_one(p, (0.5, 0.4, 0.3), (1000, 750, 500), "exp", 1.5, shape["sim_n"], 500, 0))
           for p in SIM_POLICIES}
    ts = time_providers(sim, "cpu", max(2, repeats - 2))
    for name in SIM_POLICIES:
        rows.append({"part": f"simulation, one repetition, n = {shape['sim_n']}", "provider": name,
                     **ts[name].to_dict("ms"), "vs_anchor": ratio(ts["bayes_grid"], ts[name], "bayes_grid").to_dict()})
    parts.close()

    os.makedirs(out_dir, exist_ok=True)
    tag = device_tag("cpu") + ("-quick" if quick else "")
    result = {"family": "bandit", "device": tag, "machine": machine(), "runner": runner_note("bandit", quick),
              "anchor": {"EM": LOOP, "store": "cold allocate(500)", "simulation": "bayes_grid"}, "repeats": repeats,
              "shape": shape, "em_cycles": CYCLES, "em_loop_vs_vectorised_max_rel_diff": agree, "rows": rows}
    path = os.path.join(out_dir, f"bandit-{tag}.json")
    with open(path, "w") as fh:
        json.dump(result, fh, indent=1)
    part = None
    for r in rows:
        if r["part"] != part:
            part = r["part"]
            anchor = "x " + r["vs_anchor"]["anchor"]
            print(f"\n{part}\n{'provider':44} {'median ms':>11} {'p25-p75 ms':>21} {anchor:>28}")
        v = r["vs_anchor"]
        print(f"{r['provider']:44} {r['median_ms']:11.2f} {r['p25_ms']:10.2f}-{r['p75_ms']:<10.2f} "
              f"{v['ratio']:12.2f}x ({v['ratio_p25']:.2f}-{v['ratio_p75']:.2f})")
    print(f"\nEM loop and vectorised results agree to {agree:.1e} (max relative difference)")
    print(f"ratio = anchor median / provider median; (spread) = p25-p75 of the paired per-repeat ratios; "
          f"runner: {result['runner']} on {tag}")
    print(f"wrote {path}")
    return result

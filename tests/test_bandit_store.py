"""leanops.bandit.Experiment (SQLite store) and `leanops experiment`: idempotent logging, rejected
conversions of unknown units, malformed CSV rows rejected whole with line numbers, a writer killed with
SIGKILL mid-batch, four processes logging at once, report and allocate."""
import io
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from leanops.bandit import Experiment
from leanops.cli import main

PYTHONPATH = os.path.join(os.path.dirname(__file__), "..", "python_api")


@pytest.fixture
def exp(tmp_path):
    with Experiment(tmp_path / "e.db", ["A", "B", "C"]) as ex:
        yield ex


def test_store_is_wal_and_reopens_with_its_arms(tmp_path, exp):
    assert exp._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with Experiment(tmp_path / "e.db") as again:
        assert again.arms == ["A", "B", "C"] and again.policy == "dts_em"
    with pytest.raises(ValueError, match="holds arms"):
        Experiment(tmp_path / "e.db", ["A", "B"])
    with pytest.raises(ValueError, match="holds no experiment"):
        Experiment(tmp_path / "new.db")
    with pytest.raises(ValueError, match="at least two distinct"):
        Experiment(tmp_path / "bad.db", ["A", "A"])
    with pytest.raises(ValueError, match="policy must be one of"):
        Experiment(tmp_path / "bad2.db", ["A", "B"], policy="ducb")


def test_logging_is_idempotent_on_unit_id(exp):
    rows = [(f"u{i}", "ABC"[i % 3], float(i)) for i in range(30)]
    assert exp.log_exposures(rows) == 30
    assert exp.log_exposures(rows[:10] + [("u99", "A", 50.0)]) == 1  # a retried batch counts once
    assert exp.log_conversions([("u1", 5.0), ("u2", 6.0)]) == 2
    assert exp.log_conversions([("u1", 5.0), ("u1", 5.0), ("u4", 9.0)]) == 1
    assert exp.counts() == (31, 3)


def test_bad_events_are_rejected_and_nothing_is_written(exp):
    exp.log_exposures([("u1", "A", 0.0), ("u2", "B", 1.0)])
    with pytest.raises(ValueError, match="never exposed: 'ghost'"):
        exp.log_conversions([("u1", 3.0), ("ghost", 4.0)])
    with pytest.raises(ValueError, match="before the unit's exposure"):
        exp.log_conversions([("u2", 0.5)])
    with pytest.raises(ValueError, match="two arms"):
        exp.log_exposures([("u3", "A", 2.0), ("u1", "B", 2.0)])
    with pytest.raises(ValueError, match="unknown arm 'Z'"):
        exp.log_exposures([("u4", "Z", 2.0)])
    assert exp.counts() == (2, 0)


def test_malformed_csv_rows_name_their_line_and_write_nothing(exp):
    text = textwrap.dedent("""\
        kind,unit_id,arm,time
        exposure,u1,A,0
        exposure,u2,B,not-a-time
        conversion,u1,,4
        click,u3,A,1
        exposure,u4,A
        exposure,,A,3
        """)
    with pytest.raises(ValueError) as info:
        exp.log_csv(text)
    msg = str(info.value)
    for line in ("line 3: time 'not-a-time'", "line 5: kind must be", "line 6: expected 4 fields",
                 "line 7: unit_id is empty"):
        assert line in msg
    assert "nothing was written" in msg and exp.counts() == (0, 0)
    with pytest.raises(ValueError, match="line 1: header"):
        exp.log_csv("unit,arm\nu1,A\n")
    assert exp.log_csv("kind,unit_id,arm,time\nexposure,u1,A,0\nconversion,u1,,4\n") == (1, 1)


def test_report_and_allocate_follow_the_data(exp):
    rng = np.random.default_rng(0)
    n = 6000
    arm = rng.integers(0, 3, n)
    t = np.arange(n, dtype=float)
    delay = rng.exponential(np.array([300.0, 200.0, 100.0])[arm])
    conv = (rng.random(n) < np.array([0.3, 0.1, 0.1])[arm]) & (t + delay <= n)
    exp.log_exposures([(f"u{i}", "ABC"[a], t[i]) for i, a in enumerate(arm)])
    exp.log_conversions([(f"u{i}", t[i] + delay[i]) for i in np.flatnonzero(conv)])
    rep = exp.report(now=n)
    assert [r.arm for r in rep] == ["A", "B", "C"]
    assert rep[0].rate == pytest.approx(0.3, rel=0.1) and rep[0].rate_low < 0.3 < rep[0].rate_high
    assert rep[0].mean_delay == pytest.approx(300, rel=0.2) and rep[0].prob_best > 0.99
    assert rep[0].expected_loss < 1e-3 < rep[1].expected_loss
    picks = exp.allocate(200, now=n, min_share=0.1, seed=1)
    assert len(picks) == 200 and set(picks) <= {"A", "B", "C"} and picks.count("A") > 100
    early = exp.observations(now=100.0)  # events after `now` are not seen yet
    assert early.n_units == 101 and early.converted.sum() == ((t + delay <= 100) & conv).sum()


WRITER = textwrap.dedent("""
    import sys, time, types
    # the store needs numpy, scipy and sqlite3 only: a bare package object skips importing torch (the
    # leanops package's own import), which keeps these five subprocesses cheap
    package = types.ModuleType("leanops")
    package.__path__ = [sys.argv[5]]
    sys.modules["leanops"] = package
    from leanops.bandit.store import Experiment
    path, first, batches, pause_in = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    ex = Experiment(path)
    state = {"batch": 0}
    def hook():  # inside the transaction, before COMMIT
        if state["batch"] == pause_in:
            print("inside", state["batch"], flush=True)
            time.sleep(60)
    ex._on_batch_written = hook
    for b in range(batches):
        state["batch"] = b
        units = [(f"w{first}-{b}-{i}", "AB"[i % 2], float(b)) for i in range(200)]
        ex.log_exposures(units)
        ex.log_conversions([(u, t + 1.0) for u, _, t in units[::3]])
        ex.log_exposures(units[:50])  # a retry
        print("committed", b, flush=True)
""")


def _writer(path, first, batches, pause_in=-1):
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "LEANOPS_QUIET": "1", "OMP_NUM_THREADS": "1"}
    package = os.path.join(PYTHONPATH, "leanops")
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(first), str(batches), str(pause_in), package],
                            stdout=subprocess.PIPE, text=True, env=env)


def test_writer_killed_mid_batch_loses_no_committed_event(tmp_path):
    path = tmp_path / "kill.db"
    Experiment(path, ["A", "B"]).close()
    proc = _writer(path, 0, 10, pause_in=3)
    lines = []
    for line in proc.stdout:  # wait until the writer is inside batch 3's transaction
        lines.append(line.split())
        if lines[-1][0] == "inside":
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    committed = [int(b) for kind, b in lines if kind == "committed"]
    assert committed == [0, 1, 2]
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    with Experiment(path) as ex:  # committed batches whole, nothing of the killed one
        assert ex.counts() == (600, 3 * 67)
        got = {u for (u,) in ex._conn.execute("SELECT unit_id FROM exposures")}
        assert got == {f"w0-{b}-{i}" for b in range(3) for i in range(200)}
        assert ex.log_exposures([("after", "A", 9.0)]) == 1  # and the file takes new writes


def test_four_processes_logging_at_once_lose_and_duplicate_nothing(tmp_path):
    path = tmp_path / "conc.db"
    Experiment(path, ["A", "B"]).close()
    # writers 0 and 1 log the same units (as two retrying clients would); 2 and 3 their own
    procs = [_writer(path, first, 6) for first in (0, 0, 2, 3)]
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0 and out.count("committed") == 6
    with Experiment(path) as ex:
        assert ex.counts() == (3 * 6 * 200, 3 * 6 * 67)


def test_cli_create_log_allocate_report(tmp_path, monkeypatch, capsys):
    path = str(tmp_path / "cli.db")
    assert main(["experiment", "create", path, "--arms", "red", "blue"]) == 0
    csv_path = tmp_path / "events.csv"
    csv_path.write_text("kind,unit_id,arm,time\nexposure,u1,red,0\nexposure,u2,blue,1\nconversion,u1,,3\n")
    assert main(["experiment", "log", path, str(csv_path)]) == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO("kind,unit_id,arm,time\nexposure,u3,red,2\n"))
    assert main(["experiment", "log", path]) == 0
    assert "1 new exposures" in capsys.readouterr().out
    assert main(["experiment", "allocate", path, "4", "--seed", "0"]) == 0
    assert set(capsys.readouterr().out.split()) <= {"red", "blue"}
    assert main(["experiment", "report", path]) == 0
    out = capsys.readouterr().out
    assert "P(best)" in out and "red" in out and "blue" in out
    monkeypatch.setattr(sys, "stdin", io.StringIO("kind,unit_id,arm,time\nconversion,ghost,,3\n"))
    assert main(["experiment", "log", path]) == 2
    assert "never exposed" in capsys.readouterr().err


def test_snapshot_reads_new_events_incrementally_and_matches_a_fresh_read(tmp_path):
    path = tmp_path / "inc.db"
    with Experiment(path, ["A", "B"]) as ex, Experiment(path) as other:
        ex.log_exposures([("u1", "A", 0.0), ("u2", "B", 1.0)])
        assert ex.observations(now=10.0).n_units == 2
        other.log_exposures([("u3", "A", 2.0)])  # another connection writes
        other.log_conversions([("u1", 4.0), ("u3", 5.0)])
        ex.log_conversions([("u2", 3.0)])
        got = ex.observations(now=10.0)
        with Experiment(path) as fresh:
            want = fresh.observations(now=10.0)
        for field in ("arm", "elapsed", "converted", "delay"):
            np.testing.assert_array_equal(getattr(got, field), getattr(want, field))
        np.testing.assert_array_equal(got.delay, [4.0, 2.0, 3.0])

"""``leanops demo`` section: a short run of the simulation study and the experiment store."""
from __future__ import annotations

import os
import tempfile

import numpy as np


def section(quick: bool) -> None:
    from tqdm import tqdm

    from . import POLICY_NAMES, Experiment, simulate
    from .store import format_report

    p, means = (0.1, 0.05, 0.03), (1000, 750, 500)
    n, reps = (3000, 3) if quick else (10_000, 10)
    print(f"\n== Delayed-feedback bandits (arXiv 2202.00846) on generated data with a known ground truth:\n"
          f"   conversion rates {p}, exponential delays with means {means} exposures, {n} exposures in batches "
          f"of 500, seeds 0..{reps - 1}")
    print(f"{'policy':>11} {'final regret':>16} {'best-arm share':>14}   (oracle: regret 0, share 1)")
    for policy in tqdm(POLICY_NAMES, desc="simulate policies", leave=False):
        r = simulate(policy, p, means, n=n, batch=500, reps=reps, seed=0)
        print(f"{policy:>11} {r.final_regret.mean():8.1f} ± {r.final_regret.std(ddof=1):5.1f} "
              f"{r.arm_share[:, 0].mean():14.3f}")
    rng = np.random.default_rng(0)
    units = 2000 if quick else 20_000
    arm = rng.integers(0, 3, units)
    t = np.arange(units, dtype=float)
    delay = rng.exponential(np.array(means, float)[arm])
    conv = (rng.random(units) < np.array(p)[arm]) & (t + delay <= units)
    with tempfile.TemporaryDirectory() as tmp, Experiment(os.path.join(tmp, "demo.db"), ["A", "B", "C"]) as ex:
        ex.log_exposures([(f"u{i}", "ABC"[a], t[i]) for i, a in enumerate(arm)])
        ex.log_conversions([(f"u{i}", t[i] + delay[i]) for i in np.flatnonzero(conv)])
        ex.log_exposures([(f"u{i}", "ABC"[arm[i]], t[i]) for i in range(100)])  # a retried batch counts once
        print(f"experiment store (SQLite, WAL): {units} exposures, {int(conv.sum())} conversions seen by time "
              f"{units} (true rates {p}); report at time {units}:")
        print(format_report(ex.report(now=float(units))))
        picks = ex.allocate(500, now=float(units), seed=0)
        print("next 500 assignments: " + ", ".join(f"{a} {picks.count(a)}" for a in ex.arms))

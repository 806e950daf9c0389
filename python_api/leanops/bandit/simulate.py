"""The paper's simulation study: batched allocation with delayed conversions and a known ground truth.

Time is counted in exposures: the i-th unit is exposed at time i, so delay means are in exposures. Before
each batch of ``batch`` units the policy sees, for every unit exposed so far, its elapsed time, whether its
conversion has been observed and the observed delay, and allocates the batch. Each unit's randomness
(eventual conversion uniform u_i, unit-mean delay z_i) is drawn once per repetition and shared by all
policies (common random numbers): unit i on arm k converts iff u_i < p_k, after delay z_i * mean_k. Policies
therefore differ only through their choices, which makes paired comparisons fair. Regret is the expected
one: cumulative sum of max(p) - p[arm of unit i].
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .model import Observations, check_delay_means, check_rates, delay_cdfs, sample_delays
from .policies import POLICY_NAMES, make_policy


@dataclass
class SimulationResult:
    policy: str
    cumulative_regret: np.ndarray  # [reps, n]
    arm_share: np.ndarray          # [reps, K]: share of the n units each arm got
    seeds: list[int]
    settings: dict = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def final_regret(self) -> np.ndarray:
        return self.cumulative_regret[:, -1]


def _check_int(name, v, low):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
        raise ValueError(f"{name} must be an int >= {low}, got {v!r}")


def run_one(policy: str, p, delay_means, delay_dist: str, weibull_shape: float, n: int, batch: int, seed: int,
            policy_kw: dict | None = None):
    """One repetition: returns (cumulative regret [n], arm share [K])."""
    p = np.asarray(p, float)
    means = np.asarray(delay_means, float)
    k = p.size
    env = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    u = env.random(n)
    z = sample_delays(env, n, delay_dist, weibull_shape)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    pol = make_policy(policy, k, delay_cdfs=delay_cdfs(means, delay_dist, weibull_shape), **(policy_kw or {}))
    arms = np.empty(n, np.int64)
    for start in range(0, n, batch):
        m = min(batch, n - start)
        a = arms[:start]
        delay = z[:start] * means[a]
        elapsed = start - np.arange(start, dtype=float)
        converted = (u[:start] < p[a]) & (delay <= elapsed)
        obs = Observations(a, elapsed, converted, np.where(converted, delay, np.nan), k)
        arms[start:start + m] = pol.allocate(m, obs, rng)
    regret = np.cumsum(p.max() - p[arms])
    return regret, np.bincount(arms, minlength=k) / n


def _rep(args):
    return run_one(*args)


def simulate(policy: str, p, delay_means, *, delay_dist: str = "exp", weibull_shape: float = 1.5, n: int = 10_000,
             batch: int = 500, reps: int = 50, seed: int = 0, workers: int = 1, progress: bool = False,
             policy_kw: dict | None = None) -> SimulationResult:
    """Runs ``reps`` repetitions (seeds ``seed .. seed + reps - 1``) of ``policy`` on arms with eventual
    conversion rates ``p`` and mean delays ``delay_means`` (in exposures). ``workers`` > 1 runs repetitions
    in that many processes."""
    if policy not in POLICY_NAMES:
        raise ValueError(f"policy must be one of {POLICY_NAMES}, got {policy!r}")
    p = check_rates(p)
    means = check_delay_means(delay_means, p.size)
    if delay_dist not in ("exp", "weibull"):
        raise ValueError(f"delay_dist must be 'exp' or 'weibull', got {delay_dist!r}")
    if not (weibull_shape > 0):
        raise ValueError(f"weibull_shape must be > 0, got {weibull_shape}")
    _check_int("n", n, 1)
    _check_int("batch", batch, 1)
    _check_int("reps", reps, 1)
    _check_int("seed", seed, 0)
    _check_int("workers", workers, 1)
    seeds = list(range(seed, seed + reps))
    jobs = [(policy, p, means, delay_dist, weibull_shape, n, batch, s, policy_kw) for s in seeds]
    start = time.perf_counter()
    if workers == 1:
        it = map(_rep, jobs)
        if progress:
            from tqdm import tqdm
            it = tqdm(it, total=reps, desc=f"simulate {policy}", leave=False)
        out = list(it)
    else:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(max_workers=workers) as pool:
            it = pool.map(_rep, jobs)
            if progress:
                from tqdm import tqdm
                it = tqdm(it, total=reps, desc=f"simulate {policy}", leave=False)
            out = list(it)
    wall = time.perf_counter() - start
    settings = {"p": p.tolist(), "delay_means": means.tolist(), "delay_dist": delay_dist,
                "weibull_shape": weibull_shape, "n": n, "batch": batch, "reps": reps, "seed": seed}
    return SimulationResult(policy, np.stack([r for r, _ in out]), np.stack([s for _, s in out]), seeds,
                            settings, wall)

"""Allocation policies for batched experiments with delayed conversions.

Every policy turns the observations at decision time into allocation probabilities (``probabilities``)
and draws the next ``n`` assignments from them (``allocate``). Thompson-sampling policies use the Monte
Carlo probability that each arm is best under their posterior; index policies (UCB) put the whole batch
on the arm with the highest index (batched UCB); ``ab`` is the fixed uniform split. ``min_share`` floors
every arm's probability (probabilities become ``min_share + (1 - K min_share) p``).

Names: ``dts_known`` (delay-corrected TS with known delay CDFs), ``dts_em`` (delay-corrected TS with EM
delays, the paper's method), ``ts_naive`` (TS that counts pending units as failures), ``ducb`` (UCB on the
delay-adjusted counts), ``dbucb`` (its Bayesian-quantile variant: the 1 - 1/t quantile of the delay-adjusted
Beta posterior), ``bayes_grid`` (TS on the grid posterior of (theta, lam)), ``ab`` (uniform split).
"""
from __future__ import annotations

import numpy as np
from scipy import stats

from .estimators import em_estimate, grid_posterior, known_delay_estimate
from .model import Observations, as_cdf_list

POLICY_NAMES = ("dts_known", "dts_em", "ts_naive", "ducb", "dbucb", "bayes_grid", "ab")


def prob_best(samples: np.ndarray) -> np.ndarray:
    """Share of the Monte Carlo draws ([draws, K]) in which each arm is the best (ties: lowest index)."""
    return np.bincount(samples.argmax(axis=1), minlength=samples.shape[1]) / samples.shape[0]


def expected_loss(samples: np.ndarray) -> np.ndarray:
    """E[max_j theta_j - theta_k] per arm k: the expected conversion rate lost by stopping now with arm k."""
    return (samples.max(axis=1, keepdims=True) - samples).mean(axis=0)


class Policy:
    """Base class: subclasses give ``probabilities(obs, rng)``."""

    name = "policy"

    def __init__(self, n_arms: int, *, min_share: float = 0.0, draws: int = 2000):
        if not isinstance(n_arms, (int, np.integer)) or n_arms < 1:
            raise ValueError(f"n_arms must be a positive int, got {n_arms!r}")
        if not (0.0 <= min_share <= 1.0 / n_arms):
            raise ValueError(f"min_share must be in [0, 1/n_arms] = [0, {1.0 / n_arms:.4g}], got {min_share}")
        if not isinstance(draws, (int, np.integer)) or draws < 1:
            raise ValueError(f"draws must be a positive int, got {draws!r}")
        self.n_arms, self.min_share, self.draws = int(n_arms), float(min_share), int(draws)

    def _check(self, obs: Observations) -> None:
        if not isinstance(obs, Observations):
            raise TypeError(f"obs must be leanops.bandit.Observations, got {type(obs).__name__}")
        if obs.n_arms != self.n_arms:
            raise ValueError(f"obs has {obs.n_arms} arms, the policy {self.n_arms}")

    def raw_probabilities(self, obs: Observations, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def probabilities(self, obs: Observations, rng: np.random.Generator | None = None) -> np.ndarray:
        """Allocation probability of each arm (after the ``min_share`` floor)."""
        self._check(obs)
        rng = np.random.default_rng() if rng is None else rng
        p = self.raw_probabilities(obs, rng)
        return self.min_share + (1.0 - self.n_arms * self.min_share) * p

    def allocate(self, n: int, obs: Observations, rng: np.random.Generator | None = None) -> np.ndarray:
        """The next ``n`` assignments (arm indices), drawn independently from ``probabilities``."""
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        rng = np.random.default_rng() if rng is None else rng
        p = self.probabilities(obs, rng)
        return rng.choice(self.n_arms, size=int(n), p=p / p.sum())


class SamplingPolicy(Policy):
    """Thompson sampling: P(arm is best) estimated from ``draws`` posterior samples."""

    def posterior_samples(self, obs: Observations, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def raw_probabilities(self, obs, rng):
        return prob_best(self.posterior_samples(obs, rng))


def beta_params(successes, n_eff, prior=(1.0, 1.0)):
    """Beta posterior on delay-adjusted counts: Beta(a0 + S, b0 + max(N' - S, 0))."""
    return prior[0] + successes, prior[1] + np.maximum(n_eff - successes, 0.0)


class NaiveTS(SamplingPolicy):
    """Thompson sampling that treats every not-yet-converted unit as a failure."""

    name = "ts_naive"

    def posterior_samples(self, obs, rng):
        n, s = obs.counts()
        a, b = beta_params(s, n)
        return rng.beta(a, b, size=(self.draws, self.n_arms))


class KnownDelayTS(SamplingPolicy):
    """Delay-corrected TS with known delay CDFs: Beta(1 + S, 1 + N' - S), N'_k = sum_i F_k(e_i)."""

    name = "dts_known"

    def __init__(self, n_arms, delay_cdfs, **kw):
        super().__init__(n_arms, **kw)
        self.delay_cdfs = as_cdf_list(delay_cdfs, self.n_arms)

    def adjusted_counts(self, obs):
        _, n_eff, s = known_delay_estimate(obs.elapsed, obs.converted, obs.arm, self.delay_cdfs, self.n_arms)
        return s, n_eff

    def posterior_samples(self, obs, rng):
        a, b = beta_params(*self.adjusted_counts(obs))
        return rng.beta(a, b, size=(self.draws, self.n_arms))


class EMDelayTS(SamplingPolicy):
    """Delay-corrected TS with EM delays (the paper's D-TS): EM gives lam_k (warm-started from the previous
    call), then Beta(1 + S, 1 + N' - S) with N'_k = sum_i (1 - e^{-lam_k e_i})."""

    name = "dts_em"

    def __init__(self, n_arms, *, em_cycles: int | None = None, em_tol: float = 1e-6, em_max_cycles: int = 100,
                 **kw):
        super().__init__(n_arms, **kw)
        self.em_cycles, self.em_tol, self.em_max_cycles = em_cycles, em_tol, em_max_cycles
        self.estimate = None  # (theta, lam) of the last call: the warm start

    def adjusted_counts(self, obs):
        theta, lam = em_estimate(obs.elapsed, obs.converted, obs.delay, obs.arm, n_arms=self.n_arms,
                                 init=self.estimate, cycles=self.em_cycles, tol=self.em_tol,
                                 max_cycles=self.em_max_cycles)
        self.estimate = (theta, lam)
        lam_u = np.nan_to_num(lam, nan=1.0)[obs.arm]
        n_eff = np.bincount(obs.arm, weights=-np.expm1(-lam_u * obs.elapsed), minlength=self.n_arms)
        s = np.bincount(obs.arm, weights=obs.converted.astype(float), minlength=self.n_arms)
        return s, n_eff

    def posterior_samples(self, obs, rng):
        a, b = beta_params(*self.adjusted_counts(obs))
        return rng.beta(a, b, size=(self.draws, self.n_arms))


class GridBayesTS(SamplingPolicy):
    """TS on the exact grid posterior of (theta, lam) (slow comparison)."""

    name = "bayes_grid"

    def __init__(self, n_arms, *, theta_nodes: int = 24, lam_nodes: int = 16, **kw):
        super().__init__(n_arms, **kw)
        self.theta_nodes, self.lam_nodes = theta_nodes, lam_nodes

    def posterior_samples(self, obs, rng):
        post = grid_posterior(obs.elapsed, obs.converted, obs.delay, obs.arm, n_arms=self.n_arms,
                              theta_nodes=self.theta_nodes, lam_nodes=self.lam_nodes)
        return post.sample_theta(rng, self.draws)


class DelayedUCB(Policy):
    """UCB on delay-adjusted counts (known delays): index theta_hat + sqrt(2 log t / N'), theta_hat = S / N';
    an arm with N' = 0 has an infinite index. The batch goes to the arm with the highest index."""

    name = "ducb"

    def __init__(self, n_arms, delay_cdfs, **kw):
        super().__init__(n_arms, **kw)
        self.delay_cdfs = as_cdf_list(delay_cdfs, self.n_arms)

    def index(self, obs):
        _, n_eff, s = known_delay_estimate(obs.elapsed, obs.converted, obs.arm, self.delay_cdfs, self.n_arms)
        t = max(obs.n_units, 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(n_eff > 0, s / np.maximum(n_eff, 1e-300) + np.sqrt(2 * np.log(t) / n_eff), np.inf)

    def raw_probabilities(self, obs, rng):
        idx = self.index(obs)
        best = np.flatnonzero(idx == idx.max())
        p = np.zeros(self.n_arms)
        p[rng.choice(best)] = 1.0  # ties broken at random (no arm favoured)
        return p


class DelayedBayesUCB(DelayedUCB):
    """Bayesian-quantile UCB: the 1 - 1/t quantile of Beta(1 + S, 1 + N' - S) (known delays)."""

    name = "dbucb"

    def index(self, obs):
        _, n_eff, s = known_delay_estimate(obs.elapsed, obs.converted, obs.arm, self.delay_cdfs, self.n_arms)
        a, b = beta_params(s, n_eff)
        t = max(obs.n_units, 2)
        return stats.beta.ppf(1.0 - 1.0 / t, a, b)


class UniformAB(Policy):
    """Fixed uniform A/B/n split (assignments balanced up to rounding, in random order)."""

    name = "ab"

    def raw_probabilities(self, obs, rng):
        return np.full(self.n_arms, 1.0 / self.n_arms)

    def allocate(self, n, obs, rng=None):
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        rng = np.random.default_rng() if rng is None else rng
        start = obs.n_units % self.n_arms  # continue the rotation across batches
        return rng.permutation((np.arange(int(n)) + start) % self.n_arms)


def make_policy(name: str, n_arms: int, *, delay_cdfs=None, **kw) -> Policy:
    """Builds a policy by name; ``dts_known``, ``ducb`` and ``dbucb`` need the (known) ``delay_cdfs``."""
    if name not in POLICY_NAMES:
        raise ValueError(f"policy must be one of {POLICY_NAMES}, got {name!r}")
    if name in ("dts_known", "ducb", "dbucb"):
        if delay_cdfs is None:
            raise ValueError(f"policy {name!r} needs delay_cdfs (the known delay distributions)")
        cls = {"dts_known": KnownDelayTS, "ducb": DelayedUCB, "dbucb": DelayedBayesUCB}[name]
        return cls(n_arms, delay_cdfs, **kw)
    cls = {"dts_em": EMDelayTS, "ts_naive": NaiveTS, "bayes_grid": GridBayesTS, "ab": UniformAB}[name]
    return cls(n_arms, **kw)

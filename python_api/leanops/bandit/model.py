"""The delayed-conversion model and its argument checks.

A unit exposed to arm k converts eventually with probability ``theta[k]``; if it does, the conversion is seen
after a delay D with CDF F_k (exponential with rate ``lam[k]`` by default, Weibull, or any CDF the user passes).
At decision time a unit exposed ``elapsed`` ago is either converted-and-observed (with its observed ``delay``)
or not (yet). ``Observations`` holds that snapshot for every unit, one entry per unit (vectorised, no loops).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

DELAY_DISTS = ("exp", "weibull")
DelayCdf = Callable[[np.ndarray], np.ndarray]


def check_rates(p, name: str = "p") -> np.ndarray:
    p = np.asarray(p, dtype=float)
    if p.ndim != 1 or p.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-d sequence of conversion rates, got shape {p.shape}")
    if not np.all(np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError(f"{name} must hold conversion rates in [0, 1], got {p.tolist()}")
    return p


def check_delay_means(delay_means, n_arms: int | None = None, name: str = "delay_means") -> np.ndarray:
    m = np.asarray(delay_means, dtype=float)
    if m.ndim != 1 or m.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-d sequence of mean delays, got shape {m.shape}")
    if not np.all(np.isfinite(m)) or np.any(m <= 0):
        raise ValueError(f"{name} must be positive and finite, got {m.tolist()}")
    if n_arms is not None and m.size != n_arms:
        raise ValueError(f"{name} must have one entry per arm ({n_arms}), got {m.size}")
    return m


def exponential_cdf(mean: float) -> DelayCdf:
    """F(e) = 1 - exp(-e / mean): exponential delay with the given mean (rate 1 / mean)."""
    rate = 1.0 / float(check_delay_means([mean], name="mean")[0])
    return lambda e: -np.expm1(-rate * np.maximum(np.asarray(e, dtype=float), 0.0))


def weibull_scale(mean: float, shape: float) -> float:
    """Scale of the Weibull distribution with this shape whose mean is ``mean``."""
    return mean / math.gamma(1.0 + 1.0 / shape)


def weibull_cdf(mean: float, shape: float) -> DelayCdf:
    """F(e) = 1 - exp(-(e / scale)^shape), scale chosen so that the mean delay is ``mean``."""
    if not (shape > 0 and math.isfinite(shape)):
        raise ValueError(f"weibull_shape must be positive and finite, got {shape}")
    scale = weibull_scale(float(check_delay_means([mean], name="mean")[0]), shape)
    return lambda e: -np.expm1(-(np.maximum(np.asarray(e, dtype=float), 0.0) / scale) ** shape)


def delay_cdfs(delay_means, delay_dist: str = "exp", weibull_shape: float = 1.5) -> list[DelayCdf]:
    """One delay CDF per arm for the named distribution family."""
    means = check_delay_means(delay_means)
    if delay_dist == "exp":
        return [exponential_cdf(m) for m in means]
    if delay_dist == "weibull":
        return [weibull_cdf(m, weibull_shape) for m in means]
    raise ValueError(f"delay_dist must be one of {DELAY_DISTS}, got {delay_dist!r}")


def sample_delays(rng: np.random.Generator, size: int, delay_dist: str, weibull_shape: float) -> np.ndarray:
    """Delays with mean 1 (scaled by each arm's mean later), so all arms share the same random numbers."""
    if delay_dist == "exp":
        return rng.exponential(1.0, size)
    if delay_dist == "weibull":
        return rng.weibull(weibull_shape, size) / math.gamma(1.0 + 1.0 / weibull_shape)
    raise ValueError(f"delay_dist must be one of {DELAY_DISTS}, got {delay_dist!r}")


def check_units(elapsed, converted, delay=None, arm=None, n_arms: int | None = None):
    """Validates the per-unit arrays; returns float elapsed, bool converted, float delay (NaN where not
    converted), int arm and the number of arms."""
    e = np.asarray(elapsed, dtype=float)
    if e.ndim != 1:
        raise ValueError(f"elapsed must be 1-d (one entry per unit), got shape {e.shape}")
    if not np.all(np.isfinite(e)) or np.any(e < 0):
        raise ValueError("elapsed must hold finite times >= 0 (time since exposure); got negative or non-finite "
                         "values")
    c = np.asarray(converted)
    if c.shape != e.shape:
        raise ValueError(f"converted must have the length of elapsed ({e.size}), got shape {c.shape}")
    if c.dtype != bool:
        if not np.all(np.isin(c, (0, 1))):
            raise ValueError("converted must hold 0/1 or booleans")
        c = c.astype(bool)
    if delay is None:
        d = np.full(e.shape, np.nan)
    else:
        d = np.asarray(delay, dtype=float)
        if d.shape != e.shape:
            raise ValueError(f"delay must have the length of elapsed ({e.size}), got shape {d.shape}")
        d = np.where(c, d, np.nan)
        dc = d[c]
        if not np.all(np.isfinite(dc)) or np.any(dc < 0):
            raise ValueError("delay must be finite and >= 0 for converted units")
        if np.any(dc > e[c] * (1 + 1e-12) + 1e-12):
            raise ValueError("delay of a converted unit cannot exceed its elapsed time")
    if arm is None:
        a = np.zeros(e.shape, dtype=np.int64)
        k = 1 if n_arms is None else n_arms
    else:
        a = np.asarray(arm)
        if a.shape != e.shape:
            raise ValueError(f"arm must have the length of elapsed ({e.size}), got shape {a.shape}")
        if a.size and (not np.issubdtype(a.dtype, np.integer) or a.min() < 0):
            raise ValueError("arm must hold non-negative integer arm indices")
        a = a.astype(np.int64)
        k = int(a.max()) + 1 if a.size else 1
        if n_arms is not None:
            if a.size and k > n_arms:
                raise ValueError(f"arm holds index {k - 1} but n_arms is {n_arms}")
            k = n_arms
    return e, c, d, a, k


@dataclass
class Observations:
    """What is known at decision time ``now``: one entry per exposed unit."""

    arm: np.ndarray        # int arm index
    elapsed: np.ndarray    # time since exposure
    converted: np.ndarray  # bool, conversion observed by now
    delay: np.ndarray      # observed delay of converted units, NaN elsewhere
    n_arms: int

    @classmethod
    def from_arrays(cls, arm, elapsed, converted, delay=None, n_arms: int | None = None) -> "Observations":
        e, c, d, a, k = check_units(elapsed, converted, delay, arm, n_arms)
        return cls(a, e, c, d, k)

    @classmethod
    def empty(cls, n_arms: int) -> "Observations":
        return cls(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, bool), np.zeros(0), n_arms)

    @property
    def n_units(self) -> int:
        return int(self.arm.size)

    def counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Exposures and observed conversions per arm."""
        n = np.bincount(self.arm, minlength=self.n_arms).astype(float)
        s = np.bincount(self.arm, weights=self.converted.astype(float), minlength=self.n_arms)
        return n, s


def as_cdf_list(cdfs: DelayCdf | Sequence[DelayCdf], n_arms: int) -> list[DelayCdf]:
    if callable(cdfs):
        return [cdfs] * n_arms
    cdfs = list(cdfs)
    if len(cdfs) != n_arms or not all(callable(f) for f in cdfs):
        raise ValueError(f"delay_cdfs must be one callable or one callable per arm ({n_arms})")
    return cdfs

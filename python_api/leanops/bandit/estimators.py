"""Conversion-rate estimators under delayed feedback, vectorised over units and arms.

- ``known_delay_estimate``: with known delay CDFs F_k, the effective sample size N'_k = sum_i F_k(e_i) and
  theta_k = S_k / N'_k (S_k: observed conversions).
- ``em_estimate``: unknown exponential delays; EM over the latent "will convert eventually" of every not
  yet converted unit. E-step: w_i = theta e^{-lam e_i} / (1 - theta + theta e^{-lam e_i}); M-step with the
  completed data: theta = (S + sum w) / N, lam = (S + sum w) / (sum of observed delays + sum w (e_i + 1/lam))
  (a censored exponential delay is, by memorylessness, expected to end 1/lam after e_i). Counts per arm
  by ``np.bincount``; the pending units are sorted by arm once, so every cycle is a few in-place numpy
  passes over contiguous slices (no per-unit Python, no per-unit gathers of theta and lam).
- ``em_estimate_loop``: the same algorithm as a straightforward per-unit Python loop (benchmark anchor).
- ``grid_posterior``: the fully Bayesian posterior of (theta, lam) on a Gauss-Legendre grid (slow comparison).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .model import as_cdf_list, check_units

_TINY = 1e-300


def known_delay_estimate(elapsed, converted, arm=None, delay_cdfs=None, n_arms: int | None = None):
    """Returns ``(theta, n_eff, successes)`` per arm; theta is NaN where N'_k = 0."""
    e, c, _, a, k = check_units(elapsed, converted, None, arm, n_arms)
    if delay_cdfs is None:
        raise ValueError("delay_cdfs must be given (one CDF or one per arm)")
    cdfs = as_cdf_list(delay_cdfs, k)
    f = np.empty_like(e)
    for j, cdf in enumerate(cdfs):  # a loop over arms only; each CDF is vectorised over its units
        mask = a == j
        f[mask] = cdf(e[mask])
    n_eff = np.bincount(a, weights=f, minlength=k)
    s = np.bincount(a, weights=c.astype(float), minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        theta = np.where(n_eff > 0, s / np.where(n_eff > 0, n_eff, 1.0), np.nan)
    return theta, n_eff, s


def _initial(s, n, sum_d, init, mean_elapsed):
    if init is not None:
        theta0, lam0 = (np.array(x, dtype=float, copy=True).reshape(-1) for x in init)
        if theta0.shape != s.shape or lam0.shape != s.shape:
            raise ValueError(f"init must be (theta, lam) with one entry per arm ({s.size})")
        bad = ~np.isfinite(theta0) | ~np.isfinite(lam0) | (lam0 <= 0)
        theta0 = np.where(bad, np.nan, np.clip(theta0, 1e-6, 1.0))
    else:
        theta0 = np.full(s.shape, np.nan)
        lam0 = np.full(s.shape, np.nan)
        bad = np.ones(s.shape, bool)
    # cold start where no usable warm start: theta from the observed rate (a lower bound), lam from the
    # observed delays (an upper bound, short delays are seen first); EM moves both. An arm without any
    # conversion says nothing about its delay: it takes the pooled delay of the other arms (or, with no
    # conversion at all, the mean elapsed time), and EM leaves its lam there.
    pooled = s.sum() / sum_d.sum() if s.sum() > 0 and sum_d.sum() > 0 else 1.0 / max(mean_elapsed, 1e-12)
    with np.errstate(invalid="ignore", divide="ignore"):
        theta_cold = np.clip(np.where(n > 0, (s + 1.0) / (n + 2.0), 0.5), 1e-3, 0.999)
        lam_cold = np.where((s > 0) & (sum_d > 0), s / np.maximum(sum_d, _TINY), pooled)
    return np.where(bad, theta_cold, theta0), np.where(bad | (s == 0), lam_cold, lam0)


def _check_em_args(cycles, tol, max_cycles):
    if cycles is not None and (not isinstance(cycles, (int, np.integer)) or cycles < 0):
        raise ValueError(f"cycles must be a non-negative int or None, got {cycles!r}")
    if not (tol > 0):
        raise ValueError(f"tol must be > 0, got {tol}")
    if not isinstance(max_cycles, (int, np.integer)) or max_cycles < 1:
        raise ValueError(f"max_cycles must be a positive int, got {max_cycles!r}")


def em_estimate(elapsed, converted, delay, arm=None, *, n_arms: int | None = None, init=None,
                cycles: int | None = None, tol: float = 1e-8, max_cycles: int = 1000, return_cycles: bool = False):
    """EM estimate of the eventual conversion rate ``theta`` and exponential delay rate ``lam`` per arm.

    ``elapsed``: time since each unit's exposure; ``converted``: conversion observed by now; ``delay``: the
    observed delay of converted units (ignored elsewhere); ``arm``: arm index per unit (None: one arm).
    ``init=(theta, lam)`` warm-starts from a previous estimate. ``cycles`` runs a fixed number of EM cycles;
    otherwise cycles run until the largest relative change of theta and lam is below ``tol`` (at most
    ``max_cycles``). Arms without units get NaN; an arm without any observed conversion keeps its starting
    ``lam`` (the pooled delay of the other arms: its own data say nothing about it) while theta goes to 0."""
    _check_em_args(cycles, tol, max_cycles)
    e, c, d, a, k = check_units(elapsed, converted, delay, arm, n_arms)
    n = np.bincount(a, minlength=k).astype(float)
    s = np.bincount(a, weights=c.astype(float), minlength=k)
    sum_d = np.bincount(a, weights=np.where(c, d, 0.0), minlength=k)
    theta, lam = _initial(s, n, sum_d, init, float(e.mean()) if e.size else 1.0)
    # the pending units' elapsed times grouped by arm once (a mask per arm for a few arms, a stable sort
    # for many): every arm is one contiguous slice and each cycle a few in-place passes over it, with no
    # per-unit gathers of theta and lam
    wait = ~c
    if k <= 8:
        e_w = np.concatenate([e[wait & (a == j)] for j in range(k)])
        a_w = a[wait]
    else:
        a_w = a[wait]
        e_w = e[wait][np.argsort(a_w.astype(np.int16) if k < 2**15 else a_w, kind="stable")]
    bounds = np.concatenate([[0], np.cumsum(np.bincount(a_w, minlength=k))])
    buf, tmp = np.empty_like(e_w), np.empty_like(e_w)
    sw, swe = np.zeros(k), np.zeros(k)
    steps = cycles if cycles is not None else max_cycles
    done = 0
    for done in range(1, steps + 1):
        for j in range(k):  # arms (a handful); each arm's pending units in one vectorised pass
            lo, hi = bounds[j], bounds[j + 1]
            if hi == lo or not theta[j] > 0:
                sw[j] = swe[j] = 0.0
                continue
            x, y, ej = buf[lo:hi], tmp[lo:hi], e_w[lo:hi]
            if theta[j] >= 1.0:  # every pending unit will still convert
                sw[j], swe[j] = hi - lo, ej.sum()
                continue
            # w = theta e^{-lam e} / (1 - theta + theta e^{-lam e}) = x / ((1 - theta) / theta + x)
            np.multiply(ej, -lam[j], out=x)
            np.exp(x, out=x)
            np.add(x, (1.0 - theta[j]) / theta[j], out=y)
            np.divide(x, y, out=x)
            sw[j], swe[j] = x.sum(), x.dot(ej)
        total = s + sw  # expected eventual conversions
        with np.errstate(invalid="ignore", divide="ignore"):
            theta_new = np.where(n > 0, total / np.maximum(n, 1.0), np.nan)
            denom = sum_d + swe + sw / lam
            lam_new = np.where(s > 0, total / np.maximum(denom, _TINY), lam)
        change = np.nanmax(np.abs(np.concatenate([(theta_new - theta) / np.maximum(np.abs(theta), 1e-12),
                                                  (lam_new - lam) / lam])), initial=0.0)
        theta, lam = theta_new, lam_new
        if cycles is None and change < tol:
            break
    lam = np.where(n > 0, lam, np.nan)
    return (theta, lam, done) if return_cycles else (theta, lam)


def em_estimate_loop(elapsed, converted, delay, arm=None, *, n_arms: int | None = None, init=None,
                     cycles: int | None = None, tol: float = 1e-8, max_cycles: int = 1000):
    """The same EM as ``em_estimate``, written as a plain per-unit Python loop (the benchmark anchor: what a
    straightforward implementation of the paper's update looks like)."""
    _check_em_args(cycles, tol, max_cycles)
    e, c, d, a, k = check_units(elapsed, converted, delay, arm, n_arms)
    e_l, c_l, d_l, a_l = e.tolist(), c.tolist(), d.tolist(), a.tolist()
    n, s, sum_d = [0.0] * k, [0.0] * k, [0.0] * k
    for ei, ci, di, ai in zip(e_l, c_l, d_l, a_l):
        n[ai] += 1.0
        if ci:
            s[ai] += 1.0
            sum_d[ai] += di
    theta_a, lam_a = _initial(np.array(s), np.array(n), np.array(sum_d), init,
                             sum(e_l) / len(e_l) if e_l else 1.0)
    theta, lam = theta_a.tolist(), lam_a.tolist()
    steps = cycles if cycles is not None else max_cycles
    for _ in range(steps):
        sw, swe = [0.0] * k, [0.0] * k
        for ei, ci, ai in zip(e_l, c_l, a_l):
            if not ci:
                still = theta[ai] * math.exp(-lam[ai] * ei)
                w = still / max(1.0 - theta[ai] + still, _TINY)
                sw[ai] += w
                swe[ai] += w * ei
        change = 0.0
        for j in range(k):
            if n[j] == 0:
                theta[j] = lam[j] = math.nan
                continue
            total = s[j] + sw[j]
            t_new = total / n[j]
            l_new = total / max(sum_d[j] + swe[j] + sw[j] / lam[j], _TINY) if s[j] > 0 else lam[j]
            change = max(change, abs(t_new - theta[j]) / max(abs(theta[j]), 1e-12), abs(l_new - lam[j]) / lam[j])
            theta[j], lam[j] = t_new, l_new
        if cycles is None and change < tol:
            break
    return np.array(theta), np.array(lam)


def _gauss_legendre(nodes: int, lo: float, hi: float):
    x, w = np.polynomial.legendre.leggauss(nodes)
    return lo + (hi - lo) * (x + 1) / 2, w * (hi - lo) / 2


@dataclass
class GridPosterior:
    """Posterior of (theta, lam) per arm on a tensor Gauss-Legendre grid (one grid per arm): prior theta
    uniform on [0, 1], log lam uniform on ``log_lam_range``. ``weights[k, i, j]`` is the posterior mass at
    (theta[k, i], lam[k, j]) (quadrature weight x prior x likelihood, normalised); ``theta_edges[k]`` bound
    the cells around the theta nodes."""

    theta: np.ndarray        # [K, G_theta]
    lam: np.ndarray          # [K, G_lam]
    weights: np.ndarray      # [K, G_theta, G_lam]
    theta_edges: np.ndarray  # [K, G_theta + 1]

    def theta_marginal(self) -> np.ndarray:
        return self.weights.sum(axis=2)

    def mean(self) -> tuple[np.ndarray, np.ndarray]:
        return ((self.theta_marginal() * self.theta).sum(1), (self.weights.sum(axis=1) * self.lam).sum(1))

    def sample_theta(self, rng: np.random.Generator, draws: int) -> np.ndarray:
        """[draws, K] theta draws: a grid cell by its mass, then uniform within the cell (between the
        midpoints of neighbouring nodes) so draws are not stuck on the nodes."""
        marg = self.theta_marginal()
        out = np.empty((draws, marg.shape[0]))
        for k in range(marg.shape[0]):
            idx = rng.choice(marg.shape[1], size=draws, p=marg[k])
            out[:, k] = rng.uniform(self.theta_edges[k, idx], self.theta_edges[k, idx + 1])
        return out


def _arm_log_posterior(th, loglam, wth, wlam, n_conv, sum_d, e_wait):
    """Unnormalised log posterior mass on the grid th x exp(loglam) for one arm."""
    lam = np.exp(loglam)
    ll = n_conv * (np.log(th)[:, None] + loglam[None, :]) - sum_d * lam[None, :]
    if e_wait.size:  # sum_i log(1 - theta + theta e^{-lam e_i}), [G_theta, G_lam]
        surv = np.exp(-np.outer(lam, e_wait))  # [G_lam, n]
        ll = ll + np.log1p(th[:, None, None] * (surv[None] - 1.0)).sum(axis=2)
    return ll + np.log(wth)[:, None] + np.log(wlam)[None, :]


def _support(nodes, mass, lo, hi, tail=1e-6):
    """Interval that leaves at most ``tail`` of the coarse marginal mass out on each side, widened to the
    neighbouring nodes (the bounds of the prior where it reaches the first or last node)."""
    cdf = np.cumsum(mass) / mass.sum()
    i0 = max(int(np.searchsorted(cdf, tail)) - 1, 0)
    i1 = min(int(np.searchsorted(cdf, 1.0 - tail)) + 1, nodes.size - 1)
    return (lo if i0 == 0 else nodes[i0]), (hi if i1 == nodes.size - 1 else nodes[i1])


def grid_posterior(elapsed, converted, delay, arm=None, *, n_arms: int | None = None, theta_nodes: int = 24,
                   lam_nodes: int = 16, log_lam_range: tuple[float, float] | None = None) -> GridPosterior:
    """Exact Bayesian posterior of (theta, lam) under the exponential-delay model on a grid.

    Log-likelihood of arm k: sum over converted units of log(theta lam) - lam d_i, plus over the others of
    log(1 - theta + theta e^{-lam e_i}). Two passes per arm: a coarse grid over the whole prior range
    finds where the posterior mass is (all but 1e-6 in each tail), then the reported grid of
    ``theta_nodes x lam_nodes`` Gauss-Legendre nodes covers that region only (small conversion rates need
    the resolution). Costs O(units x grid) per arm: the slow reference the paper compares with.
    ``log_lam_range`` defaults to [log(0.01 / max e), log(100 / max e)], the delays the observation window
    can speak to."""
    e, c, d, a, k = check_units(elapsed, converted, delay, arm, n_arms)
    for name, v in (("theta_nodes", theta_nodes), ("lam_nodes", lam_nodes)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 2:
            raise ValueError(f"{name} must be an int >= 2, got {v!r}")
    if log_lam_range is None:
        horizon = float(e.max()) if e.size and e.max() > 0 else 1.0
        log_lam_range = (math.log(0.01 / horizon), math.log(100.0 / horizon))
    lo, hi = log_lam_range
    if not (hi > lo):
        raise ValueError(f"log_lam_range must be (low, high) with high > low, got {log_lam_range}")
    shape = (k, theta_nodes, lam_nodes)
    out_th, out_lam, out_w, out_edges = np.empty(shape[:2]), np.empty((k, lam_nodes)), np.empty(shape), []
    for j in range(k):  # arms; each arm's units are vectorised over its grid
        mask = a == j
        conv = c & mask
        stats = (float(conv.sum()), float(d[conv].sum()), e[mask & ~c])
        th, wth = _gauss_legendre(max(theta_nodes, 16), 0.0, 1.0)
        ll, wll = _gauss_legendre(max(lam_nodes, 16), lo, hi)
        coarse = _arm_log_posterior(th, ll, wth, wll, *stats)
        coarse = np.exp(coarse - coarse.max())
        t_lo, t_hi = _support(th, coarse.sum(1), 0.0, 1.0)
        l_lo, l_hi = _support(ll, coarse.sum(0), lo, hi)
        th, wth = _gauss_legendre(theta_nodes, t_lo, t_hi)
        ll, wll = _gauss_legendre(lam_nodes, l_lo, l_hi)
        logw = _arm_log_posterior(th, ll, wth, wll, *stats)
        w = np.exp(logw - logw.max())
        out_th[j], out_lam[j], out_w[j] = th, np.exp(ll), w / w.sum()
        out_edges.append(np.concatenate([[t_lo], (th[1:] + th[:-1]) / 2, [t_hi]]))
    return GridPosterior(out_th, out_lam, out_w, np.stack(out_edges))

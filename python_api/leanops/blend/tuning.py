"""Virtual-bid tuning against a business goal: golden-section search for one virtual bid, SPSA for several.

Goal: maximise revenue subject to organic clicks >= target x the organic clicks of the page without ads,
as the penalised objective revenue - penalty * max(0, target - organic / no_ads_organic) (a smooth enough
surface for both searches; the penalty is large against revenue per request, so the constraint binds).
Both maximise a deterministic function: the same tuning requests are used at every evaluation
(common random numbers), so differences come from the virtual bids alone.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

GOLDEN = (math.sqrt(5) - 1) / 2


def penalised(revenue: float, organic: float, no_ads_organic: float, target: float, penalty: float) -> float:
    return revenue - penalty * max(0.0, target - organic / no_ads_organic)


def golden_section(f: Callable[[float], float], lo: float, hi: float, iters: int = 10):
    """Maximise a unimodal f on [lo, hi]; returns (best x, f(best x), [(x, f(x)) evaluated])."""
    if not hi > lo:
        raise ValueError(f"golden_section needs hi > lo, got lo={lo}, hi={hi}")
    history = []

    def ev(x):
        y = f(x)
        history.append((x, y))
        return y

    a, b = lo, hi
    c, d = b - GOLDEN * (b - a), a + GOLDEN * (b - a)
    fc, fd = ev(c), ev(d)
    for _ in range(iters):
        if fc >= fd:
            b, d, fd = d, c, fc
            c = b - GOLDEN * (b - a)
            fc = ev(c)
        else:
            a, c, fc = c, d, fd
            d = a + GOLDEN * (b - a)
            fd = ev(d)
    x, y = max(history, key=lambda h: h[1])
    return x, y, history


def spsa(f: Callable[[Sequence[float]], float], x0: Sequence[float], bounds: Sequence[tuple[float, float]],
         iters: int = 12, a: float = 0.5, c: float = 0.3, generator: torch.Generator | None = None):
    """Maximise f over a box by simultaneous perturbation (Spall): two evaluations per step whatever the
    dimension, gains a_k = a / (k + 1)^0.602, c_k = c / (k + 1)^0.101. Returns (best x evaluated, its f,
    history of (x, f(x)))."""
    x = torch.tensor(x0, dtype=torch.float64)
    lo = torch.tensor([b[0] for b in bounds], dtype=torch.float64)
    hi = torch.tensor([b[1] for b in bounds], dtype=torch.float64)
    history = []
    for k in range(iters):
        ak, ck = a / (k + 1) ** 0.602, c / (k + 1) ** 0.101
        delta = torch.randint(0, 2, x.shape, generator=generator).double() * 2 - 1
        xp, xm = torch.minimum(torch.maximum(x + ck * delta, lo), hi), torch.minimum(torch.maximum(x - ck * delta, lo), hi)
        yp, ym = f(xp.tolist()), f(xm.tolist())
        history += [(xp.tolist(), yp), (xm.tolist(), ym)]
        grad = (yp - ym) / ((xp - xm).where((xp - xm) != 0, torch.ones_like(x)))
        x = torch.minimum(torch.maximum(x + ak * grad, lo), hi)
    y = f(x.tolist())
    history.append((x.tolist(), y))
    best = max(history, key=lambda h: h[1])
    return best[0], best[1], history

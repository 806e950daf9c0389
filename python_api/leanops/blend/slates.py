"""Feasible slates: argument checks, counting, enumeration as index tensors, and slate values.

A slate is ``n_slots`` distinct candidate indices in page order, holding at most ``max_ads`` ads; with
``keep_organic_order`` its organic items appear in increasing index order (the recommender's ranking).
"""
from __future__ import annotations

import itertools
import math
from typing import Callable

import torch

ClickModelFn = Callable[[torch.Tensor], torch.Tensor]


def check_problem(bids, is_ad, n_slots, max_ads, vb_ad=0.0, vb_org=0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate the arguments of one request; returns ``(bids float64 [M], is_ad bool [M])``."""
    if not isinstance(bids, torch.Tensor):
        bids = torch.as_tensor(bids, dtype=torch.float64)
    if not isinstance(is_ad, torch.Tensor):
        is_ad = torch.as_tensor(is_ad, dtype=torch.bool)
    if bids.dim() != 1:
        raise ValueError(f"bids must be a 1-D tensor [M], got shape {tuple(bids.shape)}")
    if is_ad.dim() != 1 or is_ad.dtype != torch.bool:
        raise ValueError(f"is_ad must be a 1-D bool tensor [M], got shape {tuple(is_ad.shape)} dtype {is_ad.dtype}")
    if bids.shape[0] != is_ad.shape[0]:
        raise ValueError(f"is_ad and bids must have the same length, got {is_ad.shape[0]} and {bids.shape[0]}")
    if not bids.is_floating_point():
        bids = bids.double()
    if not torch.isfinite(bids).all():
        raise ValueError("bids must be finite (no NaN or infinity)")
    if (bids < 0).any():
        raise ValueError(f"bids must be >= 0, got min {float(bids.min())}")
    for name, v in (("vb_ad", vb_ad), ("vb_org", vb_org)):
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
    for name, v in (("n_slots", n_slots), ("max_ads", max_ads)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if n_slots < 1:
        raise ValueError(f"n_slots must be >= 1, got {n_slots}")
    if max_ads < 0:
        raise ValueError(f"max_ads must be >= 0, got {max_ads}")
    n_ads = int(is_ad.sum())
    n_org = bids.shape[0] - n_ads
    if n_org + min(n_ads, max_ads) < n_slots:
        raise ValueError(f"n_slots={n_slots} cannot be filled: {n_org} organic items plus at most "
                         f"min(max_ads={max_ads}, {n_ads} ads) ads")
    return bids.double().cpu(), is_ad.cpu()


def slot_weights(bids: torch.Tensor, is_ad: torch.Tensor, vb_ad: float, vb_org: float) -> torch.Tensor:
    """Value of one click on each candidate: bid + vb_ad for ads, vb_org for organic items."""
    return torch.where(is_ad, bids + vb_ad, torch.full_like(bids, vb_org))


def score(click_model: ClickModelFn, slates: torch.Tensor, n_candidates: int) -> torch.Tensor:
    """One ``click_model`` call, output checked: float64 ``[S, n_slots]`` click probabilities."""
    ctr = click_model(slates)
    if not isinstance(ctr, torch.Tensor):
        raise TypeError(f"click_model must return a tensor, got {type(ctr).__name__}")
    if ctr.shape != slates.shape:
        raise ValueError(f"click_model returned shape {tuple(ctr.shape)}, expected {tuple(slates.shape)} "
                         "(one click probability per slot of each slate)")
    ctr = ctr.detach().double().cpu()
    if not ((ctr >= 0) & (ctr <= 1)).all():  # NaN fails both comparisons
        raise ValueError("click_model returned values outside [0, 1] (or NaN); it must return click probabilities")
    return ctr


class ScoreCache:
    """Click probabilities of every distinct slate scored so far in one request, keyed by the slate read as a
    base-M number (sorted keys, looked up with searchsorted): a slate reached by several beam states, or by
    the main search and a re-solve, is scored once."""

    def __init__(self, n_candidates: int, n_slots: int):
        if n_candidates ** n_slots >= 2 ** 62:
            raise ValueError("ScoreCache keys would overflow int64")
        self.powers = n_candidates ** torch.arange(n_slots - 1, -1, -1, dtype=torch.long)
        self.keys = torch.empty(0, dtype=torch.long)
        self.ctr = torch.empty(0, n_slots, dtype=torch.float64)

    @staticmethod
    def fits(n_candidates: int, n_slots: int) -> bool:
        return n_candidates ** n_slots < 2 ** 62

    def ctr_of(self, click_model: ClickModelFn, slates: torch.Tensor, chunk_size: int) -> torch.Tensor:
        uniq, inverse = torch.unique((slates * self.powers).sum(1), return_inverse=True)
        pos = torch.searchsorted(self.keys, uniq)
        found = pos < self.keys.shape[0]
        found[found.clone()] = self.keys[pos[found]] == uniq[found]
        first = torch.empty(uniq.shape[0], dtype=torch.long).scatter_(0, inverse, torch.arange(slates.shape[0]))
        todo = slates[first[~found]]
        new_ctr = torch.cat([score(click_model, todo[i:i + chunk_size], 0) for i in range(0, todo.shape[0], chunk_size)]
                            or [torch.empty(0, slates.shape[1], dtype=torch.float64)])
        ctr = torch.empty(uniq.shape[0], slates.shape[1], dtype=torch.float64)
        ctr[found] = self.ctr[pos[found]]
        ctr[~found] = new_ctr
        keys = torch.cat([self.keys, uniq[~found]])
        order = keys.argsort()
        self.keys, self.ctr = keys[order], torch.cat([self.ctr, new_ctr])[order]
        return ctr[inverse]


def values_of(click_model: ClickModelFn, slates: torch.Tensor, weights: torch.Tensor,
              chunk_size: int = 16384, cache: ScoreCache | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Score slates in chunks (one ``click_model`` call per chunk): ``(values [S], ctr [S, n_slots])``; with
    a cache, only slates not scored before are sent to the click model."""
    if cache is not None:
        ctr = cache.ctr_of(click_model, slates, chunk_size)
        return (weights[slates] * ctr).sum(1), ctr
    vals, ctrs = [], []
    for start in range(0, slates.shape[0], chunk_size):
        chunk = slates[start:start + chunk_size]
        ctr = score(click_model, chunk, weights.shape[0])
        ctrs.append(ctr)
        vals.append((weights[chunk] * ctr).sum(1))
    if not vals:
        return torch.empty(0, dtype=torch.float64), torch.empty(0, slates.shape[1], dtype=torch.float64)
    return torch.cat(vals), torch.cat(ctrs)


def count_slates(n_ads: int, n_org: int, n_slots: int, max_ads: int, keep_organic_order: bool) -> int:
    """Number of feasible slates: sum over k ads of C(n, k) ad positions x P(ads, k) x organic fills."""
    total = 0
    for k in range(0, min(max_ads, n_ads, n_slots) + 1):
        m = n_slots - k
        if m > n_org:
            continue
        org = math.comb(n_org, m) if keep_organic_order else math.perm(n_org, m)
        total += math.comb(n_slots, k) * math.perm(n_ads, k) * org
    return total


def _product(*parts: torch.Tensor) -> list[torch.Tensor]:
    """Cartesian product of row sets: every combination of one row of each part, as aligned row tensors."""
    sizes = [p.shape[0] for p in parts]
    grids = torch.meshgrid(*[torch.arange(s) for s in sizes], indexing="ij")
    return [p[g.reshape(-1)] for p, g in zip(parts, grids)]


def _rows(it, width: int) -> torch.Tensor:
    rows = list(it)
    return torch.tensor(rows, dtype=torch.long).reshape(len(rows), width)


def enumerate_slates(is_ad: torch.Tensor, n_slots: int, max_ads: int, keep_organic_order: bool,
                     excluded: torch.Tensor | None = None) -> torch.Tensor:
    """Every feasible slate as a LongTensor ``[S, n_slots]`` (candidates in ``excluded`` left out)."""
    allowed = torch.ones_like(is_ad) if excluded is None else ~excluded
    ads = torch.nonzero(is_ad & allowed).flatten().tolist()
    orgs = torch.nonzero(~is_ad & allowed).flatten().tolist()
    blocks = []
    for k in range(0, min(max_ads, len(ads), n_slots) + 1):
        m = n_slots - k
        if m > len(orgs):
            continue
        positions = _rows(itertools.combinations(range(n_slots), k), k)
        ad_seqs = _rows(itertools.permutations(ads, k), k)
        org_seqs = _rows((itertools.combinations if keep_organic_order else itertools.permutations)(orgs, m), m)
        pos, a, o = _product(positions, ad_seqs, org_seqs)
        slates = torch.empty(pos.shape[0], n_slots, dtype=torch.long)
        is_ad_slot = torch.zeros(pos.shape[0], n_slots, dtype=torch.bool)
        is_ad_slot.scatter_(1, pos, True)
        slates[is_ad_slot] = a.reshape(-1)  # boolean fill is row-major: each row's ad slots in order
        slates[~is_ad_slot] = o.reshape(-1)
        blocks.append(slates)
    return torch.cat(blocks) if blocks else torch.empty(0, n_slots, dtype=torch.long)

"""VCG prices per click for the winning ads, with every re-solve (the page without ad i) batched.

price_i = (W*_-i - (W* - b_i ctr_i(a*))) / ctr_i(a*) = b_i - (W* - W*_-i) / ctr_i(a*)
W* is the best slate value, W*_-i the best value with ad i removed from the candidates, and
W* - b_i ctr_i(a*) what everyone but advertiser i (other advertisers, and the platform's virtual bids,
vb_ad included for ad i's own clicks) gets at a*.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .search import BEAM_WIDTH, EXACT_LIMIT, Pool, beam_pool, solve
from .slates import ClickModelFn, ScoreCache, check_problem, slot_weights

NEGATIVE_PRICES = ("allow", "floor")


@dataclass
class VCGResult:
    slate: torch.Tensor  # [n_slots] long
    price_per_click: torch.Tensor  # [n_slots] float64, 0 on organic slots
    value: float  # W*
    ctr: torch.Tensor  # [n_slots] predicted click probabilities on the winning slate
    value_without: torch.Tensor  # [n_slots] W*_-i on ad slots, nan on organic slots
    raw_price_per_click: torch.Tensor  # before the negative-price option
    method: str


def _merge(a: Pool, b: Pool) -> Pool:
    return Pool(torch.cat([a.slates, b.slates]), torch.cat([a.values, b.values]), torch.cat([a.ctr, b.ctr]))


def vcg_result(click_model: ClickModelFn, bids, is_ad, n_slots: int, max_ads: int, vb_ad: float = 0.0,
               vb_org: float = 0.0, keep_organic_order: bool = True, method: str = "auto",
               beam_width: int = BEAM_WIDTH, negative_prices: str = "allow", chunk_size: int = 16384,
               exact_limit: int = EXACT_LIMIT, batched_resolves: bool = True,
               share_scores: bool = True) -> VCGResult:
    """``vcg`` with everything it computed (see ``vcg``). ``batched_resolves=False`` runs the beam re-solves
    one after another and ``share_scores=False`` scores every slate each time it is met (the benchmark's
    loop of independent searches; same result)."""
    if negative_prices not in NEGATIVE_PRICES:
        raise ValueError(f"negative_prices must be one of {NEGATIVE_PRICES}, got {negative_prices!r}")
    bids, is_ad = check_problem(bids, is_ad, n_slots, max_ads, vb_ad, vb_org)
    m = bids.shape[0]
    weights = slot_weights(bids, is_ad, vb_ad, vb_org)
    main = torch.zeros(1, m, dtype=torch.bool)
    cache = ScoreCache(m, n_slots) if share_scores and ScoreCache.fits(m, n_slots) else None
    pool, used = solve(click_model, weights, is_ad, n_slots, max_ads, keep_organic_order, main, method,
                       beam_width, chunk_size, exact_limit, cache)
    solved: set[int] = set()
    while True:  # beam only loops: re-solves may find a better page, whose new winners need re-solves too
        best_i, best_v = pool.best(main)
        slate = pool.slates[best_i[0]]
        winners = [int(c) for c in slate if is_ad[c]]
        todo = [c for c in winners if c not in solved]
        if used == "exact" or not todo:
            break
        excluded = torch.zeros(len(todo), m, dtype=torch.bool)
        excluded[torch.arange(len(todo)), torch.tensor(todo)] = True
        groups = [excluded] if batched_resolves else [row[None] for row in excluded]
        for group in groups:
            pool = _merge(pool, beam_pool(click_model, weights, is_ad, n_slots, max_ads, keep_organic_order, group,
                                          beam_width, chunk_size, cache))
        solved.update(todo)
    w_star = float(best_v[0])
    ctr = pool.ctr[best_i[0]]
    ad_slots = [s for s in range(n_slots) if is_ad[slate[s]]]
    price = torch.zeros(n_slots, dtype=torch.float64)
    without = torch.full((n_slots,), float("nan"), dtype=torch.float64)
    if ad_slots:
        excluded = torch.zeros(len(ad_slots), m, dtype=torch.bool)
        excluded[torch.arange(len(ad_slots)), slate[ad_slots]] = True
        _, w_minus = pool.best(excluded)
        for row, s in enumerate(ad_slots):
            without[s] = w_minus[row]
            c, b = float(ctr[s]), float(bids[slate[s]])
            # no click expected, or no page can be filled without this ad: nothing to charge
            if c > 0 and torch.isfinite(w_minus[row]):
                price[s] = (float(w_minus[row]) - (w_star - b * c)) / c
    raw = price.clone()
    if negative_prices == "floor":
        price.clamp_(min=0.0)
    return VCGResult(slate.clone(), price, w_star, ctr.clone(), without, raw, used)


def vcg(click_model: ClickModelFn, bids, is_ad, n_slots: int, max_ads: int, vb_ad: float = 0.0,
        vb_org: float = 0.0, keep_organic_order: bool = True, method: str = "auto", beam_width: int = BEAM_WIDTH,
        negative_prices: str = "allow", chunk_size: int = 16384,
        exact_limit: int = EXACT_LIMIT) -> tuple[torch.Tensor, torch.Tensor]:
    """Allocation and VCG price per click: ``(slate [n_slots], price_per_click [n_slots])`` (0 on organic slots).

    With externalities an ad can raise the others' clicks, and then its VCG price is negative (the platform
    pays it). ``negative_prices="allow"`` keeps pure VCG (truthful, individually rational);
    ``"floor"`` charges max(price, 0): never pays advertisers, but an ad whose price was floored may gain by
    lowering its bid out of the page or changing the allocation (see docs/methods/blend.md)."""
    r = vcg_result(click_model, bids, is_ad, n_slots, max_ads, vb_ad, vb_org, keep_organic_order, method,
                   beam_width, negative_prices, chunk_size, exact_limit)
    return r.slate, r.price_per_click

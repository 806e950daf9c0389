"""Allocation: the best feasible slate by exact enumeration or by beam search, for several problems at once.

A "problem" is the request with some candidates removed (``excluded [P, M]``): row 0 is usually the full
request and the other rows the VCG re-solves without one winning ad. Every slate scored is kept in a pool:
a slate scored for any problem is feasible for every problem that does not exclude one of its items, so the
best value of each problem is taken over the whole pool (this is what makes VCG re-solves exact for
``method="exact"`` from ONE scored set, and keeps W*_-i <= W* consistent for beam search).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .slates import (ClickModelFn, ScoreCache, check_problem, count_slates, enumerate_slates, slot_weights,
                     values_of)

EXACT_LIMIT = 200_000  # method="auto" enumerates when there are at most this many feasible slates
BEAM_WIDTH = 16


@dataclass
class Pool:
    """Every full slate scored so far, with its value and click probabilities."""

    slates: torch.Tensor  # [S, n_slots] long
    values: torch.Tensor  # [S] float64
    ctr: torch.Tensor  # [S, n_slots] float64

    def best(self, excluded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per problem (row of ``excluded [P, M]``): index into the pool of its best slate and its value
        (-inf and index -1 when no pooled slate is feasible for it)."""
        hits = excluded[:, self.slates].any(-1)  # [P, S]: slate uses an excluded candidate
        vals = self.values.expand(excluded.shape[0], -1).masked_fill(hits, float("-inf"))
        if vals.shape[1] == 0:
            return torch.full((excluded.shape[0],), -1), torch.full((excluded.shape[0],), float("-inf"))
        v, i = vals.max(1)
        return torch.where(torch.isfinite(v), i, -1), v


def exact_pool(click_model: ClickModelFn, weights, is_ad, n_slots, max_ads, keep_organic_order,
               chunk_size=16384) -> Pool:
    slates = enumerate_slates(is_ad, n_slots, max_ads, keep_organic_order)
    values, ctr = values_of(click_model, slates, weights, chunk_size)
    return Pool(slates, values, ctr)


def _completion_key(weights: torch.Tensor, is_ad: torch.Tensor) -> torch.Tensor:
    """Order in which a partial slate is filled up to score it: organic items by index (the recommender's
    ranking), then ads by value per click, highest first."""
    m = weights.shape[0]
    key = torch.arange(m, dtype=torch.long)
    ad_idx = torch.nonzero(is_ad).flatten()
    ad_rank = torch.argsort(torch.argsort(-weights[ad_idx], stable=True))
    key[ad_idx] = m + ad_rank
    return key


def beam_pool(click_model: ClickModelFn, weights, is_ad, n_slots, max_ads, keep_organic_order, excluded,
              beam_width=BEAM_WIDTH, chunk_size=16384, cache: ScoreCache | None = None) -> Pool:
    """Beam search slot by slot for every problem of ``excluded [P, M]`` together.

    A partial slate is judged by the value of its completion (fill the remaining slots with the next organic
    items in ranking order, then the most valuable ads), so the click model always sees a whole page and
    its context. Each step expands every kept state by every feasible candidate, scores all completions of
    all problems in one batch, and keeps the best ``beam_width`` per problem."""
    n_prob, m = excluded.shape
    allowed = ~excluded  # [P, M]
    org_allowed = allowed & ~is_ad
    ads_allowed_total = (allowed & is_ad).sum(1)  # [P]
    org_allowed_total = org_allowed.sum(1)
    # organics allowed with index > L, for L = -1..M-1 (column L + 1)
    org_after = torch.cat([org_allowed.flip(1).cumsum(1).flip(1), torch.zeros(n_prob, 1, dtype=torch.long)], 1)
    key = _completion_key(weights, is_ad)
    big = 2 * m + 1
    cand = torch.arange(m)
    states = torch.empty(n_prob, 1, 0, dtype=torch.long)
    state_ok = torch.ones(n_prob, 1, dtype=torch.bool)
    pools = []
    for t in range(n_slots):
        b = states.shape[1]
        used = torch.zeros(n_prob, b, m, dtype=torch.bool)
        if t:
            used.scatter_(2, states, True)
        ads_used = (used & is_ad).sum(2)  # [P, B]
        org_used = (used & ~is_ad).sum(2)
        last_org = torch.where(used & ~is_ad, cand, -1).amax(2) if t else torch.full((n_prob, b), -1)
        # feasibility of appending candidate c: [P, B, M]
        c_ad = is_ad.view(1, 1, m)
        ok = state_ok[..., None] & allowed[:, None, :] & ~used
        ok &= ~c_ad | (ads_used[..., None] < max_ads)
        if keep_organic_order:
            ok &= c_ad | (cand.view(1, 1, m) > last_org[..., None])
        new_ads = ads_used[..., None] + c_ad.long()
        new_last = torch.where(c_ad, last_org[..., None], cand.view(1, 1, m))
        if keep_organic_order:
            org_left = torch.gather(org_after[:, None, :].expand(-1, b, -1), 2, new_last + 1)
        else:
            org_left = org_allowed_total.view(-1, 1, 1) - org_used[..., None] - (~c_ad).long()
        ads_left = torch.minimum(max_ads - new_ads, ads_allowed_total.view(-1, 1, 1) - new_ads)
        ok &= (n_slots - t - 1) <= org_left + ads_left
        p_idx, b_idx, c_idx = torch.nonzero(ok, as_tuple=True)
        if p_idx.numel() == 0:
            break
        prefix = torch.cat([states[p_idx, b_idx], c_idx[:, None]], 1)  # [F, t+1]
        rest = n_slots - t - 1
        if rest:
            eligible = allowed[p_idx] & ~used[p_idx, b_idx]
            eligible[torch.arange(c_idx.shape[0]), c_idx] = False
            if keep_organic_order:
                eligible &= is_ad | (cand[None, :] > new_last[p_idx, b_idx, c_idx][:, None])
            order = torch.where(eligible, key, big).argsort(dim=1, stable=True)[:, :rest]
            full = torch.cat([prefix, order], 1)
        else:
            full = prefix
        values, ctr = values_of(click_model, full, weights, chunk_size, cache)
        pools.append(Pool(full, values, ctr))
        flat = torch.full((n_prob, b * m), float("-inf"), dtype=torch.float64)
        flat[p_idx, b_idx * m + c_idx] = values
        k = min(beam_width, b * m)
        top_v, top_i = flat.topk(k, dim=1)
        # a kept state's prefix: look it up through a dense [P, B*M] map to the flat expansion row
        row_of = torch.full((n_prob, b * m), -1, dtype=torch.long)
        row_of[p_idx, b_idx * m + c_idx] = torch.arange(p_idx.shape[0])
        rows = row_of.gather(1, top_i)
        state_ok = torch.isfinite(top_v)
        states = prefix[rows.clamp(min=0)]
    return Pool(torch.cat([p.slates for p in pools]), torch.cat([p.values for p in pools]),
                torch.cat([p.ctr for p in pools]))


def solve(click_model: ClickModelFn, weights, is_ad, n_slots, max_ads, keep_organic_order, excluded, method,
          beam_width=BEAM_WIDTH, chunk_size=16384, exact_limit=EXACT_LIMIT,
          cache: ScoreCache | None = None) -> tuple[Pool, str]:
    """Score slates for every problem of ``excluded``; returns the pool and the method used."""
    if method not in ("exact", "beam", "auto"):
        raise ValueError(f"method must be 'exact', 'beam' or 'auto', got {method!r}")
    if isinstance(beam_width, bool) or not isinstance(beam_width, int) or beam_width < 1:
        raise ValueError(f"beam_width must be an int >= 1, got {beam_width!r}")
    if method == "auto":
        n = count_slates(int(is_ad.sum()), int((~is_ad).sum()), n_slots, max_ads, keep_organic_order)
        method = "exact" if n <= exact_limit else "beam"
    if method == "exact":
        return exact_pool(click_model, weights, is_ad, n_slots, max_ads, keep_organic_order, chunk_size), method
    return beam_pool(click_model, weights, is_ad, n_slots, max_ads, keep_organic_order, excluded, beam_width,
                     chunk_size, cache), method


def allocate(click_model: ClickModelFn, bids, is_ad, n_slots: int, max_ads: int, vb_ad: float = 0.0,
             vb_org: float = 0.0, keep_organic_order: bool = True, method: str = "auto",
             beam_width: int = BEAM_WIDTH, chunk_size: int = 16384,
             exact_limit: int = EXACT_LIMIT) -> tuple[torch.Tensor, float]:
    """Best slate and its value: max over feasible slates of sum_ads (bid + vb_ad) ctr + sum_org vb_org ctr.

    ``click_model(slates LongTensor[S, n_slots]) -> [S, n_slots]`` click probabilities.
    ``method``: "exact" (enumerate every feasible slate, scored in chunks), "beam" (beam search of width
    ``beam_width``) or "auto" (exact when there are at most ``exact_limit`` feasible slates)."""
    bids, is_ad = check_problem(bids, is_ad, n_slots, max_ads, vb_ad, vb_org)
    weights = slot_weights(bids, is_ad, vb_ad, vb_org)
    none = torch.zeros(1, bids.shape[0], dtype=torch.bool)
    cache = ScoreCache(bids.shape[0], n_slots) if ScoreCache.fits(bids.shape[0], n_slots) else None
    pool, _ = solve(click_model, weights, is_ad, n_slots, max_ads, keep_organic_order, none, method, beam_width,
                    chunk_size, exact_limit, cache)
    i, v = pool.best(none)
    return pool.slates[i[0]].clone(), float(v[0])

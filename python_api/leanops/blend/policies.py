"""Three ways to put ads on a page, all steered by the same virtual bids (vb_ad, vb_org), and their outcome
on the simulator's true clicks.

- ``fixed_slots``: ads may only go to fixed slots (2nd, 5th, 8th); the k-th best ad by (bid + vb_ad) * pCTR
  takes the k-th ad slot when it beats vb_org * pCTR of the organic item it displaces; GSP prices.
- ``ranked``: one list ranked by score per item, position-unaware: ads (bid + vb_ad) * pCTR, organic items
  vb_org * pCTR (organic items keep their ranking order); GSP prices.
  Both use a per-item pCTR (the context-free model, evaluated at the top slot).
- ``blended``: list-aware blending: ``vcg`` with the list-aware click model, VCG prices.
- ``blended (true CTR)``: the same with the simulator's true click model: the ceiling of blending.
GSP price per click of an ad: the least bid that keeps its place against the next competitor's score,
max(next ad's score, displaced organic score) / pCTR - vb_ad, clipped to [0, bid].
Advertisers bid their true value (truthful under VCG; under GSP it is the usual simplifying assumption).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .click_model import request_scorer
from .simulator import Requests, Simulator
from .vcg import vcg_result

FIXED_AD_SLOTS = (1, 4, 7)


def item_pctr(per_item_model, requests: Requests, i: int) -> torch.Tensor:
    """Position-unaware pCTR of every candidate of request i: the per-item model at the top slot."""
    m = requests.is_ad.shape[1]
    return request_scorer(per_item_model, requests, i)(torch.arange(m)[:, None])[:, 0].double()


def _gsp_price(score_next: float, pctr: float, bid: float, vb_ad: float) -> float:
    return float(min(max(score_next / max(pctr, 1e-12) - vb_ad, 0.0), bid))


def fixed_slots(pctr, bids, is_ad, n_slots, max_ads, vb_ad, vb_org):
    ads = sorted(torch.nonzero(is_ad).flatten().tolist(), key=lambda a: -float((bids[a] + vb_ad) * pctr[a]))
    orgs = torch.nonzero(~is_ad).flatten().tolist()
    ad_slots = [s for s in FIXED_AD_SLOTS[:max_ads] if s < n_slots]
    score = lambda a: float((bids[a] + vb_ad) * pctr[a])  # noqa: E731
    slate, price, k = [], [], 0
    for s in range(n_slots):
        threshold = vb_org * float(pctr[orgs[0]]) if orgs else 0.0
        if s in ad_slots and k < len(ads) and score(ads[k]) > threshold:
            a = ads[k]
            nxt = score(ads[k + 1]) if k + 1 < len(ads) else 0.0
            slate.append(a)
            price.append(_gsp_price(max(nxt, threshold), float(pctr[a]), float(bids[a]), vb_ad))
            k += 1
        else:
            slate.append(orgs.pop(0))
            price.append(0.0)
    return torch.tensor(slate), torch.tensor(price, dtype=torch.float64)


def ranked(pctr, bids, is_ad, n_slots, max_ads, vb_ad, vb_org):
    ads = sorted(torch.nonzero(is_ad).flatten().tolist(), key=lambda a: -float((bids[a] + vb_ad) * pctr[a]))
    orgs = torch.nonzero(~is_ad).flatten().tolist()
    score = lambda a: float((bids[a] + vb_ad) * pctr[a])  # noqa: E731
    slate, price, k = [], [], 0
    for _ in range(n_slots):
        org_score = vb_org * float(pctr[orgs[0]]) if orgs else -1.0
        if k < min(max_ads, len(ads)) and (score(ads[k]) > org_score or not orgs):
            a = ads[k]
            nxt = score(ads[k + 1]) if k + 1 < min(max_ads, len(ads)) else 0.0
            slate.append(a)
            price.append(_gsp_price(max(nxt, org_score, 0.0), float(pctr[a]), float(bids[a]), vb_ad))
            k += 1
        else:
            slate.append(orgs.pop(0))
            price.append(0.0)
    return torch.tensor(slate), torch.tensor(price, dtype=torch.float64)


@dataclass
class Outcome:
    """Means per request on the simulator's true clicks."""

    revenue: float
    organic_clicks: float
    ad_clicks: float
    advertiser_surplus: float
    negative_price_share: float  # share of shown ads charged a negative price (before any floor)

    def to_dict(self):
        return dict(self.__dict__)


def run_policy(name: str, sim: Simulator, requests: Requests, n_slots: int, max_ads: int, vb_ad: float,
               vb_org: float, per_item_model=None, click_model=None, beam_width: int = 8,
               negative_prices: str = "allow") -> Outcome:
    slates, prices, negative, shown = [], [], 0, 0
    for i in range(len(requests)):
        bids, is_ad = requests.value[i].double(), requests.is_ad[i]
        if name in ("blended", "blended (true CTR)"):
            scorer = sim.click_model(requests, i) if name == "blended (true CTR)" else request_scorer(click_model,
                                                                                                      requests, i)
            r = vcg_result(scorer, bids, is_ad, n_slots, max_ads, vb_ad, vb_org,
                           method="beam", beam_width=beam_width, negative_prices=negative_prices)
            slate, price = r.slate, r.price_per_click
            ad_slots = is_ad[slate]
            negative += int((r.raw_price_per_click[ad_slots] < -1e-12).sum())
            shown += int(ad_slots.sum())
        else:
            policy = {"fixed slots": fixed_slots, "ranked (GSP)": ranked}[name]
            slate, price = policy(item_pctr(per_item_model, requests, i), bids, is_ad, n_slots, max_ads, vb_ad,
                                  vb_org)
        slates.append(slate)
        prices.append(price)
    slates, prices = torch.stack(slates), torch.stack(prices)
    idx = torch.arange(len(requests))
    ctr = sim.slate_ctr(requests, idx, slates).double()
    ad = requests.is_ad[idx[:, None], slates]
    value = requests.value[idx[:, None], slates].double()
    return Outcome(revenue=float((prices * ctr * ad).sum(1).mean()),
                   organic_clicks=float((ctr * ~ad).sum(1).mean()),
                   ad_clicks=float((ctr * ad).sum(1).mean()),
                   advertiser_surplus=float(((value - prices) * ctr * ad).sum(1).mean()),
                   negative_price_share=negative / max(shown, 1))


def no_ads_organic_clicks(sim: Simulator, requests: Requests, n_slots: int) -> float:
    """Organic clicks per request of the page without ads: the top n_slots organic items in ranking order."""
    n_ads = int(requests.is_ad[0].sum())
    slates = torch.arange(n_ads, n_ads + n_slots).expand(len(requests), -1)
    return float(sim.slate_ctr(requests, torch.arange(len(requests)), slates).sum(1).mean())

"""``leanops demo`` section: blending ads into an organic feed on one simulated request (known ground truth)."""
from __future__ import annotations

import torch

from ..bench.timing import ratio, time_providers
from .simulator import Simulator
from .vcg import vcg_result


def section(quick: bool) -> None:
    print("\n== leanops.blend: ads blended with organic items (list-aware allocation, virtual bids, VCG) ==")
    sim = Simulator()
    g = torch.Generator().manual_seed(7)
    n_ads, n_org, n_slots, max_ads = (6, 12, 6, 2) if quick else (10, 20, 8, 3)
    req = sim.sample(1, n_ads, n_org, g)
    truth = sim.click_model(req, 0)  # the simulator's true click model (externalities between neighbours)
    bids, is_ad = req.value[0].double(), req.is_ad[0]
    print(f"one request: {n_ads} ads (bids = true values per click), {n_org} organic items, {n_slots} slots, "
          f"at most {max_ads} ads; click model = the simulator's ground truth")
    print(f"{'vb_org':>6}  {'page (A=ad, O=organic, index)':42} {'prices per click on ad slots':32} {'org clicks':>10}")
    for vb_org in (0.0, 1.0, 2.5):
        r = vcg_result(truth, bids, is_ad, n_slots, max_ads, vb_org=vb_org, method="beam", beam_width=8)
        page = " ".join(("A" if is_ad[c] else "O") + str(int(c)) for c in r.slate)
        prices = " ".join(f"{float(p):.3f}" for p, c in zip(r.price_per_click, r.slate) if is_ad[c]) or "-"
        org = float((r.ctr * ~is_ad[r.slate]).sum())
        print(f"{vb_org:6.1f}  {page:42} {prices:32} {org:10.3f}")

    def search(batched):
        return lambda: vcg_result(truth, bids, is_ad, n_slots, max_ads, vb_org=0.5, method="beam", beam_width=8,
                                  batched_resolves=batched, share_scores=batched,
                                  chunk_size=16384 if batched else n_ads + n_org)

    t = time_providers({"re-solves in a loop": search(False), "batched re-solves": search(True)}, "cpu",
                       repeats=3 if quick else 7)
    r = ratio(t["re-solves in a loop"], t["batched re-solves"], "re-solves in a loop")
    print(f"allocation + VCG: batched re-solves {t['batched re-solves']}; vs the loop of per-state-scored "
          f"searches {r} (interleaved repeats, measured on this machine)")

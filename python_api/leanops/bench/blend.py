"""Blend benchmark: one page request (20 candidate ads, 30 organic items, 10 slots, at most 3 ads), beam
allocation plus VCG prices with the trained list-aware click model.

Providers (the same search, the same scored slates, the same answer: the same slate, prices equal to float32
rounding):
- anchor "loop of unbatched searches": the main search and then each winner's re-solve one after another,
  each scoring one beam state's expansions per click-model call (chunks of M rows);
- ablation "loop of step-batched searches": re-solves still one after another, but every step of a search
  scores all its states in one call (isolates what batching the re-solves together adds);
- ablation "batched re-solves, no shared scores": every step scores all states of all re-solves in one call;
- "leanops.blend.vcg (batched re-solves)": the same, and each distinct slate is scored once per request
  (a slate met again, by another beam state or by a re-solve after the main search, comes from a cache).
Latency per request (p50/p99) is measured over a stream of different requests.
"""
from __future__ import annotations

import json
import os

import torch

from ..blend import click_model as cm
from ..blend.simulator import Simulator, log_traffic
from ..blend.vcg import vcg_result
from .timing import device_tag, machine, ratio, runner_note, time_providers

PAGE = dict(n_ads=20, n_org=30, n_slots=10, max_ads=3)
VB_ORG = 1.0
BEAM_WIDTH = 8
ANCHOR, ABLATION = "loop of unbatched searches", "loop of step-batched searches"
NO_SHARING, OURS = "batched re-solves, no shared scores", "leanops.blend.vcg (batched re-solves)"


def trained_setup(n_requests: int, seed: int = 0, log_requests: int = 60, epochs: int = 2):
    """A list-aware click model trained briefly on logged pages of this page shape, and test requests."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    sim = Simulator()
    logs_req = sim.sample(log_requests, PAGE["n_ads"], PAGE["n_org"], g)
    logs = log_traffic(sim, logs_req, 5, PAGE["n_slots"], PAGE["max_ads"], g)
    model = cm.ClickModel(logs_req.item_features().shape[-1], logs_req.user.shape[-1], PAGE["n_slots"])
    cm.train(model, logs_req, logs, epochs=epochs, generator=g)
    return model, sim.sample(n_requests, PAGE["n_ads"], PAGE["n_org"], g)


def providers(model, requests):
    m = PAGE["n_ads"] + PAGE["n_org"]

    def make(i, batched, chunk, share):
        def call():
            return vcg_result(cm.request_scorer(model, requests, i), requests.value[i].double(), requests.is_ad[i],
                              PAGE["n_slots"], PAGE["max_ads"], vb_org=VB_ORG, method="beam", beam_width=BEAM_WIDTH,
                              batched_resolves=batched, chunk_size=chunk, share_scores=share)
        return call

    return {ANCHOR: lambda i: make(i, False, m, False), ABLATION: lambda i: make(i, False, 16384, False),
            NO_SHARING: lambda i: make(i, True, 16384, False), OURS: lambda i: make(i, True, 16384, True)}


def run(device=None, quick=False, out_dir="benchmarks/results", repeats=None):
    device = device or "cpu"
    if device != "cpu":
        raise ValueError(f"leanops bench blend runs on CPU (the search is host-side), got device={device!r}")
    repeats = repeats or (4 if quick else 20)
    model, requests = trained_setup(n_requests=repeats + 1, log_requests=30 if quick else 120)
    prov = providers(model, requests)
    # each repeat is a different request: repeat r of every provider serves request r (fair pairs)
    counters = {name: iter(range(1, repeats + 1)) for name in prov}
    fns = {name: (lambda name=name: prov[name](next(counters[name], 0))()) for name in prov}
    answer = prov[OURS](0)()
    for name in prov:  # same answer from every provider on the warm-up request
        got = prov[name](0)()
        # the same slate; prices to float32 rounding (the click model's batch shapes differ between providers,
        # and a float32 GEMM's rounding depends on them)
        assert torch.equal(got.slate, answer.slate), f"{name}: slate {got.slate.tolist()} != {answer.slate.tolist()}"
        torch.testing.assert_close(got.price_per_click, answer.price_per_click, rtol=1e-5, atol=1e-9, msg=name)
    timings = time_providers(fns, device, repeats, warmup=0)
    rows = []
    for name, t in timings.items():
        row = {"provider": name, **t.to_dict("ms"), "p99_ms": t.quantile(0.99) * 1e3}
        if name != ANCHOR:
            row["vs_anchor"] = ratio(timings[ANCHOR], t, ANCHOR).to_dict()
        if name == OURS:
            row["vs_ablation"] = ratio(timings[ABLATION], t, ABLATION).to_dict()
            row["vs_no_sharing"] = ratio(timings[NO_SHARING], t, NO_SHARING).to_dict()
        rows.append(row)
    print(f"blend: one request ({PAGE}), beam width {BEAM_WIDTH}, vb_org={VB_ORG}, trained list-aware click "
          f"model, {repeats} requests interleaved (CPU, {torch.get_num_threads()} threads)")
    print(f"{'provider':40} {'p50 ms':>9} {'p99 ms':>9} {'vs anchor':>20}")
    for row in rows:
        r = row.get("vs_anchor")
        cell = f"{r['ratio']:.2f}x ({r['ratio_p25']:.2f}-{r['ratio_p75']:.2f})" if r else "anchor"
        print(f"{row['provider']:40} {row['median_ms']:9.2f} {row['p99_ms']:9.2f} {cell:>20}")
    ours = next(r for r in rows if r["provider"] == OURS)
    for key, name in (("vs_ablation", ABLATION), ("vs_no_sharing", NO_SHARING)):
        ab = ours[key]
        print(f"{OURS} vs {name}: {ab['ratio']:.2f}x ({ab['ratio_p25']:.2f}-{ab['ratio_p75']:.2f})")
    print(runner_note("blend", quick))
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"blend-{device_tag(device)}.json")
    with open(path, "w") as fh:
        json.dump({"runner": runner_note("blend", quick), "anchor": ANCHOR, "page": PAGE, "beam_width": BEAM_WIDTH,
                   "vb_org": VB_ORG, "quick": quick, "machine": machine(), "rows": rows}, fh, indent=1)
    print(f"wrote {path}")
    return rows

"""PDG benchmarks: decoding throughput (tokens/s) with and without the copy mechanism, greedy and beam 4,
with the incremental KV cache and without it (every step recomputes the whole prefix), and the training
step time (forward + backward + AdamW) of the four systems.

Models are freshly initialised (d=64, 2+2 layers) with the [EOS] logit pushed to -1e4, so every provider
decodes exactly ``max_len`` tokens per item: tokens/s compare like with like. Anchor of the decoding
ratios: greedy, no copy, KV cache (plain Transformer decoding as one would write it); of the training
ratios: the plain Transformer's step.
"""
from __future__ import annotations

import json
import os

import torch

from .timing import device_tag, machine, ratio, runner_note, time_providers

QUICK = dict(batch=8, max_len=16, n_train=60)
FULL = dict(batch=32, max_len=48, n_train=300)
ANCHOR = "greedy, no copy, KV cache"
TRAIN_ANCHOR = "train step: transformer"


def setup(quick: bool, seed: int = 0):
    from ..pdg import SYSTEMS, PieceVocab, build
    from ..pdg.data import generate

    shape = QUICK if quick else FULL
    cat = generate(n_train=shape["n_train"], n_valid=4, n_test=shape["batch"], seed=seed)
    vocab = PieceVocab.train(cat.training_texts(), 300)
    gens = {}
    for name in SYSTEMS:
        torch.manual_seed(seed)
        gen = build(vocab, cat.train, SYSTEMS[name])
        with torch.no_grad():
            gen.model.out.bias[vocab.eos] = -1e4  # never stop early: fixed token count
        gen.model.eval()
        gens[name] = gen
    return cat, gens, shape


def decode_providers(cat, gens, shape) -> dict:
    from ..pdg import beam_search

    products = cat.test_reviewed[:shape["batch"]]
    out = {}
    for beam in (1, 4):
        for copy in (False, True):
            gen = gens["transformer+copy" if copy else "transformer"]
            batch = gen.batch(products)
            for cache in ((True, False) if copy else (True,)):
                name = f"{'greedy' if beam == 1 else f'beam {beam}'}, {'copy' if copy else 'no copy'}, " \
                       f"{'KV cache' if cache else 'no cache'}"
                out[name] = (lambda g=gen, b=batch, k=beam, c=cache:
                             beam_search(g.model, b, beam_size=k, max_len=shape["max_len"], use_cache=c))
    return out


def train_providers(cat, gens, shape) -> dict:
    out = {}
    for name, gen in gens.items():
        batch = gen.batch(cat.train[:32])
        opt = torch.optim.AdamW(gen.model.parameters(), lr=1e-4)

        def step(g=gen, b=batch, o=opt):
            g.model.train()
            loss = g.model.loss(b)["loss"]
            o.zero_grad(set_to_none=True)
            loss.backward()
            o.step()
            g.model.eval()
        out[f"train step: {name}"] = step
    return out


def run(device=None, quick=False, out_dir="benchmarks/results", repeats=None):
    from tqdm import tqdm

    device = device or "cpu"
    if device != "cpu":
        raise ValueError(f"the PDG benchmark runs on CPU (beam search is host-driven), got device={device!r}")
    repeats = repeats or (3 if quick else 9)
    cat, gens, shape = setup(quick)
    rows = []
    for group, fns, anchor in tqdm([("decode", decode_providers(cat, gens, shape), ANCHOR),
                                    ("train", train_providers(cat, gens, shape), TRAIN_ANCHOR)],
                                   desc="bench pdg", unit="group"):
        timings = time_providers(fns, device, repeats)
        for name, t in timings.items():
            row = {"group": group, "provider": name, **t.to_dict("ms"), "vs_anchor": ratio(timings[anchor], t, anchor).to_dict()}
            if group == "decode":
                tokens = shape["batch"] * shape["max_len"]
                row["tokens_per_s"] = tokens / t.median
                if "no cache" in name:
                    cached = name.replace("no cache", "KV cache")
                    row["kv_cache_speedup"] = ratio(t, timings[cached], name).to_dict()  # no cache / cache
            rows.append(row)
    tag = device_tag(device) + ("-quick" if quick else "")
    result = {"family": "pdg", "device": tag, "machine": machine(), "runner": runner_note("pdg", quick),
              "anchor": [ANCHOR, TRAIN_ANCHOR], "repeats": repeats, "shape": shape, "rows": rows}
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"pdg-{tag}.json")
    with open(path, "w") as fh:
        json.dump(result, fh, indent=1)
    print(f"batch {shape['batch']} items x {shape['max_len']} tokens, d=64, 2+2 layers, float32")
    print(f"{'provider':34} {'median ms':>10} {'p25-p75 ms':>19} {'tokens/s':>10} {'x anchor (spread)':>20} "
          f"{'cache speed-up':>18}")
    for r in rows:
        a = r["vs_anchor"]
        kv = r.get("kv_cache_speedup")
        print(f"{r['provider']:34} {r['median_ms']:10.2f} {r['p25_ms']:9.2f}-{r['p75_ms']:<9.2f} "
              f"{r.get('tokens_per_s', float('nan')):10.0f} {a['ratio']:8.2f}x ({a['ratio_p25']:.2f}-{a['ratio_p75']:.2f}) "
              + (f"{kv['ratio']:7.2f}x ({kv['ratio_p25']:.2f}-{kv['ratio_p75']:.2f})" if kv else ""))
    print(f"ratio = anchor median / provider median (> 1: faster than the anchor); (spread) = p25-p75 of the "
          f"{repeats} paired per-repeat ratios; anchors: {ANCHOR!r} (decoding), {TRAIN_ANCHOR!r} (training); "
          f"cache speed-up = no-cache median / KV-cache median; runner: {result['runner']} on {tag}")
    print(f"wrote {path}")
    return result

"""PYRA benchmarks: one PYRA merge step (``leanops.pyra.pyra_merge``: gate math in PyTorch, the merge with the
gates fused in the ``merge_wavg`` kernel) against the same formula in eager PyTorch (the anchor,
``pyra.eager_pyra_merge``), at ViT-B/16 shapes (B=64, N=197, C=768, r=16) and MiniLM shapes (B=64, N=128,
C=384, r=16), forward and forward+backward; plain ToMe ``merge_wavg`` without gates is an ablation row (what
the gates cost), and so, forward+backward, is pyra_merge's forward with plain autograd through its row gathers
(what its own backward is worth). End to end: a PYRA-patched MiniLM-shaped BERT against the ToMe-patched one at the same
schedule (both exported: LoRA merged), interleaved; PYRA's overhead = PYRA median / ToMe median - 1.
"""
from __future__ import annotations

import copy
import json
import os

import torch

from ..ops import merge as merge_ops
from .timing import device_tag, machine, ratio, runner_note, time_providers

STEP_SHAPES = {"ViT-B/16": dict(b=64, n=197, c=768, r=16), "MiniLM": dict(b=64, n=128, c=384, r=16)}
QUICK_STEP_SHAPES = {"ViT-B/16 (quick: B=8)": dict(b=8, n=197, c=768, r=16),
                     "MiniLM (quick: B=8)": dict(b=8, n=128, c=384, r=16)}
E2E = dict(batch=32, tokens=128, layers=6, hidden=384, heads=12, schedule="high")
QUICK_E2E = dict(batch=8, tokens=64, layers=6, hidden=384, heads=12, schedule="high")
ANCHOR, OURS, TOME = "eager PyTorch formula", "pyra_merge (fused)", "ToMe merge_wavg, no gates (ablation)"
AUTOGRAD_GATHERS = "gathers by autograd (ablation)"  # pyra_merge's forward, plain autograd backward


def step_inputs(b, n, c, r, grad=False, seed=0):
    from ..pyra import PYRAGate

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n, c, generator=g)
    size = torch.randint(1, 4, (b, n), generator=g).float()
    src, dst, unm = merge_ops.bipartite_match(x, r, 1)
    torch.manual_seed(seed)
    gate = PYRAGate(c, r)
    with torch.no_grad():
        gate.token_gate_weight.normal_(std=0.05)
    if grad:
        x.requires_grad_()
    return dict(x=x, size=size, src=src, dst=dst, unm=unm, gate=gate)


def step_providers(backward: bool = False):
    """Name -> step function; with ``backward`` also the autograd-gathers ablation (in the forward it is the
    same code as pyra_merge)."""
    from ..pyra import eager_pyra_merge, pyra_merge

    providers = {
        ANCHOR: lambda a: eager_pyra_merge(a["x"], a["size"], a["src"], a["dst"], a["unm"], 1, a["gate"]),
        OURS: lambda a: pyra_merge(a["x"], a["size"], a["src"], a["dst"], a["unm"], 1, a["gate"], validate=False),
        TOME: lambda a: merge_ops.merge_wavg(a["x"], a["size"], a["src"], a["dst"], a["unm"], 1, validate=False),
    }
    if backward:
        providers[AUTOGRAD_GATHERS] = autograd_gathers_step
    return providers


def autograd_gathers_step(a):
    """pyra_merge's forward with plain autograd through the two row gathers: the ablation that isolates what
    pyra_merge's own backward (one gradient buffer for x, gate rows added in place) is worth."""
    from ..pyra.merge import plain_autograd_step

    return plain_autograd_step(a["x"], a["size"], a["src"], a["dst"], a["unm"], 1, a["gate"], validate=False)


def run_step(fn, a, backward: bool):
    out = fn(a)[0]
    if backward:
        out.sum().backward()
    return out


def e2e_models(batch, tokens, layers, hidden, heads, schedule):
    """(ToMe-patched, PYRA-patched) exported BERTs of one random MiniLM-shaped encoder, and an input batch."""
    from transformers import BertConfig, BertModel

    from .. import pyra

    cfg = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=4 * hidden, attn_implementation="sdpa")
    torch.manual_seed(0)
    base = BertModel(cfg).eval()
    tome_model = pyra.export(pyra.patch(copy.deepcopy(base), r=schedule, num_tokens=tokens, gates=False))
    pyra_model = pyra.export(pyra.patch(copy.deepcopy(base), r=schedule, num_tokens=tokens))
    with torch.no_grad():
        for g in pyra.gates(pyra_model):
            g.token_gate_weight.normal_(std=0.05)
    ids = torch.randint(0, cfg.vocab_size, (batch, tokens), generator=torch.Generator().manual_seed(0))
    return tome_model.eval(), pyra_model.eval(), ids


def run(device=None, quick=False, out_dir="benchmarks/results", repeats=None):
    from tqdm import tqdm

    device = device or "cpu"
    if device != "cpu":
        raise ValueError(f"leanops bench pyra runs on CPU only here (no GPU measurement yet), got device={device!r}")
    repeats = repeats or (5 if quick else 15)
    shapes = QUICK_STEP_SHAPES if quick else STEP_SHAPES
    rows = []
    jobs = [(name, mode) for name in shapes for mode in ("fwd", "fwd+bwd")]
    for name, mode in tqdm(jobs, desc="bench pyra (merge step)"):
        a = step_inputs(**shapes[name], grad=mode == "fwd+bwd")
        providers = step_providers(backward=mode == "fwd+bwd")
        fns = {p: (lambda fn=fn: run_step(fn, a, mode == "fwd+bwd")) for p, fn in providers.items()}
        if mode == "fwd":
            fns = {p: (lambda f=f: _no_grad(f)) for p, f in fns.items()}
        t = time_providers(fns, device, repeats)
        for p in fns:
            rows.append({"case": f"merge step {name}", "mode": mode, "shape": shapes[name], "provider": p,
                         **t[p].to_dict("ms"), "vs_anchor": ratio(t[ANCHOR], t[p], ANCHOR).to_dict()})
    e2e = QUICK_E2E if quick else E2E
    tome_model, pyra_model, ids = e2e_models(**e2e)
    fns = {"ToMe (exported)": lambda: _no_grad(lambda: tome_model(input_ids=ids)),
           "PYRA (exported)": lambda: _no_grad(lambda: pyra_model(input_ids=ids))}
    t = time_providers(fns, device, repeats)
    r = ratio(t["PYRA (exported)"], t["ToMe (exported)"], "PYRA (exported)")  # PYRA time / ToMe time
    for p in fns:
        rows.append({"case": "end to end", "mode": "inference", "shape": e2e, "provider": p, **t[p].to_dict("ms"),
                     "vs_anchor": ratio(t["ToMe (exported)"], t[p], "ToMe (exported)").to_dict()})
    overhead = {"median": r.value - 1, "p25": r.p25 - 1, "p75": r.p75 - 1,
                "tokens_per_layer": list(pyra_model._tome_state.tokens_per_layer)}
    os.makedirs(out_dir, exist_ok=True)
    tag = device_tag(device) + ("-quick" if quick else "")
    result = {"family": "pyra", "device": tag, "machine": machine(), "runner": runner_note("pyra", quick),
              "anchor": {"merge step": ANCHOR, "end to end": "ToMe (exported)"}, "repeats": repeats,
              "dtype": "float32", "rows": rows, "pyra_overhead_over_tome": overhead}
    path = os.path.join(out_dir, f"pyra-{tag}.json")
    with open(path, "w") as fh:
        json.dump(result, fh, indent=1)
    print(f"{'case':34} {'mode':9} {'provider':38} {'median ms':>10} {'x anchor (p25-p75)':>22}")
    for row in rows:
        v = row["vs_anchor"]
        print(f"{row['case']:34} {row['mode']:9} {row['provider']:38} {row['median_ms']:10.3f} "
              f"{v['ratio']:9.2f}x ({v['ratio_p25']:.2f}-{v['ratio_p75']:.2f})")
    print(f"PYRA end-to-end overhead over ToMe: {overhead['median']:+.1%} (paired p25-p75 {overhead['p25']:+.1%} to "
          f"{overhead['p75']:+.1%}), tokens per layer {overhead['tokens_per_layer']}")
    print(f"ratio = anchor median / provider median; (spread) = p25-p75 of the {repeats} paired per-repeat ratios; "
          f"anchors: merge step '{ANCHOR}', end to end 'ToMe (exported)'; runner: {result['runner']} on {tag}")
    print(f"wrote {path}")
    return result


def _no_grad(fn):
    with torch.no_grad():
        return fn()

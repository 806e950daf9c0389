"""Merge family benchmarks: the eager ToMe algorithm (anchor) against our backends on the same
inputs, and end to end a ViT-B/16-sized Hugging Face model with ToMe r=13.

End to end, four variants of one model run interleaved (each on its own copy of the same weights):

* "HF unpatched": Hugging Face's own ViT layers (reference row only);
* "no merging (leanops r=0)": leanops' ToMe forward with ``r=0``: the same attention/MLP code as the
  ToMe rows, no token merged. The anchor of the speed-ups, so they measure merging and nothing else;
* "ToMe r=13": bipartite matching + size-weighted merge of 13 tokens per layer;
* "ideal r=13": the same forward and the same token count per layer as ToMe, but the r tokens are dropped
  by truncation (``x[:, :n-r]``, ``_ideal=True``): no matching, no averaging. It is the cost of the
  layers alone at ToMe's token counts, the lower bound of ToMe's time; ToMe / ideal - 1 is the merge
  overhead.
"""
from __future__ import annotations

import copy
import json
import os

import torch

from .. import _backend, _library
from ..ops import merge as ops
from ..reference import merge as ref
from .timing import device_tag, error_bars, machine, ratio, runner_note, time_providers, time_until

# (name, B, N, C, metric dim, r): ViT-B/16 images; TempMe clips of 12 frames (ViT-B/32: 12x50, B/16: 12x197)
OP_CASES = [("vit-b16", 64, 197, 768, 64, 16), ("clip-b32-12f", 16, 600, 768, 64, 100),
            ("clip-b16-12f", 4, 2364, 768, 64, 400)]
QUICK_OP_CASES = [("vit-small", 4, 65, 32, 16, 8)]
ANCHOR = "eager_tome (anchor)"
E2E_VARIANTS = ("HF unpatched", "no merging (leanops r=0)", "ToMe r={r}", "ideal r={r}")
E2E_ANCHOR = "no merging (leanops r=0)"


def op_inputs(b, n, c, d, device, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    metric = torch.randn(b, n, d, generator=g).to(device, dtype)
    x = torch.randn(b, n, c, generator=g).to(device, dtype)
    size = torch.ones(b, n, device=device)
    return metric, x, size


def op_providers(device: str) -> dict:
    """Callables (metric, x, size, r) -> (x_out, size_out) for every provider that runs here; the anchor first."""
    providers = {ANCHOR: lambda m, x, s, r: ref.tome_anchor_merge(m, x, s[..., None].to(x.dtype), r)}

    def ours(backend):
        def run(m, x, s, r):  # the count of protected tokens (1: class token) is passed by position
            idx = ops.bipartite_match(m, r, 1, backend=backend)
            return ops.merge_wavg(x, s, *idx, 1, backend=backend, validate=False)
        return run

    if device == "cpu" and _library.compiled_available():
        providers["leanops cpp"] = ours("cpp")
    if device.startswith("cuda"):
        if _library.cuda_compiled():
            providers["leanops cuda"] = ours("cuda")
        if _backend.triton_available():
            providers["leanops triton"] = ours("triton")
    return providers


def bench_ops(device="cpu", dtypes=(torch.float32,), quick=False, repeats=None, progress=None):
    repeats = repeats or (3 if quick else 15)
    rows = []
    for name, b, n, c, d, r in (QUICK_OP_CASES if quick else OP_CASES):
        for dtype in dtypes:
            metric, x, size = op_inputs(b, n, c, d, device, dtype)
            fns = {p: (lambda fn=fn: fn(metric, x, size, r)) for p, fn in op_providers(device).items()}
            timings = time_providers(fns, device, repeats)
            for pname, t in timings.items():
                rows.append({"case": name, "B": b, "N": n, "C": c, "metric_dim": d, "r": r, "dtype": str(dtype)[6:],
                             "provider": pname, **t.to_dict("ms"), **ratio(timings[ANCHOR], t, ANCHOR).to_dict()})
            if progress is not None:
                progress.update(1)
    return rows


def vit_b16(device, dtype, layers=12, hidden=768, heads=12, mlp=3072):
    from transformers import ViTConfig, ViTModel

    cfg = ViTConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=mlp,
                    image_size=224, patch_size=16, attn_implementation="sdpa")
    return ViTModel(cfg, add_pooling_layer=False).to(device, dtype).eval()


def e2e_models(device, dtype, r, quick):
    """The four end-to-end variants (see the module docstring), each a copy of the same weights."""
    from .. import tome

    base = vit_b16(device, dtype, layers=2 if quick else 12, hidden=64 if quick else 768, heads=4 if quick else 12,
                   mlp=128 if quick else 3072)
    hf, no_merge, merged, ideal = (copy.deepcopy(base) for _ in E2E_VARIANTS)
    tome.patch(no_merge, r=0)
    tome.patch(merged, r=r)
    tome.patch(ideal, r=r, _ideal=True)
    return dict(zip((v.format(r=r) for v in E2E_VARIANTS), (hf, no_merge, merged, ideal)))


def bench_end_to_end(device="cpu", dtype=torch.float32, batch=8, r=13, quick=False, target_rel_spread=0.05,
                     max_repeats=60, max_seconds=1200.0):
    """Images/s of the four variants, interleaved; repeats are added until the p25-p75 spread of the
    paired ToMe/anchor and ToMe/ideal ratios is below ``target_rel_spread`` (or the caps are reached)."""
    models = e2e_models(device, dtype, r, quick)
    batch = 2 if quick else batch
    pixels = torch.randn(batch, 3, 224, 224, device=device, dtype=dtype)
    tome_name, ideal_name = f"ToMe r={r}", f"ideal r={r}"

    def forward(model):
        with torch.inference_mode():
            return model(pixel_values=pixels).last_hidden_state

    fns = {name: (lambda m=m: forward(m)) for name, m in models.items()}
    if quick:
        timings = time_providers(fns, device, repeats=3)
    else:
        timings = time_until(fns, [(E2E_ANCHOR, tome_name), (tome_name, ideal_name)], device, target_rel_spread,
                             min_repeats=10, max_repeats=max_repeats, step=5, max_seconds=max_seconds)
    variants = {}
    for name, t in timings.items():
        variants[name] = {**t.to_dict("s"), "images_per_s": batch / t.median,
                          "speedup_vs_no_merging": ratio(timings[E2E_ANCHOR], t, E2E_ANCHOR).to_dict(),
                          "speedup_vs_hf": ratio(timings["HF unpatched"], t, "HF unpatched").to_dict()}
    # ToMe time / ideal time, paired per repeat: 1 + the merge overhead (matching + averaging)
    over = ratio(timings[tome_name], timings[ideal_name], tome_name)
    overhead = {"tome_over_ideal": over.value, "p25": over.p25, "p75": over.p75, "ci95": list(over.ci95),
                "pairs": over.n, "definition": "median ToMe time / median ideal time - 1; spread from per-repeat "
                                              "paired ratios ToMe_i / ideal_i - 1"}
    return {"batch": batch, "r": r, "dtype": str(dtype)[6:], "anchor": E2E_ANCHOR, "repeats": over.n,
            "target_rel_spread": target_rel_spread, "variants": variants, "merge_overhead_vs_ideal": overhead,
            "ideal_definition": "same patched forward and per-layer token counts as ToMe, tokens dropped by "
                                "truncation (no matching, no averaging): the layers' cost alone, ToMe's lower bound"}


def format_e2e(e2e) -> str:
    lines = [f"ViT-B/16 end to end ({e2e['dtype']}, batch {e2e['batch']}, r={e2e['r']}, {e2e['repeats']} interleaved "
             f"repeats)", f"{'variant':26} {'median s':>9} {'p25-p75 s':>15} {'im/s':>7} "
             f"{'x no merging r=0 (spread)':>26} {'x HF unpatched (spread)':>24}"]
    for name, v in e2e["variants"].items():
        a, h = v["speedup_vs_no_merging"], v["speedup_vs_hf"]
        lines.append(f"{name:26} {v['median_s']:9.3f} {v['p25_s']:7.3f}-{v['p75_s']:<7.3f} {v['images_per_s']:7.2f} "
                     f"{a['ratio']:15.2f}x ({a['ratio_p25']:.2f}-{a['ratio_p75']:.2f}) "
                     f"{h['ratio']:13.2f}x ({h['ratio_p25']:.2f}-{h['ratio_p75']:.2f})")
    o = e2e["merge_overhead_vs_ideal"]
    lines.append(f"merge overhead, ToMe vs ideal: {100 * (o['tome_over_ideal'] - 1):+.1f}% (p25-p75 "
                 f"{100 * (o['p25'] - 1):+.1f}%..{100 * (o['p75'] - 1):+.1f}%, 95% CI of the median pair "
                 f"{100 * (o['ci95'][0] - 1):+.1f}%..{100 * (o['ci95'][1] - 1):+.1f}%)")
    return "\n".join(lines)


def format_table(rows) -> str:
    lines = [f"{'case':14} {'dtype':9} {'provider':22} {'median ms':>10} {'p25-p75 ms':>19} {'x anchor (spread)':>20}"]
    for row in rows:
        lines.append(f"{row['case']:14} {row['dtype']:9} {row['provider']:22} {row['median_ms']:10.3f} "
                     f"{row['p25_ms']:9.3f}-{row['p75_ms']:<9.3f} {row['ratio']:9.2f}x "
                     f"({row['ratio_p25']:.2f}-{row['ratio_p75']:.2f})")
    return "\n".join(lines)


def plot(rows, e2e, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    cases = sorted({(r["case"], r["dtype"]) for r in rows}, key=str)
    providers = list(dict.fromkeys(r["provider"] for r in rows))
    width = 0.8 / max(len(providers), 1)
    for i, p in enumerate(providers):
        sel = [next(r for r in rows if (r["case"], r["dtype"]) == cse and r["provider"] == p) for cse in cases]
        vals = [r["ratio"] for r in sel]
        err = error_bars(vals, [r["ratio_p25"] for r in sel], [r["ratio_p75"] for r in sel])
        axes[0].bar([k + i * width for k in range(len(cases))], vals, width, yerr=err, capsize=3, label=p)
    axes[0].set_xticks([k + 0.4 - width / 2 for k in range(len(cases))], [f"{c}\n{d}" for c, d in cases])
    axes[0].axhline(1.0, color="k", lw=0.8)
    axes[0].set_ylabel("median speed-up over eager ToMe (x), bars: p25-p75 of paired repeats")
    axes[0].set_title("bipartite_match + merge_wavg")
    axes[0].legend()
    names = list(e2e["variants"])
    batch = e2e["batch"]
    med = [batch / e2e["variants"][k]["median_s"] for k in names]
    err = error_bars(med, [batch / e2e["variants"][k]["p75_s"] for k in names],
                     [batch / e2e["variants"][k]["p25_s"] for k in names])
    axes[1].bar(names, med, yerr=err, capsize=3, color=["lightgrey", "grey", "tab:blue", "tab:green"])
    axes[1].set_ylabel("images / s (median; bars: p25-p75)")
    axes[1].set_title(f"ViT-B/16 end to end, r={e2e['r']}, batch {batch}, {e2e['repeats']} interleaved repeats")
    axes[1].tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(device=None, quick=False, out_dir="benchmarks/results", repeats=None):
    from tqdm import tqdm

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtypes = (torch.float32,) if device == "cpu" else (torch.float16, torch.bfloat16)
    n_cases = len(QUICK_OP_CASES if quick else OP_CASES) * len(dtypes)
    with tqdm(total=n_cases, desc="bench merge ops", unit="case") as bar:
        rows = bench_ops(device, dtypes, quick, repeats, progress=bar)
    print("bench merge: end to end (interleaved repeats until the ratio spread is < 5%) ...", flush=True)
    e2e = bench_end_to_end(device, dtypes[0], batch=8 if device == "cpu" else 64, quick=quick)
    os.makedirs(out_dir, exist_ok=True)
    tag = device_tag(device) + ("-quick" if quick else "")
    result = {"family": "merge", "device": tag, "machine": machine(), "runner": runner_note("merge", quick),
              "anchor": {"ops": ANCHOR, "end_to_end": E2E_ANCHOR}, "ops": rows, "end_to_end": e2e}
    json_path = os.path.join(out_dir, f"merge-{tag}.json")
    with open(json_path, "w") as fh:
        json.dump(result, fh, indent=1)
    png_path = os.path.join(out_dir, f"merge-{tag}.png")
    plot(rows, e2e, png_path)
    print(format_table(rows))
    print(f"ratio = anchor median / provider median; (spread) = p25-p75 of the paired per-repeat ratios; "
          f"anchor: {ANCHOR} (reference.merge.tome_anchor_merge)")
    print()
    print(format_e2e(e2e))
    print(f"anchor of 'x no merging': {E2E_ANCHOR} (leanops' ToMe forward at r=0); ideal: {e2e['ideal_definition']}")
    print(f"runner: {result['runner']} on {tag}")
    print(f"wrote {json_path} and {png_path}")
    return result

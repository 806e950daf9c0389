"""Merge family benchmarks: the eager ToMe algorithm (anchor) against our backends on the same
inputs, and end to end a ViT-B/16-sized Hugging Face model with r=13 against no merging and the ideal."""
from __future__ import annotations

import json
import os

import torch

from .. import _backend, _library
from ..ops import merge as ops
from ..reference import merge as ref
from .timing import device_tag, machine, median_seconds

# (name, B, N, C, metric dim, r): ViT-B/16 images; TempMe clips of 12 frames (ViT-B/32: 12x50, B/16: 12x197)
OP_CASES = [("vit-b16", 64, 197, 768, 64, 16), ("clip-b32-12f", 16, 600, 768, 64, 100),
            ("clip-b16-12f", 4, 2364, 768, 64, 400)]
QUICK_OP_CASES = [("vit-small", 4, 65, 32, 16, 8)]


def op_inputs(b, n, c, d, device, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    metric = torch.randn(b, n, d, generator=g).to(device, dtype)
    x = torch.randn(b, n, c, generator=g).to(device, dtype)
    size = torch.ones(b, n, device=device)
    return metric, x, size


def op_providers(device: str) -> dict:
    """Callables (metric, x, size, r) -> (x_out, size_out) for every provider that runs here."""
    providers = {"eager_tome (anchor)": lambda m, x, s, r: ref.tome_anchor_merge(m, x, s[..., None].to(x.dtype), r)}

    def ours(backend):
        def run(m, x, s, r):
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


def bench_ops(device="cpu", dtypes=(torch.float32,), quick=False, progress=None):
    rows = []
    for name, b, n, c, d, r in (QUICK_OP_CASES if quick else OP_CASES):
        for dtype in dtypes:
            metric, x, size = op_inputs(b, n, c, d, device, dtype)
            times = {}
            for pname, fn in op_providers(device).items():
                times[pname] = median_seconds(lambda: fn(metric, x, size, r), device, repeats=1 if quick else 7)
                if progress is not None:
                    progress.update(1)
            anchor = times["eager_tome (anchor)"]
            for pname, t in times.items():
                rows.append({"case": name, "B": b, "N": n, "C": c, "metric_dim": d, "r": r, "dtype": str(dtype)[6:],
                             "provider": pname, "ms": t * 1e3, "speedup_vs_anchor": anchor / t})
    return rows


def vit_b16(device, dtype, layers=12, hidden=768, heads=12, mlp=3072):
    from transformers import ViTConfig, ViTModel

    cfg = ViTConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=mlp,
                    image_size=224, patch_size=16, attn_implementation="sdpa")
    return ViTModel(cfg, add_pooling_layer=False).to(device, dtype).eval()


def bench_end_to_end(device="cpu", dtype=torch.float32, batch=8, r=13, quick=False, progress=None):
    """Images/s of the same model unmerged, ToMe-merged (r per layer) and ideal (same token counts, no merge cost)."""
    from .. import tome

    model = vit_b16(device, dtype, layers=2 if quick else 12, hidden=64 if quick else 768, heads=4 if quick else 12,
                    mlp=128 if quick else 3072)
    batch = 2 if quick else batch
    pixels = torch.randn(batch, 3, 224, 224, device=device, dtype=dtype)
    results = {}
    for variant in ("no merging", "tome", "ideal"):
        tome.unpatch(model)
        if variant != "no merging":
            tome.patch(model, r=r, _ideal=variant == "ideal")
        with torch.inference_mode():
            t = median_seconds(lambda: model(pixel_values=pixels), device, repeats=1 if quick else 3)
        results[variant] = {"seconds": t, "images_per_s": batch / t}
        if progress is not None:
            progress.update(1)
    tome.unpatch(model)
    t_tome, t_ideal, t_base = (results[k]["seconds"] for k in ("tome", "ideal", "no merging"))
    return {"batch": batch, "r": r, "dtype": str(dtype)[6:], "variants": results, "speedup_tome": t_base / t_tome,
            "speedup_ideal": t_base / t_ideal, "merge_overhead_fraction": (t_tome - t_ideal) / t_tome}


def format_table(rows) -> str:
    lines = [f"{'case':14} {'dtype':9} {'provider':22} {'ms':>10} {'x anchor':>9}"]
    for row in rows:
        lines.append(f"{row['case']:14} {row['dtype']:9} {row['provider']:22} {row['ms']:10.3f} "
                     f"{row['speedup_vs_anchor']:9.2f}")
    return "\n".join(lines)


def plot(rows, e2e, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    cases = sorted({(r["case"], r["dtype"]) for r in rows}, key=str)
    providers = sorted({r["provider"] for r in rows})
    width = 0.8 / max(len(providers), 1)
    for i, p in enumerate(providers):
        vals = [next((r["speedup_vs_anchor"] for r in rows if (r["case"], r["dtype"]) == cse and r["provider"] == p), 0)
                for cse in cases]
        axes[0].bar([k + i * width for k in range(len(cases))], vals, width, label=p)
    axes[0].set_xticks([k + 0.4 - width / 2 for k in range(len(cases))], [f"{c}\n{d}" for c, d in cases])
    axes[0].axhline(1.0, color="k", lw=0.8)
    axes[0].set_ylabel("speed-up over eager ToMe (x)")
    axes[0].set_title("bipartite_match + merge_wavg")
    axes[0].legend()
    names = list(e2e["variants"])
    axes[1].bar(names, [e2e["variants"][k]["images_per_s"] for k in names], color=["grey", "tab:blue", "tab:green"])
    axes[1].set_ylabel("images / s")
    axes[1].set_title(f"ViT-B/16 end to end, r={e2e['r']}, batch {e2e['batch']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(device=None, quick=False, out_dir="benchmarks/results"):
    from tqdm import tqdm

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtypes = (torch.float32,) if device == "cpu" else (torch.float16, torch.bfloat16)
    n_cases = len(QUICK_OP_CASES if quick else OP_CASES) * len(dtypes) * len(op_providers(device)) + 3
    with tqdm(total=n_cases, desc="bench merge", unit="case") as bar:
        rows = bench_ops(device, dtypes, quick, bar)
        e2e = bench_end_to_end(device, dtypes[0], batch=8 if device == "cpu" else 64, quick=quick, progress=bar)
    os.makedirs(out_dir, exist_ok=True)
    tag = device_tag(device) + ("-quick" if quick else "")
    result = {"family": "merge", "device": tag, "machine": machine(), "ops": rows, "end_to_end": e2e}
    json_path = os.path.join(out_dir, f"merge-{tag}.json")
    with open(json_path, "w") as fh:
        json.dump(result, fh, indent=1)
    png_path = os.path.join(out_dir, f"merge-{tag}.png")
    plot(rows, e2e, png_path)
    print(format_table(rows))
    v = e2e["variants"]
    print(f"\nend to end ViT-B/16 ({e2e['dtype']}, batch {e2e['batch']}, r={e2e['r']}): "
          f"no merging {v['no merging']['images_per_s']:.2f} im/s, ToMe {v['tome']['images_per_s']:.2f} im/s "
          f"({e2e['speedup_tome']:.2f}x), ideal {v['ideal']['images_per_s']:.2f} im/s ({e2e['speedup_ideal']:.2f}x); "
          f"merge overhead {100 * e2e['merge_overhead_fraction']:.1f}% of the ToMe model's time")
    print(f"wrote {json_path} and {png_path}")
    return result

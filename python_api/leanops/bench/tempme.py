"""TempMe benchmarks: video encoders at ViT-B/32 and ViT-B/16 geometry (random weights, 12 frames, 224 px),
GFLOPs (FlopCounterMode) and videos/s, interleaved in one process, and the share of the merge ops.

Rows (four copies of the same weights):
- "unmerged (HF image path)": every frame through HF's own CLIPVisionModel forward (SDPA), class tokens
  after the post-layernorm, mean over frames: what a skilled user writes (CLIP4Clip meanP); the anchor.
- "per-frame ToMe (same budget)": ``leanops.tome`` on every frame, tokens per frame after every layer =
  TempMe's tokens per video / frames (``tempme.baselines.matched_tome_schedule``).
- "TempMe": ``leanops.tempme`` with the default config.
- "TempMe ideal (no merge cost)": TempMe's forward and per-layer token counts with merges replaced by
  truncation (``state.ideal``): the layers' cost alone, TempMe's lower bound.
ViT-B/16 is timed too (12 unmerged frames are ~420 GFLOPs per video: on a CPU, one video per batch and minutes
per run).
Merge ops: every ``bipartite_match`` + ``merge_wavg`` call of one TempMe forward (recorded shapes and
inputs), fused leanops ops against the same merges in eager PyTorch (``leanops.reference.merge``, float32).
"""
from __future__ import annotations

import copy
import json
import os

import torch

from .timing import device_tag, error_bars, machine, ratio, runner_note, time_providers

ANCHOR = "unmerged (HF image path)"
TOME, TEMPME, IDEAL = "per-frame ToMe (same budget)", "TempMe", "TempMe ideal (no merge cost)"
GEOMETRIES = {"ViT-B/32": dict(patch_size=32, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                               num_attention_heads=12, image_size=224),
              "ViT-B/16": dict(patch_size=16, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                               num_attention_heads=12, image_size=224)}
QUICK_GEOMETRY = {"tiny B/32-like (quick)": dict(patch_size=32, hidden_size=64, intermediate_size=128,
                                                 num_hidden_layers=12, num_attention_heads=2, image_size=224)}
FRAMES = 12


def build(geometry: dict, device="cpu", dtype=torch.float32, seed=0) -> dict:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from .. import tempme
    from ..tempme.baselines import patch_tome_matched

    torch.manual_seed(seed)
    base = CLIPVisionModel(CLIPVisionConfig(**geometry, attn_implementation="sdpa")).to(device, dtype).eval()
    tm, tm_ideal, per_frame = copy.deepcopy(base), copy.deepcopy(base), copy.deepcopy(base)
    tempme.patch(tm, FRAMES)
    tempme.patch(tm_ideal, FRAMES)
    tm_ideal._tempme_state.ideal = True
    tokens_per_frame = (geometry["image_size"] // geometry["patch_size"]) ** 2 + 1
    trace = tempme.planned_trace(tempme.TempMeConfig(), geometry["num_hidden_layers"], FRAMES, tokens_per_frame)
    schedule = patch_tome_matched(per_frame, trace, FRAMES)
    return {"models": {ANCHOR: base, TOME: per_frame, TEMPME: tm, IDEAL: tm_ideal}, "trace": trace,
            "tome_schedule": schedule}


def _encoders():
    from ..tempme import encode_video
    from ..tempme.baselines import encode_frames
    return {ANCHOR: encode_frames, TOME: encode_frames, TEMPME: encode_video, IDEAL: encode_video}


def record_merges(model, video) -> list:
    """(metric, x, size, r, num_protected) of every merge in one TempMe forward."""
    from ..tempme import encode_video
    from ..tome import layers as tome_layers
    real, calls = tome_layers.merge_ops, []

    class Recorder:  # forwards to the real ops, keeping the inputs of each matching + averaging pair
        def __getattr__(self, name):
            return getattr(real, name)

        def bipartite_match(self, metric, r, p):
            calls.append([metric.clone(), None, None, r, p])
            return real.bipartite_match(metric, r, p)

        def merge_wavg(self, x, size, src, dst, unm, p, validate=True):
            calls[-1][1:3] = [x.clone(), size.clone()]
            return real.merge_wavg(x, size, src, dst, unm, p, validate=validate)

    tome_layers.merge_ops = Recorder()
    try:
        with torch.inference_mode():
            encode_video(model, video)
    finally:
        tome_layers.merge_ops = real
    return calls


def bench_merge_ops(model, video, device, repeats) -> dict:
    from ..ops import merge as ops
    from ..reference import merge as ref
    calls = record_merges(model, video)

    def fused():
        for metric, x, size, r, p in calls:
            src, dst, unm = ops.bipartite_match(metric, r, p)
            ops.merge_wavg(x, size, src, dst, unm, p, validate=False)

    def eager():
        for metric, x, size, r, p in calls:
            src, dst, unm = ref.bipartite_match(metric, r, p)
            ref.merge_wavg(x, size, src, dst, unm, p)

    with torch.inference_mode():
        t = time_providers({"eager PyTorch merges": eager, "leanops fused merges": fused}, device, repeats)
    return {"merges_per_forward": len(calls), "shapes": [[list(x.shape), r, p] for _, x, _, r, p in calls],
            "timings": {k: v.to_dict("ms") for k, v in t.items()},
            "fused_vs_eager": ratio(t["eager PyTorch merges"], t["leanops fused merges"], "eager PyTorch merges").to_dict()}


def bench_geometry(name, geometry, device, batch, repeats) -> dict:
    """GFLOPs per video and videos/s (interleaved) of every row, and the merge-op share."""
    from ..tempme.flops import count_gflops
    built = build(geometry, device)
    models, encoders = built["models"], _encoders()
    size, grid = geometry["image_size"], (geometry["image_size"] // geometry["patch_size"]) ** 2 + 1
    video = torch.randn(batch, FRAMES, 3, size, size, device=device)
    gflops = {k: count_gflops(encoders[k], m, video[:1]) for k, m in models.items()}
    final = {ANCHOR: FRAMES * grid, TOME: FRAMES * (grid - sum(built["tome_schedule"])), TEMPME: built["trace"][-1],
             IDEAL: built["trace"][-1]}
    rows = {k: {"gflops_per_video": gflops[k], "final_tokens_per_video": final[k]} for k in models}
    out = {"geometry": name, "config": geometry, "frames": FRAMES, "batch": batch, "repeats": repeats,
           "tempme_trace": built["trace"], "tome_schedule": built["tome_schedule"], "rows": rows}

    def forward(k):
        with torch.inference_mode():
            return encoders[k](models[k], video)

    timings = time_providers({k: (lambda k=k: forward(k)) for k in models}, device, repeats)
    for k, t in timings.items():
        rows[k].update({**t.to_dict("s"), "videos_per_s": batch / t.median,
                        "speedup": ratio(timings[ANCHOR], t, ANCHOR).to_dict()})
    merges = bench_merge_ops(models[TEMPME], video, device, repeats)
    out.update({"tempme_over_ideal": ratio(timings[TEMPME], timings[IDEAL], TEMPME).to_dict(), "merge_ops": merges,
                "merge_share_of_tempme_time": merges["timings"]["leanops fused merges"]["median_ms"] / 1e3
                / timings[TEMPME].median})
    return out


def format_result(res) -> str:
    lines = [f"{res['geometry']}: {res['frames']} frames, batch {res['batch']} videos, {res['repeats']} interleaved "
             f"repeats; TempMe trace {res['tempme_trace'][0]} -> {res['tempme_trace'][-1]} tokens per video",
             f"{'encoder':30} {'tokens':>6} {'GFLOPs':>8} {'median s':>9} {'videos/s':>9} {'x unmerged (p25-p75)':>22}"]
    for k, row in res["rows"].items():
        s = row["speedup"]
        lines.append(f"{k:30} {row['final_tokens_per_video']:6d} {row['gflops_per_video']:8.1f} "
                     f"{row['median_s']:9.4f} {row['videos_per_s']:9.2f} {s['ratio']:8.2f}x "
                     f"({s['ratio_p25']:.2f}-{s['ratio_p75']:.2f})")
    m = res["merge_ops"]
    f = m["fused_vs_eager"]
    lines.append(f"merge ops in one TempMe forward: {m['merges_per_forward']} merges, fused "
                 f"{m['timings']['leanops fused merges']['median_ms']:.2f} ms vs eager "
                 f"{m['timings']['eager PyTorch merges']['median_ms']:.2f} ms: {f['ratio']:.2f}x "
                 f"({f['ratio_p25']:.2f}-{f['ratio_p75']:.2f}); fused merges = "
                 f"{100 * res['merge_share_of_tempme_time']:.1f}% of TempMe's time; TempMe / ideal = "
                 f"{res['tempme_over_ideal']['ratio']:.3f}")
    return "\n".join(lines)


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.5), squeeze=False)
    for ax, res in zip(axes[0], results):
        names = list(res["rows"])
        med = [res["rows"][k]["videos_per_s"] for k in names]
        lo = [res["batch"] / res["rows"][k]["p75_s"] for k in names]
        hi = [res["batch"] / res["rows"][k]["p25_s"] for k in names]
        ax.bar(range(len(names)), med, yerr=error_bars(med, lo, hi))
        ax.set_xticks(range(len(names)), [n.replace(" (", "\n(") for n in names], fontsize=7)
        ax.set_ylabel("videos/s (median, p25-p75)")
        ax.set_title(res["geometry"])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(device=None, quick=False, out_dir="benchmarks/results", repeats=None):
    from tqdm import tqdm
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    geometries = QUICK_GEOMETRY if quick else GEOMETRIES
    results = []
    for name, geometry in tqdm(list(geometries.items()), desc="bench tempme", unit="geometry"):
        batch = 1 if quick or (device == "cpu" and geometry["patch_size"] == 16) else (2 if device == "cpu" else 16)
        reps = repeats or (3 if quick else (5 if device == "cpu" else 20))
        results.append(bench_geometry(name, geometry, device, batch, reps))
    os.makedirs(out_dir, exist_ok=True)
    tag = device_tag(device) + ("-quick" if quick else "")
    out = {"family": "tempme", "device": tag, "machine": machine(), "runner": runner_note("tempme", quick),
           "anchor": ANCHOR, "results": results}
    json_path, png_path = os.path.join(out_dir, f"tempme-{tag}.json"), os.path.join(out_dir, f"tempme-{tag}.png")
    with open(json_path, "w") as fh:
        json.dump(out, fh, indent=1)
    plot(results, png_path)
    for res in results:
        print(format_result(res))
        print()
    print(f"ratio = anchor median / provider median, (p25-p75) of the paired per-repeat ratios; anchor: {ANCHOR} "
          f"(HF CLIPVisionModel forward per frame, float32, SDPA, mean of class tokens); GFLOPs by FlopCounterMode "
          f"(multiply-add = 2)")
    print(f"runner: {out['runner']} on {tag}")
    print(f"wrote {json_path} and {png_path}")
    return out

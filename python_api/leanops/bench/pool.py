"""Pool family benchmarks: ``jagged_attention_pool`` against DIN-style padded eager pooling and eager
jagged pooling in plain PyTorch (segment ops), forward and forward+backward, time and peak memory.

Shapes as the issue asks: B=1024 rows, H=4 heads, D=32, long-tailed lengths (log-normal, mean about 50,
clipped to 1000). Peak memory is measured per provider in a fresh process holding only that provider's
inputs (CPU: the resident-set high-water mark, reset through /proc/self/clear_refs just before the call,
minus the resident set then; GPU: torch.cuda.max_memory_allocated above what was allocated).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from .. import _backend, _library
from ..ops import pool as ops
from ..reference import pool as ref
from .timing import device_tag, machine, ratio, runner_note, time_providers

FULL = dict(b=1024, h=4, d=32, mean_len=50, max_len=1000)
PADDED, JAGGED = "padded eager (DIN-style)", "eager jagged (segment ops)"  # the two anchors
QUICK = dict(b=64, h=2, d=16, mean_len=10, max_len=60)


def make_inputs(b, h, d, mean_len, max_len, device="cpu", dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    sigma = 1.0
    mu = torch.log(torch.tensor(float(mean_len))) - sigma**2 / 2
    lengths = torch.exp(mu + sigma * torch.randn(b, generator=g)).round().clamp(0, max_len).long()
    offsets = ops.lengths_to_offsets(lengths)
    t = int(offsets[-1])
    rnd = lambda *s: torch.randn(*s, generator=g).to(device, dtype)  # noqa: E731
    return dict(q=rnd(b, h, d), k=rnd(t, h, d), v=rnd(t, h, d), offsets=offsets.to(device), lengths=lengths.to(device),
                prior_logit=rnd(b, h), prior_value=rnd(b, h, d))


def pad(x, lengths):
    """Jagged [T, ...] -> padded [B, max length, ...] (the layout DIN-style code keeps)."""
    length = int(lengths.max()) if lengths.numel() else 0
    mask = torch.arange(length, device=x.device)[None, :] < lengths[:, None]
    out = x.new_zeros(lengths.shape[0], length, *x.shape[1:])
    out[mask] = x
    return out


def providers(device: str) -> dict:
    """name -> fn(inputs) returning (out, lse); padded providers receive padded k/v prepared outside."""
    d = {
        PADDED: lambda a: ref.padded_attention_pool(a["q"], a["k_pad"], a["v_pad"], a["lengths"], a["scale"], None,
                                                    None, a["prior_logit"], a["prior_value"]),
        JAGGED: lambda a: ref.segment_attention_pool(a["q"], a["k"], a["v"], a["offsets"], a["scale"], None, None,
                                                    a["prior_logit"], a["prior_value"]),
    }

    def ours(backend):
        return lambda a: ops.jagged_attention_pool(a["q"], a["k"], a["v"], a["offsets"], a["scale"], None, None,
                                                   a["prior_logit"], a["prior_value"], backend=backend, validate=False)

    if device == "cpu" and _library.compiled_available():
        d["leanops cpp"] = ours("cpp")
    if device.startswith("cuda"):
        if _library.cuda_compiled():
            d["leanops cuda"] = ours("cuda")
        if _backend.triton_available():
            d["leanops triton"] = ours("triton")
    return d


def prepare(shape, device, dtype, grad: bool, padded: bool = True):
    a = make_inputs(**shape, device=device, dtype=dtype)
    a["scale"] = shape["d"] ** -0.5
    if padded:
        a["k_pad"], a["v_pad"] = pad(a["k"], a["lengths"]), pad(a["v"], a["lengths"])
        if grad:  # the padded provider differentiates its padded inputs only
            a["k"], a["v"] = a["k"].detach(), a["v"].detach()
    if grad:
        for key in ("q", "k", "v", "k_pad", "v_pad", "prior_logit", "prior_value"):
            if key in a:
                a[key].requires_grad_()
    return a


def step(fn, a, backward: bool):
    out, lse = fn(a)
    if backward:
        out.sum().backward()
    return out


def _peak_in_child(provider, mode, quick, device, dtype_name):
    """Runs in a fresh process: peak extra memory of one call (bytes), printed as JSON."""
    import gc

    dtype = getattr(torch, dtype_name)
    a = prepare(QUICK if quick else FULL, device, dtype, grad=mode == "fwd+bwd", padded=provider.startswith("padded"))
    fn = providers(device)[provider]
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step(fn, a, mode == "fwd+bwd")
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        def status(field):
            with open("/proc/self/status") as fh:
                return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(field))

        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset the high-water mark to the current resident set
        base = status("VmRSS:")
        step(fn, a, mode == "fwd+bwd")
        peak = status("VmHWM:") - base
    print(json.dumps({"peak_bytes": peak}))


def peak_memory(provider, mode, quick, device, dtype) -> int:
    code = (f"from leanops.bench.pool import _peak_in_child; "
            f"_peak_in_child({provider!r}, {mode!r}, {quick}, {device!r}, {str(dtype)[6:]!r})")
    env = {**os.environ, "LEANOPS_QUIET": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=1200)
    if out.returncode != 0:
        raise RuntimeError(f"peak-memory child failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_bytes"]


def run(device=None, quick=False, out_dir="benchmarks/results", memory=True, repeats=None):
    from tqdm import tqdm

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float32 if device == "cpu" else torch.float16
    shape = QUICK if quick else FULL
    repeats = repeats or (3 if quick else 11)
    names = list(providers(device))
    rows = []
    for mode in tqdm(("fwd", "fwd+bwd"), desc="bench pool", unit="mode"):
        a = prepare(shape, device, dtype, grad=mode == "fwd+bwd")
        fns = {name: (lambda fn=fn: step(fn, a, mode == "fwd+bwd")) for name, fn in providers(device).items()}
        timings = time_providers(fns, device, repeats)
        for name in names:
            t = timings[name]
            row = {"mode": mode, "provider": name, **t.to_dict("ms"),
                   "vs_padded": ratio(timings[PADDED], t, PADDED).to_dict(),
                   "vs_jagged_eager": ratio(timings[JAGGED], t, JAGGED).to_dict()}
            if memory:
                row["peak_extra_MiB"] = peak_memory(name, mode, quick, device, dtype) / 2**20
            rows.append(row)
    a = prepare(shape, device, dtype, grad=False)
    layout = {"B": shape["b"], "H": shape["h"], "D": shape["d"], "T (behaviours)": int(a["offsets"][-1]),
              "max length": int(a["lengths"].max()), "mean length": float(a["lengths"].float().mean()),
              "jagged k+v MiB": (a["k"].numel() + a["v"].numel()) * a["k"].element_size() / 2**20,
              "padded k+v MiB": (a["k_pad"].numel() + a["v_pad"].numel()) * a["k"].element_size() / 2**20}
    os.makedirs(out_dir, exist_ok=True)
    tag = device_tag(device) + ("-quick" if quick else "")
    result = {"family": "pool", "device": tag, "machine": machine(), "runner": runner_note("pool", quick),
              "anchor": [PADDED, JAGGED], "repeats": repeats, "dtype": str(dtype)[6:], "layout": layout, "rows": rows}
    path = os.path.join(out_dir, f"pool-{tag}.json")
    with open(path, "w") as fh:
        json.dump(result, fh, indent=1)
    print(json.dumps(layout))
    print(f"{'mode':8} {'provider':28} {'median ms':>10} {'p25-p75 ms':>19} {'x padded (spread)':>22} "
          f"{'x jagged eager (spread)':>24} {'peak MiB':>9}")
    for r in rows:
        p, j = r["vs_padded"], r["vs_jagged_eager"]
        print(f"{r['mode']:8} {r['provider']:28} {r['median_ms']:10.2f} {r['p25_ms']:9.2f}-{r['p75_ms']:<9.2f} "
              f"{p['ratio']:9.2f}x ({p['ratio_p25']:.2f}-{p['ratio_p75']:.2f}) "
              f"{j['ratio']:10.2f}x ({j['ratio_p25']:.2f}-{j['ratio_p75']:.2f}) {r.get('peak_extra_MiB', float('nan')):9.1f}")
    print(f"ratio = anchor median / provider median; (spread) = p25-p75 of the {repeats} paired per-repeat ratios; "
          f"anchors: {PADDED}, {JAGGED}; runner: {result['runner']} on {tag}")
    print(f"wrote {path}")
    return result

"""Verify family benchmarks: fused verification against the eager PyTorch equivalent (argmax / softmax
over every [B, S+1, V] position, then the accept logic), at B=16, S=8, V=32000 and V=128000.
The Minions engine benchmark (anchor: Hugging Face assisted generation) is ``bench/minions.py``."""
from __future__ import annotations

import json
import os

import torch

from .. import _backend, _library
from ..ops import verify as ops
from ..reference import verify as ref
from .timing import device_tag, machine, median_seconds

CASES = [(16, 8, 32000), (16, 8, 128000)]
QUICK_CASES = [(4, 4, 1000)]


def inputs(b, s, v, device="cpu", dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    cand = torch.randint(0, v, (b, s), generator=g)
    logits = torch.randn(b, s + 1, v, generator=g)
    accept = torch.randint(0, s + 1, (b,), generator=g)  # realistic: the target agrees with a prefix
    for i in range(b):
        logits[i, torch.arange(int(accept[i])), cand[i, : int(accept[i])]] = 10.0
    q = torch.softmax(torch.randn(b, s, v, generator=g), -1)
    u = torch.rand(b, s + 1, generator=g)
    lens = torch.full((b,), s)
    return [t.to(device) for t in (cand, lens, logits.to(dtype), q, u)]


def eager_sampling(cand, lens, q, logits, temperature, u):
    """The plain PyTorch way: softmax over every position, then the same accept/resample rule."""
    return ref.verify_sampling(cand, lens, q, logits.float(), temperature, u)


def providers(device):
    d = {"greedy": {"eager": lambda a: ref.verify_greedy(a[0], a[1], a[2])},
         "sampling": {"eager": lambda a: eager_sampling(a[0], a[1], a[3], a[2], 1.0, a[4])}}

    def ours(kind, backend):
        if kind == "greedy":
            return lambda a: ops.verify_greedy(a[0], a[1], a[2], backend=backend, validate=False)
        return lambda a: ops.verify_sampling(a[0], a[1], a[3], a[2], 1.0, uniforms=a[4], backend=backend,
                                             validate=False)

    for kind in d:
        if device == "cpu" and _library.compiled_available():
            d[kind]["leanops cpp"] = ours(kind, "cpp")
        if device.startswith("cuda"):
            if _library.cuda_compiled():
                d[kind]["leanops cuda"] = ours(kind, "cuda")
            if _backend.triton_available():
                d[kind]["leanops triton"] = ours(kind, "triton")
    return d


def run(device=None, quick=False, out_dir="benchmarks/results"):
    from tqdm import tqdm

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cases = QUICK_CASES if quick else CASES
    provs = providers(device)
    rows = []
    with tqdm(total=len(cases) * sum(len(p) for p in provs.values()), desc="bench verify", unit="case") as bar:
        for b, s, v in cases:
            a = inputs(b, s, v, device)
            for kind, fns in provs.items():
                times = {}
                for name, fn in fns.items():
                    times[name] = median_seconds(lambda: fn(a), device, repeats=1 if quick else 9)
                    bar.update(1)
                for name, t in times.items():
                    rows.append({"op": kind, "B": b, "S": s, "V": v, "provider": name, "ms": t * 1e3,
                                 "speedup_vs_eager": times["eager"] / t})
    os.makedirs(out_dir, exist_ok=True)
    tag = device_tag(device) + ("-quick" if quick else "")
    path = os.path.join(out_dir, f"verify-{tag}.json")
    with open(path, "w") as fh:
        json.dump({"family": "verify", "device": tag, "machine": machine(), "rows": rows}, fh, indent=1)
    print(f"{'op':9} {'B':>3} {'S':>3} {'V':>7} {'provider':14} {'ms':>9} {'x eager':>8}")
    for r in rows:
        print(f"{r['op']:9} {r['B']:3d} {r['S']:3d} {r['V']:7d} {r['provider']:14} {r['ms']:9.3f} "
              f"{r['speedup_vs_eager']:8.2f}")
    print(f"wrote {path}")
    return rows

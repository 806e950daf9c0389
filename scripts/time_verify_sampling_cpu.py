"""Time the C++ CPU verify_sampling kernel before and after draft_probs stopped being copied to float64.

Not a test and not a benchmark suite: a one-off measurement for issue 9. The old kernel is built from git
(``--old-rev``, default the commit before the change) into a private op namespace, so both run in this one
process on the same inputs, interleaved repeat by repeat. Prints the median and the spread per call.

    .venv/bin/python scripts/time_verify_sampling_cpu.py [--repeats 15] [--calls 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time

import torch
import torch.utils.cpp_extension as cpp

import leanops
from leanops.bench.verify import inputs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA = ("verify_sampling(Tensor candidate, Tensor candidate_len, Tensor draft_probs, Tensor target_logits, "
          "float temperature, Tensor uniforms) -> (Tensor accepted, Tensor next_token)")


def build_old(rev: str):
    """The verify CPU kernel at ``rev``, registered as ``torch.ops.leanops_old.verify_sampling``."""
    src = tempfile.mkdtemp(prefix="leanops_old_verify_")
    for name in ("verify_cpu.cpp", "verify_checks.h"):
        text = subprocess.check_output(["git", "-C", ROOT, "show", f"{rev}:csrc/verify/{name}"], text=True)
        text = text.replace("namespace leanops::verify", "namespace leanops_old::verify")
        if name == "verify_cpu.cpp":
            text = text[: text.index("TORCH_LIBRARY_IMPL")]
            text += f'TORCH_LIBRARY(leanops_old, lib) {{ lib.def("{SCHEMA}", &verify_sampling_cpu); }}\n' \
                    "}  // namespace leanops_old::verify\n"
        with open(os.path.join(src, name), "w") as fh:
            fh.write(text)
    cpp.load(name="leanops_old_verify", sources=[os.path.join(src, "verify_cpu.cpp")], is_python_module=False,
             extra_cflags=["-O3", "-fopenmp", "-std=c++17"], extra_ldflags=["-fopenmp"], verbose=False)
    return torch.ops.leanops_old.verify_sampling


def per_call_seconds(fn, args, calls):
    t0 = time.perf_counter()
    for _ in range(calls):
        fn(*args)
    return (time.perf_counter() - t0) / calls


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--old-rev", default="89ab054")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--shape", type=int, nargs=3, default=(16, 8, 32000), metavar=("B", "S", "V"))
    a = ap.parse_args()
    old = build_old(a.old_rev)
    new = torch.ops.leanops.verify_sampling
    b, s, v = a.shape
    cand, lens, logits, q, u = inputs(b, s, v)
    args = (cand, lens, q, logits, 1.0, u)
    want = old(*args)
    got = new(*args)
    assert all(torch.equal(x, y) for x, y in zip(want, got)), "old and new kernels disagree"
    print(f"B={b} S={s} V={v}, draft_probs {q.dtype} ({q.numel() * 8 / 1e6:.0f} MB as float64), "
          f"accepted {want[0].tolist()}, torch threads {torch.get_num_threads()}, leanops {leanops.__version__}")
    for fn in (old, new):  # warm-up
        per_call_seconds(fn, args, a.calls)
    times = {"old": [], "new": []}
    for _ in range(a.repeats):  # interleaved, so load from other processes hits both alike
        times["old"].append(per_call_seconds(old, args, a.calls))
        times["new"].append(per_call_seconds(new, args, a.calls))
    ratios = [o / n for o, n in zip(times["old"], times["new"])]
    for name, ts in times.items():
        ms = sorted(t * 1e3 for t in ts)
        q1, q3 = statistics.quantiles(ms, n=4)[0], statistics.quantiles(ms, n=4)[2]
        print(f"{name}: median {statistics.median(ms):.3f} ms/call, IQR {q1:.3f}-{q3:.3f}, "
              f"min-max {ms[0]:.3f}-{ms[-1]:.3f} ({a.repeats} repeats x {a.calls} calls)")
    rq = statistics.quantiles(ratios, n=4)
    print(f"old/new per repeat: median {statistics.median(ratios):.2f}x, IQR {rq[0]:.2f}-{rq[2]:.2f}, "
          f"min-max {min(ratios):.2f}-{max(ratios):.2f}")


if __name__ == "__main__":
    main()

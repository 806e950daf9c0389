"""Verify family benchmarks: the fused verification ops against the eager float32 PyTorch code a user
writes for speculative decoding (as in Hugging Face transformers' assisted generation and vLLM's rejection
sampler: argmax / softmax over every [B, S+1, V] position, then the accept logic), at B=16 and 64,
S=8, V=32000 and 128000. The anchors are plain functions here (``eager_verify_greedy``,
``eager_verify_sampling``), not the float64 specification in ``leanops.reference``; tests/test_bench_anchors.py
checks they take the specification's decisions.
The Minions engine benchmark (anchor: Hugging Face assisted generation) is ``bench/minions.py``."""
from __future__ import annotations

import json
import os

import torch

from .. import _backend, _library
from ..ops import verify as ops
from .timing import device_tag, machine, ratio, runner_note, time_providers

CASES = [(16, 8, 32000), (16, 8, 128000), (64, 8, 32000), (64, 8, 128000)]
QUICK_CASES = [(4, 4, 1000)]
ANCHOR = "eager float32 (HF/vLLM style)"


def eager_verify_greedy(candidate, candidate_len, target_logits):
    """Greedy verification as a user writes it: argmax at every position, count the leading matches."""
    s = candidate.shape[1]
    target = target_logits.argmax(dim=-1)  # [B, S+1]
    in_draft = torch.arange(s, device=candidate.device)[None, :] < candidate_len[:, None]
    mismatch = (candidate != target[:, :s]) | ~in_draft
    accepted = (mismatch.cumsum(dim=1) == 0).sum(dim=1)  # matches before the first mismatch
    next_token = target.gather(1, accepted[:, None]).squeeze(1)  # correction, or the bonus token
    return accepted, next_token


def eager_verify_sampling(candidate, candidate_len, draft_probs, target_logits, temperature, uniforms):
    """Speculative (rejection) sampling in eager float32, the way HF transformers and vLLM write it.

    p = softmax(logits / T) over all [B, S+1, V]; accept draft token x_i if u_i <= p(x_i) / q(x_i); at the
    first rejection draw from norm(max(0, p - q)) there, after a full accept draw the bonus token from p at
    position len. The draws use the given uniform ``uniforms[:, S]`` by inverse CDF (instead of
    ``torch.multinomial``), so the decisions can be compared with leanops' for the same randomness.
    """
    bsz, s = candidate.shape
    rows = torch.arange(bsz, device=candidate.device)
    p = torch.softmax(target_logits.float() / temperature, dim=-1)  # [B, S+1, V]
    q = draft_probs.float()
    p_x = p[:, :s].gather(2, candidate[..., None]).squeeze(-1)
    q_x = q.gather(2, candidate[..., None]).squeeze(-1)
    in_draft = torch.arange(s, device=candidate.device)[None, :] < candidate_len[:, None]
    rejected_at = (uniforms[:, :s] > p_x / q_x) | ~in_draft
    accepted = (rejected_at.cumsum(dim=1) == 0).sum(dim=1)
    p_next = p[rows, accepted]  # [B, V]
    if s > 0:
        q_next = q[rows, accepted.clamp_max(s - 1)]
        rejected = (accepted < candidate_len)[:, None]
        dist = torch.where(rejected, (p_next - q_next).clamp_min(0), p_next)
    else:
        dist = p_next
    total = dist.sum(dim=-1, keepdim=True)
    dist = torch.where(total > 0, dist / total, p_next)  # p == q leaves nothing to correct: draw from p
    cdf = dist.cumsum(dim=-1)
    cdf = cdf / cdf[:, -1:]  # guard the float32 cumsum against ending below 1
    next_token = torch.searchsorted(cdf, uniforms[:, s, None].to(cdf.dtype).contiguous(), right=True).squeeze(1)
    return accepted, next_token.clamp_max(p.shape[-1] - 1)


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


def providers(device):
    """kind -> {name: fn(inputs)}; the first entry of each kind is its anchor."""
    d = {"greedy": {ANCHOR: lambda a: eager_verify_greedy(a[0], a[1], a[2])},
         "sampling": {ANCHOR: lambda a: eager_verify_sampling(a[0], a[1], a[3], a[2], 1.0, a[4])}}

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


def run(device=None, quick=False, out_dir="benchmarks/results", repeats=None):
    from tqdm import tqdm

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cases = QUICK_CASES if quick else CASES
    repeats = repeats or (3 if quick else 15)
    provs = providers(device)
    rows = []
    for b, s, v in tqdm(cases, desc="bench verify", unit="shape"):
        a = inputs(b, s, v, device)
        for kind, fns in provs.items():
            timings = time_providers({name: (lambda fn=fn: fn(a)) for name, fn in fns.items()}, device, repeats)
            for name, t in timings.items():
                rows.append({"op": kind, "B": b, "S": s, "V": v, "provider": name, **t.to_dict("ms"),
                             **ratio(timings[ANCHOR], t, ANCHOR).to_dict()})
        del a
    tag = device_tag(device) + ("-quick" if quick else "")
    result = {"family": "verify", "device": tag, "machine": machine(), "runner": runner_note("verify", quick),
              "anchor": ANCHOR, "repeats": repeats, "rows": rows}
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"verify-{tag}.json")
    with open(path, "w") as fh:
        json.dump(result, fh, indent=1)
    print(format_table(rows))
    print(f"ratio = anchor median / provider median; (spread) = p25-p75 of the {repeats} paired per-repeat ratios; "
          f"anchor: {ANCHOR}; runner: {result['runner']} on {tag}")
    print(f"wrote {path}")
    return result


def format_table(rows) -> str:
    lines = [f"{'op':9} {'B':>3} {'S':>3} {'V':>7} {'provider':30} {'median ms':>10} {'p25-p75 ms':>17} "
             f"{'x anchor (spread)':>19}"]
    for r in rows:
        lines.append(f"{r['op']:9} {r['B']:3d} {r['S']:3d} {r['V']:7d} {r['provider']:30} {r['median_ms']:10.3f} "
                     f"{r['p25_ms']:8.3f}-{r['p75_ms']:<8.3f} {r['ratio']:8.2f}x ({r['ratio_p25']:.2f}-{r['ratio_p75']:.2f})")
    return "\n".join(lines)

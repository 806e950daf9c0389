"""Triton kernels of the verify family (Minions): ``torch.ops.leanops.*_triton``.

Greedy (dense and ragged) and sampling: one program per batch row walks the row's positions in order,
each position one blocked pass over V, and stops at the first mismatch (greedy) or rejection (sampling).
So a row reads only the logits rows its decision needs (ragged: only rows of its own range), and of
``draft_probs`` only ``q(x_i)`` at the positions it tests and the one row of a rejection. Probabilities
are in float64 so every backend takes the same decisions. The contract is in docs/DESIGN.md (verify).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import acc_tl_dtype, launch, pow2, register_op

BLOCK_V = 1024
_NO_INDEX = 2147483647  # larger than any index within one block pass
# Under TRITON_INTERPRET a boolean scalar that comes from a reduction cannot be broadcast into a block mask
# (the interpreter gives the mask an integer dtype), so such scalars enter masks as integer bounds:
# ``j < tl.where(flag, V, 0)`` rather than ``(j < V) & flag``.


@triton.jit
def _row_argmax(row_ptr, V, BLOCK_V: tl.constexpr, ACC: tl.constexpr):
    """First index of the maximum of ``row[:V]``, NaN above every number (torch.argmax's order).

    ``tl.max`` drops NaN, so NaN is looked for explicitly: the first NaN wins over any number."""
    best = tl.full((), float("-inf"), ACC)
    arg = tl.zeros((), dtype=tl.int64)
    seen_nan = tl.zeros((), dtype=tl.int1)
    for v0 in range(0, V, BLOCK_V):
        j = v0 + tl.arange(0, BLOCK_V)
        x = tl.load(row_ptr + j, mask=j < V, other=float("-inf")).to(ACC)
        nan = x != x
        first_nan = tl.min(tl.where(nan, j, _NO_INDEX), axis=0).to(tl.int64)
        block_nan = first_nan < _NO_INDEX
        x = tl.where(nan, float("-inf"), x)
        m = tl.max(x, axis=0)
        i = tl.min(tl.where((x == m) & (j < V), j, _NO_INDEX), axis=0).to(tl.int64)
        take_nan = (~seen_nan) & block_nan
        take_max = (~seen_nan) & (~block_nan) & (m > best)  # strict: an earlier block keeps ties
        arg = tl.where(take_nan, first_nan, tl.where(take_max, i, arg))
        best = tl.where(take_max, m, best)
        seen_nan = seen_nan | block_nan
    return arg  # an all -inf row: 0, as torch


@triton.jit
def _greedy_kernel(cand_ptr, offsets_ptr, len_ptr, logits_ptr, acc_ptr, next_ptr, S, V, RAGGED: tl.constexpr,
                   BLOCK_V: tl.constexpr, ACC: tl.constexpr):
    """One program per batch row: argmax of position 0, 1, ... while the candidate token equals it."""
    b = tl.program_id(0).to(tl.int64)
    if RAGGED:  # the row's tokens are candidates[offsets[b]:offsets[b+1]], its logits rows offsets[b] + b ...
        c0 = tl.load(offsets_ptr + b)
        n = tl.load(offsets_ptr + b + 1) - c0
        r0 = c0 + b
    else:
        c0 = b * S
        n = tl.load(len_ptr + b)
        r0 = b * (S + 1)
    a = tl.zeros((), dtype=tl.int64)
    t = _row_argmax(logits_ptr + r0 * V, V, BLOCK_V, ACC)
    go = (a < n) & (t == tl.load(cand_ptr + c0 + a, mask=a < n, other=-1))
    while go:
        a += 1
        t = _row_argmax(logits_ptr + (r0 + a) * V, V, BLOCK_V, ACC)
        go = (a < n) & (t == tl.load(cand_ptr + c0 + a, mask=a < n, other=-1))
    tl.store(acc_ptr + b, a)
    tl.store(next_ptr + b, t)


@register_op("leanops::verify_greedy_triton", mutates_args={})
def verify_greedy_triton(candidate: torch.Tensor, candidate_len: torch.Tensor,
                         target_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    bsz, s = candidate.shape
    v = target_logits.shape[2]
    accepted = candidate.new_empty(bsz)
    nxt = candidate.new_empty(bsz)
    if bsz == 0:
        return accepted, nxt
    lens = candidate_len.contiguous()
    launch(_greedy_kernel, (bsz,), candidate.contiguous(), lens, lens, target_logits.contiguous(), accepted, nxt, s,
           v, RAGGED=False, BLOCK_V=pow2(v, 16, BLOCK_V), ACC=acc_tl_dtype(target_logits))
    return accepted, nxt


@register_op("leanops::verify_greedy_ragged_triton", mutates_args={})
def verify_greedy_ragged_triton(candidates: torch.Tensor, offsets: torch.Tensor,
                                target_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    bsz = offsets.shape[0] - 1
    v = target_logits.shape[1]
    accepted = candidates.new_empty(bsz)
    nxt = candidates.new_empty(bsz)
    if bsz == 0:
        return accepted, nxt
    off = offsets.contiguous()
    launch(_greedy_kernel, (bsz,), candidates.contiguous(), off, off, target_logits.contiguous(), accepted, nxt, 0, v,
           RAGGED=True, BLOCK_V=pow2(v, 16, BLOCK_V), ACC=acc_tl_dtype(target_logits))
    return accepted, nxt


@triton.jit
def _row_lse(row_ptr, V, temperature, BLOCK_V: tl.constexpr):
    """Log-sum-exp of one position's tempered logits z = logit / temperature (float64), in one pass, and
    whether the position has no distribution (a NaN or +inf z, or every z = -inf)."""
    m = tl.full((), float("-inf"), tl.float64)
    acc = tl.zeros((), dtype=tl.float64)
    bad = tl.zeros((), dtype=tl.int1)
    for v0 in range(0, V, BLOCK_V):
        j = v0 + tl.arange(0, BLOCK_V)
        z = tl.load(row_ptr + j, mask=j < V, other=float("-inf")).to(tl.float64) / temperature
        undefined = (z != z) | (z == float("inf"))
        bad = bad | (tl.max(undefined.to(tl.int32), axis=0) > 0)
        z = tl.where(undefined, float("-inf"), z)
        m_new = tl.maximum(m, tl.max(z, axis=0))
        # while every z so far is -inf (masked by top-p) there is nothing to rescale: avoid -inf - -inf
        shift = tl.where(m_new == float("-inf"), 0.0, m_new)
        acc = acc * tl.exp(m - shift) + tl.sum(tl.exp(z - shift), axis=0)
        m = m_new
    return m + tl.log(acc), bad | (m == float("-inf"))


@triton.jit
def _accepts(row_ptr, tok_ptr, q_ptr, u_ptr, a, n, lse, bad, temperature):
    """Whether the candidate token at position a (< n, defined) passes u * q(x) <= p(x)."""
    live = (a < n) & (~bad)
    tok = tl.load(tok_ptr + a, mask=live, other=0)
    p_x = tl.exp(tl.load(row_ptr + tok, mask=live, other=0.0).to(tl.float64) / temperature - lse)
    q_x = tl.load(q_ptr + tok, mask=live, other=0.0).to(tl.float64)
    u = tl.load(u_ptr + a, mask=live, other=0.0)
    return live & (u * q_x <= p_x)


@triton.jit
def _residual(row_ptr, q_ptr, j, V, lse, temperature, use_q):
    """max(0, p - q) over one block (p alone where use_q is false); 0 past V."""
    p = tl.exp(tl.load(row_ptr + j, mask=j < V, other=float("-inf")).to(tl.float64) / temperature - lse)
    q = tl.load(q_ptr + j, mask=j < tl.where(use_q, V, 0), other=0.0).to(tl.float64)
    return tl.where(j < V, tl.maximum(p - q, 0.0), 0.0)


@triton.jit
def _sampling_kernel(logits_ptr, cand_ptr, len_ptr, q_ptr, u_ptr, temp_ptr, acc_ptr, next_ptr, S, V,
                     BLOCK_V: tl.constexpr):
    """One program per batch row: accept tests at positions 0, 1, ... until the first rejection, then an
    inverse-CDF draw from max(0, p - q) there (from p if that is all zero, or after a full accept)."""
    b = tl.program_id(0).to(tl.int64)
    temperature = tl.load(temp_ptr)
    n = tl.load(len_ptr + b)
    rows = logits_ptr + b * (S + 1) * V
    toks = cand_ptr + b * S
    qb = q_ptr + b * S * V
    ub = u_ptr + b * (S + 1)
    a = tl.zeros((), dtype=tl.int64)
    lse, bad = _row_lse(rows, V, temperature, BLOCK_V)
    go = _accepts(rows, toks, qb, ub, a, n, lse, bad, temperature)
    while go:
        a += 1
        lse, bad = _row_lse(rows + a * V, V, temperature, BLOCK_V)
        go = _accepts(rows + a * V, toks, qb + a * V, ub, a, n, lse, bad, temperature)
    row = rows + a * V
    qrow = qb + tl.minimum(a, S - 1) * V  # read only after a rejection (a < n <= S)
    rejected = a < n
    total = tl.zeros((), dtype=tl.float64)
    for v0 in range(0, V, BLOCK_V):
        total += tl.sum(_residual(row, qrow, v0 + tl.arange(0, BLOCK_V), V, lse, temperature, rejected), axis=0)
    use_q = rejected & (total > 0)  # p == q leaves nothing to correct: sample from p
    if rejected & (~use_q):
        total = tl.zeros((), dtype=tl.float64)
        for v0 in range(0, V, BLOCK_V):
            total += tl.sum(_residual(row, qrow, v0 + tl.arange(0, BLOCK_V), V, lse, temperature, use_q), axis=0)
    threshold = tl.load(ub + S) * total
    cdf = tl.zeros((), dtype=tl.float64)
    pick = tl.full((), -1, tl.int64)
    last = tl.full((), -1, tl.int64)  # last token with mass: the pick if rounding leaves cdf <= threshold
    for v0 in range(0, V, BLOCK_V):
        j = v0 + tl.arange(0, BLOCK_V)
        r = _residual(row, qrow, j, V, lse, temperature, use_q)
        c = cdf + tl.cumsum(r, axis=0)
        hit = tl.min(tl.where((c > threshold) & (r > 0), j, _NO_INDEX), axis=0).to(tl.int64)
        pick = tl.where((pick < 0) & (hit < _NO_INDEX), hit, pick)
        last = tl.maximum(last, tl.max(tl.where(r > 0, j, -1), axis=0).to(tl.int64))
        cdf += tl.sum(r, axis=0)
    pick = tl.where(pick < 0, last, pick)
    tl.store(acc_ptr + b, a)
    tl.store(next_ptr + b, tl.where(bad, -1, pick))  # no distribution at position a: the sentinel -1


@register_op("leanops::verify_sampling_triton", mutates_args={})
def verify_sampling_triton(candidate: torch.Tensor, candidate_len: torch.Tensor, draft_probs: torch.Tensor,
                           target_logits: torch.Tensor, temperature: float,
                           uniforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    bsz, s = candidate.shape
    v = target_logits.shape[2]
    accepted = candidate.new_empty(bsz)
    nxt = candidate.new_empty(bsz)
    if bsz == 0:
        return accepted, nxt
    # the temperature as a float64 tensor: a Python float reaches the kernel as float32
    temp = torch.full((1,), temperature, dtype=torch.float64, device=candidate.device)
    launch(_sampling_kernel, (bsz,), target_logits.contiguous(), candidate.contiguous(), candidate_len.contiguous(),
           draft_probs.contiguous(), uniforms.to(torch.float64).contiguous(), temp, accepted, nxt, s, v,
           BLOCK_V=pow2(v, 16, BLOCK_V))
    return accepted, nxt


@triton.jit
def _vote_kernel(drafts_ptr, len_ptr, w_ptr, winner_ptr, K, S, W_STRIDE, BLOCK_K: tl.constexpr):
    """Descend the drafts' prefix tree, taking the heaviest child (ties: lowest draft index) until a stop wins.
    A child is "stop here" (the drafts ending at this depth) or a next token: stop is a flag of its own, so
    no token value can be mistaken for it."""
    b = tl.program_id(0).to(tl.int64)
    kk = tl.arange(0, BLOCK_K)
    kmask = kk < K
    lens = tl.load(len_ptr + b * K + kk, mask=kmask, other=-1)
    w = tl.load(w_ptr + b * W_STRIDE + kk, mask=kmask, other=0.0).to(tl.float64)
    alive = kmask
    winner = tl.full((), -1, tl.int64)
    for depth in range(0, S + 1):
        stop = lens == depth
        tok = tl.load(drafts_ptr + (b * K + kk) * S + depth, mask=alive & (lens > depth), other=0)
        same = ((stop[:, None] & stop[None, :]) | ((~stop[:, None]) & (~stop[None, :]) & (tok[:, None] == tok[None, :])))
        same = same & alive[:, None] & alive[None, :]
        child_w = tl.sum(tl.where(same, w[None, :], 0.0), axis=1)
        child_low = tl.min(tl.where(same, kk[None, :], BLOCK_K), axis=1)
        child_w = tl.where(alive, child_w, float("-inf"))
        best_w = tl.max(child_w, axis=0)
        best_low = tl.min(tl.where(alive & (child_w == best_w), child_low, BLOCK_K), axis=0)
        best_stop = tl.max(tl.where(kk == best_low, stop.to(tl.int32), 0), axis=0) > 0
        best_tok = tl.sum(tl.where(kk == best_low, tok, 0), axis=0)
        undecided = winner < 0
        winner = tl.where(undecided & best_stop, best_low.to(tl.int64), winner)
        go_on = tl.where(undecided & (~best_stop), BLOCK_K, 0)
        alive = alive & (kk < go_on) & (~stop) & (tok == best_tok)
    tl.store(winner_ptr + b, winner)


@register_op("leanops::majority_vote_triton", mutates_args={})
def majority_vote_triton(drafts: torch.Tensor, draft_len: torch.Tensor,
                         weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    bsz, k, s = drafts.shape
    winner = drafts.new_empty(bsz)
    if bsz == 0:
        return winner, drafts.new_zeros(0, s), drafts.new_empty(0)
    w = weights.to(torch.float64).contiguous()
    lens = draft_len.contiguous()
    launch(_vote_kernel, (bsz,), drafts.contiguous(), lens, w, winner, k, s, 0 if weights.dim() == 1 else k,
           BLOCK_K=pow2(k, 16))
    rows = torch.arange(bsz, device=drafts.device)
    cand_len = lens[rows, winner]
    cand = drafts[rows, winner]
    cand = torch.where(torch.arange(s, device=drafts.device)[None, :] < cand_len[:, None], cand,
                       torch.zeros_like(cand))
    return winner, cand, cand_len


__all__ = ["verify_greedy_triton", "verify_greedy_ragged_triton", "verify_sampling_triton",
           "majority_vote_triton"]

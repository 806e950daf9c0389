"""Triton kernels of the verify family (Minions): ``torch.ops.leanops.*_triton``.

Greedy: one program per (row, position) takes the argmax over V blocks, then one program per row finds
the first mismatch. Sampling: one program per (row, position) computes the tempered log-sum-exp in one
pass and the accept test; one program per row then samples the next token by inverse CDF over
``max(0, p - q)`` (or ``p``). Probabilities are in float64 so every backend decides alike.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import acc_tl_dtype, launch, pow2, register_op

BLOCK_V = 1024


@triton.jit
def _argmax_rows_kernel(logits_ptr, out_ptr, V, BLOCK_V: tl.constexpr, ACC: tl.constexpr):
    """out[row] = first index of the maximum of logits[row, :V]."""
    row = tl.program_id(0)
    best = tl.full([1], float("-inf"), ACC)
    arg = tl.zeros([1], dtype=tl.int64)
    for v0 in range(0, V, BLOCK_V):
        j = v0 + tl.arange(0, BLOCK_V)
        x = tl.load(logits_ptr + row.to(tl.int64) * V + j, mask=j < V, other=float("-inf")).to(ACC)
        m = tl.max(x, axis=0)
        i = tl.min(tl.where(x == m, j, 2147483647), axis=0).to(tl.int64)
        better = m > best  # strict: an earlier block keeps ties
        arg = tl.where(better, i, arg)
        best = tl.where(better, m, best)
    tl.store(out_ptr + row + tl.zeros([1], dtype=tl.int32), arg)


@triton.jit
def _first_mismatch_kernel(cand_ptr, row_start_ptr, len_ptr, argmax_ptr, acc_ptr, next_ptr, S_STRIDE, A_STRIDE,
                           RAGGED: tl.constexpr):
    """accepted = leading candidate tokens equal to the argmax; next = the argmax after them."""
    b = tl.program_id(0)
    zero = tl.zeros([1], dtype=tl.int32)
    if RAGGED:
        c0 = tl.load(row_start_ptr + b + zero)
        n = tl.load(row_start_ptr + b + 1 + zero) - c0
        a0 = c0 + b
    else:
        c0 = (b * S_STRIDE + zero).to(tl.int64)
        n = tl.load(len_ptr + b + zero)
        a0 = (b * A_STRIDE + zero).to(tl.int64)
    accepted = tl.zeros([1], dtype=tl.int64)
    going = accepted == 0
    for i in range(0, S_STRIDE):
        live = going & (i < n)
        tok = tl.load(cand_ptr + c0 + i, mask=live, other=-1)
        am = tl.load(argmax_ptr + a0 + i, mask=live, other=-2)
        going = live & (tok == am)
        accepted += going.to(tl.int64)
    tl.store(acc_ptr + b + zero, accepted)
    tl.store(next_ptr + b + zero, tl.load(argmax_ptr + a0 + accepted))


@register_op("leanops::verify_greedy_triton", mutates_args={})
def verify_greedy_triton(candidate: torch.Tensor, candidate_len: torch.Tensor,
                         target_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    bsz, s = candidate.shape
    v = target_logits.shape[2]
    accepted = candidate.new_empty(bsz)
    nxt = candidate.new_empty(bsz)
    if bsz == 0:
        return accepted, nxt
    argmax = candidate.new_empty(bsz * (s + 1))
    launch(_argmax_rows_kernel, (bsz * (s + 1),), target_logits.contiguous(), argmax, v,
            BLOCK_V=pow2(v, 16, BLOCK_V), ACC=acc_tl_dtype(target_logits))
    launch(_first_mismatch_kernel, (bsz,), candidate.contiguous(), candidate_len, candidate_len.contiguous(), argmax,
            accepted, nxt, s, s + 1, RAGGED=False)
    return accepted, nxt


@register_op("leanops::verify_greedy_ragged_triton", mutates_args={})
def verify_greedy_ragged_triton(candidates: torch.Tensor, cu_lens: torch.Tensor,
                                target_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    bsz = cu_lens.shape[0] - 1
    rows, v = target_logits.shape
    accepted = candidates.new_empty(bsz)
    nxt = candidates.new_empty(bsz)
    if bsz == 0:
        return accepted, nxt
    argmax = candidates.new_empty(rows)
    launch(_argmax_rows_kernel, (rows,), target_logits.contiguous(), argmax, v, BLOCK_V=pow2(v, 16, BLOCK_V),
            ACC=acc_tl_dtype(target_logits))
    # loop bound: T (no row is longer); a data-dependent max would not trace under torch.compile
    launch(_first_mismatch_kernel, (bsz,), candidates.contiguous(), cu_lens.contiguous(), cu_lens, argmax, accepted,
            nxt, candidates.shape[0], 0, RAGGED=True)
    return accepted, nxt


@triton.jit
def _position_kernel(logits_ptr, cand_ptr, len_ptr, q_ptr, u_ptr, lse_ptr, ok_ptr, S, V, inv_t,
                     BLOCK_V: tl.constexpr):
    """Per (row, position): tempered log-sum-exp in one pass; for i < len the accept test u*q(x) <= p(x)."""
    b = tl.program_id(0)
    i = tl.program_id(1)
    zero = tl.zeros([1], dtype=tl.int32)
    base = (b * (S + 1) + i).to(tl.int64) * V
    m = tl.full([1], float("-inf"), tl.float64)
    acc = tl.zeros([1], dtype=tl.float64)
    for v0 in range(0, V, BLOCK_V):
        j = v0 + tl.arange(0, BLOCK_V)
        x = tl.load(logits_ptr + base + j, mask=j < V, other=float("-inf")).to(tl.float64) * inv_t
        m_new = tl.maximum(m, tl.max(x, axis=0))
        # while every logit so far is -inf (masked by top-p) there is nothing to rescale: avoid -inf - -inf
        shift = tl.where(m_new == float("-inf"), 0.0, m_new)
        acc = acc * tl.exp(m - shift) + tl.sum(tl.exp(x - shift), axis=0)
        m = m_new
    lse = m + tl.log(acc)
    tl.store(lse_ptr + b * (S + 1) + i + zero, lse)
    n = tl.load(len_ptr + b + zero)
    live = ((zero + i) < n) & ((zero + i) < S)  # [1]-shaped masks (0-d ones upset the interpreter)
    tok = tl.load(cand_ptr + b * S + i + zero, mask=live, other=0)
    p_x = tl.exp(tl.load(logits_ptr + base + tok, mask=live, other=0.0).to(tl.float64) * inv_t - lse)
    q_x = tl.load(q_ptr + (b * S + i).to(tl.int64) * V + tok, mask=live, other=0.0).to(tl.float64)
    u = tl.load(u_ptr + b * (S + 1) + i + zero, mask=live, other=0.0).to(tl.float64)
    tl.store(ok_ptr + b * S + i + zero, (u * q_x <= p_x).to(tl.int32), mask=live)


@triton.jit
def _sample_kernel(logits_ptr, len_ptr, q_ptr, u_ptr, lse_ptr, ok_ptr, acc_ptr, next_ptr, S, V, inv_t,
                   BLOCK_V: tl.constexpr):
    """First rejection, then an inverse-CDF draw from max(0, p - q) there (or from p after a full accept)."""
    b = tl.program_id(0)
    zero = tl.zeros([1], dtype=tl.int32)
    n = tl.load(len_ptr + b + zero)
    accepted = tl.zeros([1], dtype=tl.int64)
    going = accepted == 0
    for i in range(0, S):
        going = going & (i < n) & (tl.load(ok_ptr + b * S + i + zero, mask=going & (i < n), other=0) == 1)
        accepted += going.to(tl.int64)
    rejected = accepted < n
    lse = tl.load(lse_ptr + b * (S + 1) + accepted)
    base = (b * (S + 1) + accepted).to(tl.int64) * V
    qbase = (b * S + tl.minimum(accepted, S - 1)).to(tl.int64) * V
    total = tl.zeros([1], dtype=tl.float64)
    for v0 in range(0, V, BLOCK_V):
        j = v0 + tl.arange(0, BLOCK_V)
        p = tl.exp(tl.load(logits_ptr + base + j, mask=j < V, other=float("-inf")).to(tl.float64) * inv_t - lse)
        q = tl.load(q_ptr + qbase + j, mask=(j < V) & rejected, other=0.0).to(tl.float64)
        total += tl.sum(tl.maximum(p - q, 0.0), axis=0)
    use_p = total <= 0  # p == q: nothing to correct, sample from p
    if tl.sum(use_p.to(tl.int32), axis=0) > 0:
        total = tl.zeros([1], dtype=tl.float64)
        for v0 in range(0, V, BLOCK_V):
            j = v0 + tl.arange(0, BLOCK_V)
            total += tl.sum(tl.exp(tl.load(logits_ptr + base + j, mask=j < V, other=float("-inf")).to(tl.float64)
                                   * inv_t - lse), axis=0)
    threshold = tl.load(u_ptr + b * (S + 1) + S + zero).to(tl.float64) * total
    cdf = tl.zeros([1], dtype=tl.float64)
    pick = tl.full([1], V - 1, tl.int64)
    found = pick < 0
    for v0 in range(0, V, BLOCK_V):
        j = v0 + tl.arange(0, BLOCK_V)
        p = tl.exp(tl.load(logits_ptr + base + j, mask=j < V, other=float("-inf")).to(tl.float64) * inv_t - lse)
        q = tl.load(q_ptr + qbase + j, mask=(j < V) & rejected & ~use_p, other=0.0).to(tl.float64)
        r = tl.where(j < V, tl.maximum(p - q, 0.0), 0.0)
        c = cdf + tl.cumsum(r, axis=0)
        hit = tl.min(tl.where((c > threshold) & (j < V), j, 2147483647), axis=0).to(tl.int64)
        take = (~found) & (hit < 2147483647)
        pick = tl.where(take, hit, pick)
        found = found | take
        cdf += tl.sum(r, axis=0)
    tl.store(acc_ptr + b + zero, accepted)
    tl.store(next_ptr + b + zero, pick)


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
    lse = target_logits.new_empty(bsz, s + 1, dtype=torch.float64)
    ok = candidate.new_zeros(bsz, max(s, 1), dtype=torch.int32)
    logits, q = target_logits.contiguous(), draft_probs.contiguous()
    u = uniforms.to(torch.float64).contiguous()
    block = pow2(v, 16, BLOCK_V)
    launch(_position_kernel, (bsz, s + 1), logits, candidate.contiguous(), candidate_len.contiguous(), q, u, lse, ok,
            s, v, 1.0 / temperature, BLOCK_V=block)
    launch(_sample_kernel, (bsz,), logits, candidate_len.contiguous(), q, u, lse, ok, accepted, nxt, s, v,
            1.0 / temperature, BLOCK_V=block)
    return accepted, nxt


@triton.jit
def _vote_kernel(drafts_ptr, len_ptr, w_ptr, winner_ptr, K, S, W_STRIDE, BLOCK_K: tl.constexpr):
    """Descend the drafts' prefix tree, taking the heaviest child (ties: lowest draft index) until a stop wins."""
    b = tl.program_id(0)
    kk = tl.arange(0, BLOCK_K)
    kmask = kk < K
    lens = tl.load(len_ptr + b * K + kk, mask=kmask, other=-1)
    w = tl.load(w_ptr + b * W_STRIDE + kk, mask=kmask, other=0.0).to(tl.float64)
    alive = kmask
    winner = tl.full([1], -1, tl.int64)
    for depth in range(0, S + 1):
        tok = tl.load(drafts_ptr + (b * K + kk).to(tl.int64) * S + depth, mask=alive & (lens > depth), other=0)
        key = tl.where(lens == depth, -1, tok)
        same = (key[:, None] == key[None, :]) & alive[:, None] & alive[None, :]
        child_w = tl.sum(tl.where(same, w[None, :], 0.0), axis=1)
        child_low = tl.min(tl.where(same, kk[None, :], BLOCK_K), axis=1)
        child_w = tl.where(alive, child_w, -1.0)
        best_w = tl.max(child_w, axis=0)
        best_low = tl.min(tl.where(child_w == best_w, child_low, BLOCK_K), axis=0)
        best_key = tl.sum(tl.where(kk == best_low, key, 0), axis=0)
        undecided = winner < 0
        stop = undecided & (best_key == -1)
        winner = tl.where(stop, best_low.to(tl.int64), winner)
        alive = alive & (undecided & (stop == 0)) & (key == best_key)
    tl.store(winner_ptr + b + tl.zeros([1], dtype=tl.int32), winner)


@register_op("leanops::majority_vote_triton", mutates_args={})
def majority_vote_triton(drafts: torch.Tensor, draft_len: torch.Tensor,
                         weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    bsz, k, s = drafts.shape
    winner = drafts.new_empty(bsz)
    if bsz == 0:
        return winner, drafts.new_zeros(0, s), drafts.new_empty(0)
    w = weights.to(torch.float64).contiguous()
    launch(_vote_kernel, (bsz,), drafts.contiguous(), draft_len.contiguous(), w, winner, k, s,
            0 if weights.dim() == 1 else k, BLOCK_K=pow2(k, 16))
    rows = torch.arange(bsz, device=drafts.device)
    cand_len = draft_len[rows, winner]
    cand = drafts[rows, winner]
    cand = torch.where(torch.arange(s, device=drafts.device)[None, :] < cand_len[:, None], cand,
                       torch.zeros_like(cand))
    return winner, cand, cand_len


__all__ = ["verify_greedy_triton", "verify_greedy_ragged_triton", "verify_sampling_triton",
           "majority_vote_triton"]

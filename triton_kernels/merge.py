"""Triton kernels of the merge family, exposed as ``torch.ops.leanops.*_triton`` via ``triton_op``.

On CPU tensors they run under ``TRITON_INTERPRET=1`` (how CI tests them). Merges into a B token are
gathered through a CSR list built by a stable sort, so every sum has a fixed order (no atomics).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from leanops._token_layout import effective_r, layout

from ._common import acc_tl_dtype, launch, pow2, register_op


# ----------------------------------------------------------------------------- bipartite_match
@triton.jit
def _norm_kernel(m_ptr, out_ptr, N, C, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr, ACC: tl.constexpr):
    b = tl.program_id(0)
    tok = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
    ss = tl.zeros([BLOCK_T], dtype=ACC)
    for c0 in range(0, C, BLOCK_C):
        ch = c0 + tl.arange(0, BLOCK_C)
        mask = (tok[:, None] < N) & (ch[None, :] < C)
        v = tl.load(m_ptr + (b * N + tok[:, None]) * C + ch[None, :], mask=mask, other=0.0).to(ACC)
        ss += tl.sum(v * v, axis=1)
    tl.store(out_ptr + b * N + tok, tl.sqrt(ss), mask=tok < N)


@triton.jit
def _best_match_kernel(m_ptr, norm_ptr, best_ptr, arg_ptr, N, C, NA, NB, FIRST_A, FIRST_B,
                       BLOCK_A: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_C: tl.constexpr, ACC: tl.constexpr):
    """Each A token's most similar B token (first index on ties)."""
    b = tl.program_id(0)
    ia = tl.program_id(1) * BLOCK_A + tl.arange(0, BLOCK_A)
    tok_a = FIRST_A + 2 * ia
    norm_a = tl.load(norm_ptr + b * N + tok_a, mask=ia < NA, other=1.0)
    best = tl.full([BLOCK_A], float("-inf"), ACC)
    arg = tl.zeros([BLOCK_A], dtype=tl.int32)
    for j0 in range(0, NB, BLOCK_B):
        jb = j0 + tl.arange(0, BLOCK_B)
        tok_b = FIRST_B + 2 * jb
        norm_b = tl.load(norm_ptr + b * N + tok_b, mask=jb < NB, other=1.0)
        acc = tl.zeros([BLOCK_A, BLOCK_B], dtype=ACC)
        for c0 in range(0, C, BLOCK_C):
            ch = c0 + tl.arange(0, BLOCK_C)
            # unit vectors by division, as the reference does, so that exact ties stay ties
            a = tl.load(m_ptr + (b * N + tok_a[:, None]) * C + ch[None, :],
                        mask=(ia[:, None] < NA) & (ch[None, :] < C), other=0.0).to(ACC) / norm_a[:, None]
            bt = tl.load(m_ptr + (b * N + tok_b[None, :]) * C + ch[:, None],
                         mask=(jb[None, :] < NB) & (ch[:, None] < C), other=0.0).to(ACC) / norm_b[None, :]
            acc += tl.dot(a, bt, input_precision="ieee")
        s = tl.where(jb[None, :] < NB, acc, float("-inf"))
        tile_best = tl.max(s, axis=1)
        tile_arg = tl.min(tl.where(s == tile_best[:, None], jb[None, :], 2147483647), axis=1)
        better = tile_best > best  # strict: an earlier tile keeps ties
        arg = tl.where(better, tile_arg, arg)
        best = tl.where(better, tile_best, best)
    tl.store(best_ptr + b * NA + ia, best, mask=ia < NA)
    tl.store(arg_ptr + b * NA + ia, arg, mask=ia < NA)


@triton.jit
def _rank_place_kernel(best_ptr, arg_ptr, rank_ptr, src_ptr, dst_ptr, NA, R, FIRST_A, FIRST_B,
                       BLOCK: tl.constexpr):
    """rank_i = #{j: best_j > best_i, or equal with j < i}; the top R become (src, dst) in rank order."""
    b = tl.program_id(0)
    i = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    bi = tl.load(best_ptr + b * NA + i, mask=i < NA, other=float("-inf"))
    rank = tl.zeros([BLOCK], dtype=tl.int32)
    for j0 in range(0, NA, BLOCK):
        j = j0 + tl.arange(0, BLOCK)
        bj = tl.load(best_ptr + b * NA + j, mask=j < NA, other=float("-inf"))
        ahead = (bj[None, :] > bi[:, None]) | ((bj[None, :] == bi[:, None]) & (j[None, :] < i[:, None]))
        ahead = ahead & (j[None, :] < NA)
        rank += tl.sum(ahead.to(tl.int32), axis=1)
    tl.store(rank_ptr + b * NA + i, rank, mask=i < NA)
    arg = tl.load(arg_ptr + b * NA + i, mask=i < NA, other=0)
    chosen = (i < NA) & (rank < R)
    tl.store(src_ptr + b * R + rank, (FIRST_A + 2 * i).to(tl.int64), mask=chosen)
    tl.store(dst_ptr + b * R + rank, (FIRST_B + 2 * arg).to(tl.int64), mask=chosen)


@triton.jit
def _place_unmerged_kernel(rank_ptr, unm_ptr, NA, R, FIRST_A, BLOCK: tl.constexpr):
    """Unmerged A tokens keep their order: position = #{j < i unmerged}."""
    b = tl.program_id(0)
    i = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    ri = tl.load(rank_ptr + b * NA + i, mask=i < NA, other=0)
    pos = tl.zeros([BLOCK], dtype=tl.int32)
    for j0 in range(0, NA, BLOCK):
        j = j0 + tl.arange(0, BLOCK)
        rj = tl.load(rank_ptr + b * NA + j, mask=j < NA, other=0)
        before = (j[None, :] < i[:, None]) & (rj[None, :] >= R) & (j[None, :] < NA)
        pos += tl.sum(before.to(tl.int32), axis=1)
    tl.store(unm_ptr + b * (NA - R) + pos, (FIRST_A + 2 * i).to(tl.int64), mask=(i < NA) & (ri >= R))


@register_op("leanops::bipartite_match_triton", mutates_args={})
def bipartite_match_triton(metric: torch.Tensor, r: int, num_protected: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    bsz, n, c = metric.shape
    na, nb, first_a, first_b = layout(n, num_protected)
    re = effective_r(n, r, num_protected)
    src = metric.new_empty(bsz, re, dtype=torch.long)
    dst = metric.new_empty(bsz, re, dtype=torch.long)
    unm = metric.new_empty(bsz, na - re, dtype=torch.long)
    if bsz == 0 or na == 0:
        return src, dst, unm
    m = metric.contiguous()
    acc_dtype = torch.float64 if metric.dtype == torch.float64 else torch.float32
    norm = metric.new_empty(bsz, n, dtype=acc_dtype)
    best = metric.new_empty(bsz, na, dtype=acc_dtype)
    arg = metric.new_empty(bsz, na, dtype=torch.int32)
    rank = metric.new_empty(bsz, na, dtype=torch.int32)
    block_c = pow2(c, 16, 64)
    launch(_norm_kernel, (bsz, triton.cdiv(n, 32)), m, norm, n, c, BLOCK_T=32, BLOCK_C=block_c, ACC=acc_tl_dtype(m))
    block_a = 32
    launch(_best_match_kernel, (bsz, triton.cdiv(na, block_a)), 
        m, norm, best, arg, n, c, na, nb, first_a, first_b, BLOCK_A=block_a, BLOCK_B=32, BLOCK_C=block_c, ACC=acc_tl_dtype(m))
    block = 64
    launch(_rank_place_kernel, (bsz, triton.cdiv(na, block)), 
        best, arg, rank, src, dst, na, re, first_a, first_b, BLOCK=block)
    launch(_place_unmerged_kernel, (bsz, triton.cdiv(na, block)), rank, unm, na, re, first_a, BLOCK=block)
    return src, dst, unm


# ----------------------------------------------------------------------------- merge_wavg
def _merges_by_dst(dst_idx: torch.Tensor, first_b: int, nb: int):
    """CSR of the merges into each B token: ``order`` (rows of src_idx) and ``ptr[B, nb+1]``."""
    bsz, r = dst_idx.shape
    pos = (dst_idx - first_b) // 2
    order = torch.sort(pos, dim=1, stable=True).indices
    counts = torch.zeros(bsz, nb, dtype=torch.long, device=dst_idx.device)
    counts.scatter_add_(1, pos, torch.ones_like(pos))
    ptr = torch.cat([counts.new_zeros(bsz, 1), counts.cumsum(1)], dim=1)
    return order.contiguous(), ptr.contiguous()


@triton.jit
def _merge_wavg_kernel(x_ptr, size_ptr, src_ptr, unm_ptr, order_ptr, ptr_ptr, cg_ptr, tg_ptr, out_ptr, size_out_ptr,
                       N, C, M, R, NU, NB, P, FIRST_B,
                       HAS_SIZE: tl.constexpr, HAS_GATE: tl.constexpr, BLOCK_C: tl.constexpr, ACC: tl.constexpr):
    """One output slot (protected, unmerged A, or B with everything merged into it) per program."""
    b = tl.program_id(0)
    s = tl.program_id(1)
    ch = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    cm = ch < C
    if s < P + NU:
        tok = s.to(tl.int64)
        if s >= P:
            tok = tl.load(unm_ptr + b * NU + (s - P))
        v = tl.load(x_ptr + (b * N + tok) * C + ch, mask=cm)
        tl.store(out_ptr + (b * M + s) * C + ch, v, mask=cm)
        w = 1.0
        if HAS_SIZE:
            w = tl.load(size_ptr + b * N + tok).to(ACC)
        tl.store(size_out_ptr + b * M + s, w, mask=tl.program_id(2) == 0)
    else:
        j = s - P - NU
        tok = FIRST_B + 2 * j
        w = 1.0
        if HAS_SIZE:
            w = tl.load(size_ptr + b * N + tok).to(ACC)
        num = w * tl.load(x_ptr + (b * N + tok) * C + ch, mask=cm, other=0.0).to(ACC)
        den = w
        if HAS_GATE:
            gate = tl.load(cg_ptr + b * C + ch, mask=cm, other=0.0).to(ACC)
        start = tl.load(ptr_ptr + b * (NB + 1) + j)
        end = tl.load(ptr_ptr + b * (NB + 1) + j + 1)
        for e in range(start, end):
            k = tl.load(order_ptr + b * R + e)
            stok = tl.load(src_ptr + b * R + k)
            ws = 1.0
            if HAS_SIZE:
                ws = tl.load(size_ptr + b * N + stok).to(ACC)
            v = tl.load(x_ptr + (b * N + stok) * C + ch, mask=cm, other=0.0).to(ACC)
            if HAS_GATE:
                t = tl.load(tg_ptr + b * R + k).to(ACC)
                v = v * (1.0 + gate * t)
            num += ws * v
            den += ws
        val = tl.where(den > 0, num / tl.where(den > 0, den, 1.0), 0.0)  # empty (padding) slot -> 0
        tl.store(out_ptr + (b * M + s) * C + ch, val.to(out_ptr.dtype.element_ty), mask=cm)
        tl.store(size_out_ptr + b * M + s, den, mask=tl.program_id(2) == 0)


def _wavg_common(x, src_idx, dst_idx, num_protected):
    bsz, n, c = x.shape
    na, nb, first_a, first_b = layout(n, num_protected)
    order, ptr = _merges_by_dst(dst_idx, first_b, nb)
    block_c = pow2(c, 16, 1024)
    return bsz, n, c, nb, first_b, order, ptr, block_c


@register_op("leanops::merge_wavg_triton", mutates_args={})
def merge_wavg_triton(x: torch.Tensor, size: torch.Tensor | None, src_idx: torch.Tensor, dst_idx: torch.Tensor,
                      unm_idx: torch.Tensor, num_protected: int, channel_gate: torch.Tensor | None,
                      token_gate: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    bsz, n, c, nb, first_b, order, ptr, block_c = _wavg_common(x, src_idx, dst_idx, num_protected)
    r, nu = src_idx.shape[1], unm_idx.shape[1]
    m = n - r
    out = x.new_empty(bsz, m, c)
    size_out = x.new_empty(bsz, m, dtype=torch.float32)
    if bsz == 0 or m == 0:
        return out, size_out
    xc = x.contiguous()
    size_c = size.contiguous() if size is not None else size_out  # dummy pointer when absent
    cg = channel_gate.contiguous() if channel_gate is not None else xc
    tg = token_gate.contiguous() if token_gate is not None else xc
    launch(_merge_wavg_kernel, (bsz, m, triton.cdiv(c, block_c)), 
        xc, size_c, src_idx.contiguous(), unm_idx.contiguous(), order, ptr, cg, tg, out, size_out,
        n, c, m, r, nu, nb, num_protected, first_b,
        HAS_SIZE=size is not None, HAS_GATE=channel_gate is not None, BLOCK_C=block_c, ACC=acc_tl_dtype(x))
    return out, size_out


@triton.jit
def _merge_wavg_backward_kernel(g_ptr, x_ptr, size_ptr, src_ptr, unm_ptr, order_ptr, ptr_ptr, cg_ptr, tg_ptr,
                                gx_ptr, gtg_ptr, N, C, M, R, NU, NB, P, FIRST_B,
                                HAS_SIZE: tl.constexpr, HAS_GATE: tl.constexpr, BLOCK_C: tl.constexpr, ACC: tl.constexpr):
    """Gradient for the tokens of one output slot; BLOCK_C covers all channels (token_gate sums over C)."""
    b = tl.program_id(0)
    s = tl.program_id(1)
    ch = tl.arange(0, BLOCK_C)
    cm = ch < C
    g = tl.load(g_ptr + (b * M + s) * C + ch, mask=cm, other=0.0).to(ACC)
    if s < P + NU:
        tok = s.to(tl.int64)
        if s >= P:
            tok = tl.load(unm_ptr + b * NU + (s - P))
        tl.store(gx_ptr + (b * N + tok) * C + ch, g.to(gx_ptr.dtype.element_ty), mask=cm)
    else:
        j = s - P - NU
        tok = FIRST_B + 2 * j
        start = tl.load(ptr_ptr + b * (NB + 1) + j)
        end = tl.load(ptr_ptr + b * (NB + 1) + j + 1)
        w = 1.0
        if HAS_SIZE:
            w = tl.load(size_ptr + b * N + tok).to(ACC)
        den = w
        for e in range(start, end):
            ws = 1.0
            if HAS_SIZE:
                ws = tl.load(size_ptr + b * N + tl.load(src_ptr + b * R + tl.load(order_ptr + b * R + e))).to(ACC)
            den += ws
        inv = tl.where(den > 0, 1.0 / tl.maximum(den, 1e-30), 0.0)
        tl.store(gx_ptr + (b * N + tok) * C + ch, (g * w * inv).to(gx_ptr.dtype.element_ty), mask=cm)
        if HAS_GATE:
            gate = tl.load(cg_ptr + b * C + ch, mask=cm, other=0.0).to(ACC)
        for e in range(start, end):
            k = tl.load(order_ptr + b * R + e)
            stok = tl.load(src_ptr + b * R + k)
            ws = 1.0
            if HAS_SIZE:
                ws = tl.load(size_ptr + b * N + stok).to(ACC)
            gf = g * ws * inv
            if HAS_GATE:
                t = tl.load(tg_ptr + b * R + k).to(ACC)
                v = tl.load(x_ptr + (b * N + stok) * C + ch, mask=cm, other=0.0).to(ACC)
                tl.store(gtg_ptr + b * R + k, tl.sum(gf * v * gate, axis=0).to(gtg_ptr.dtype.element_ty))
                gf = gf * (1.0 + gate * t)
            tl.store(gx_ptr + (b * N + stok) * C + ch, gf.to(gx_ptr.dtype.element_ty), mask=cm)


@triton.jit
def _channel_gate_grad_kernel(g_ptr, x_ptr, size_ptr, size_out_ptr, src_ptr, dst_ptr, tg_ptr, gcg_ptr,
                              N, C, M, R, NU, P, FIRST_B, HAS_SIZE: tl.constexpr, BLOCK_C: tl.constexpr,
                              ACC: tl.constexpr):
    """d/d channel_gate[c] = sum over merged tokens k of g[slot_k, c] * w_k / den * x_k[c] * token_gate_k."""
    b = tl.program_id(0)
    ch = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cm = ch < C
    acc = tl.zeros([BLOCK_C], dtype=ACC)
    for k in range(0, R):
        stok = tl.load(src_ptr + b * R + k)
        slot = P + NU + (tl.load(dst_ptr + b * R + k) - FIRST_B) // 2
        ws = 1.0
        if HAS_SIZE:
            ws = tl.load(size_ptr + b * N + stok).to(ACC)
        den = tl.load(size_out_ptr + b * M + slot).to(ACC)
        f = tl.where(den > 0, ws / tl.maximum(den, 1e-30), 0.0)
        g = tl.load(g_ptr + (b * M + slot) * C + ch, mask=cm, other=0.0).to(ACC)
        v = tl.load(x_ptr + (b * N + stok) * C + ch, mask=cm, other=0.0).to(ACC)
        acc += g * f * v * tl.load(tg_ptr + b * R + k).to(ACC)
    tl.store(gcg_ptr + b * C + ch, acc.to(gcg_ptr.dtype.element_ty), mask=cm)


@register_op("leanops::merge_wavg_backward_triton", mutates_args={})
def merge_wavg_backward_triton(grad_out: torch.Tensor, x: torch.Tensor, size: torch.Tensor | None,
                               src_idx: torch.Tensor, dst_idx: torch.Tensor, unm_idx: torch.Tensor,
                               num_protected: int, channel_gate: torch.Tensor | None,
                               token_gate: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    bsz, n, c, nb, first_b, order, ptr, _ = _wavg_common(x, src_idx, dst_idx, num_protected)
    r, nu = src_idx.shape[1], unm_idx.shape[1]
    m = n - r
    gated = channel_gate is not None
    gx = torch.empty_like(x, memory_format=torch.contiguous_format)
    gcg = torch.empty_like(channel_gate, memory_format=torch.contiguous_format) if gated else x.new_empty(0)
    gtg = torch.empty_like(token_gate, memory_format=torch.contiguous_format) if gated else x.new_empty(0)
    if bsz == 0 or m == 0:
        return gx, gcg, gtg
    g = grad_out.to(x.dtype).contiguous()
    xc = x.contiguous()
    size_c = size.contiguous() if size is not None else gx
    cg = channel_gate.contiguous() if gated else xc
    tg = token_gate.contiguous() if gated else xc
    src_c = src_idx.contiguous()
    launch(_merge_wavg_backward_kernel, (bsz, m), 
        g, xc, size_c, src_c, unm_idx.contiguous(), order, ptr, cg, tg, gx, gtg if gated else gx,
        n, c, m, r, nu, nb, num_protected, first_b,
        HAS_SIZE=size is not None, HAS_GATE=gated, BLOCK_C=pow2(c, 16), ACC=acc_tl_dtype(x))
    if gated and r > 0:
        size_out = _slot_sizes(size, src_idx, dst_idx, unm_idx, num_protected, n)
        block_c = pow2(c, 16, 256)
        launch(_channel_gate_grad_kernel, (bsz, triton.cdiv(c, block_c)), 
            g, xc, size_c, size_out, src_c, dst_idx.contiguous(), tg, gcg, n, c, m, r, nu, num_protected, first_b,
            HAS_SIZE=size is not None, BLOCK_C=block_c, ACC=acc_tl_dtype(x))
    elif gated:
        gcg.zero_()
    return gx, gcg, gtg


def _slot_sizes(size, src_idx, dst_idx, unm_idx, num_protected, n):
    """Total size of every output slot (what merge_wavg returns as size_out), in torch ops."""
    bsz = src_idx.shape[0]
    _, nb, _, first_b = layout(n, num_protected)
    size = size if size is not None else torch.ones(bsz, n, device=src_idx.device)
    keep = torch.cat([torch.arange(num_protected, device=src_idx.device).expand(bsz, -1), unm_idx], dim=1)
    b_tok = first_b + 2 * torch.arange(nb, device=src_idx.device)
    b_den = size[:, b_tok].scatter_add(1, (dst_idx - first_b) // 2, size.gather(1, src_idx))
    return torch.cat([size.gather(1, keep), b_den], dim=1).contiguous()


# ----------------------------------------------------------------------------- slot map, unmerge
@triton.jit
def _slot_map_fixed_kernel(slot_ptr, N, P, NU, FIRST_B, BLOCK: tl.constexpr):
    """Protected tokens keep their slot; B tokens go to P + NU + their position in B."""
    b = tl.program_id(0)
    i = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    is_b = (i >= P) & (i % 2 == FIRST_B % 2)
    slot = tl.where(i < P, i, P + NU + (i - FIRST_B) // 2)
    tl.store(slot_ptr + b * N + i, slot.to(tl.int64), mask=(i < N) & ((i < P) | is_b))


@triton.jit
def _slot_map_a_kernel(slot_ptr, src_ptr, dst_ptr, unm_ptr, N, R, NU, P, FIRST_B, BLOCK: tl.constexpr):
    b = tl.program_id(0)
    k = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    u = tl.load(unm_ptr + b * NU + k, mask=k < NU, other=0)
    tl.store(slot_ptr + b * N + u, (P + k).to(tl.int64), mask=k < NU)
    s = tl.load(src_ptr + b * R + k, mask=k < R, other=0)
    d = tl.load(dst_ptr + b * R + k, mask=k < R, other=0)
    tl.store(slot_ptr + b * N + s, (P + NU + (d - FIRST_B) // 2).to(tl.int64), mask=k < R)


@register_op("leanops::merge_slot_map_triton", mutates_args={})
def merge_slot_map_triton(src_idx: torch.Tensor, dst_idx: torch.Tensor, unm_idx: torch.Tensor, num_protected: int,
                          n: int) -> torch.Tensor:
    bsz, r = src_idx.shape
    nu = unm_idx.shape[1]
    _, _, _, first_b = layout(n, num_protected)
    slot = src_idx.new_empty(bsz, n)
    if bsz == 0 or n == 0:
        return slot
    block = 64
    launch(_slot_map_fixed_kernel, (bsz, triton.cdiv(n, block)), slot, n, num_protected, nu, first_b, BLOCK=block)
    if r + nu:
        launch(_slot_map_a_kernel, (bsz, triton.cdiv(max(r, nu), block)), 
            slot, src_idx.contiguous(), dst_idx.contiguous(), unm_idx.contiguous(), n, r, nu, num_protected, first_b,
            BLOCK=block)
    return slot


@triton.jit
def _gather_rows_kernel(x_ptr, idx_ptr, out_ptr, M, N, C, BLOCK_C: tl.constexpr):
    b = tl.program_id(0)
    i = tl.program_id(1)
    ch = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    s = tl.load(idx_ptr + b * N + i)
    v = tl.load(x_ptr + (b * M + s) * C + ch, mask=ch < C)
    tl.store(out_ptr + (b * N + i) * C + ch, v, mask=ch < C)


@register_op("leanops::unmerge_triton", mutates_args={})
def unmerge_triton(x_merged: torch.Tensor, slot_map: torch.Tensor) -> torch.Tensor:
    bsz, m, c = x_merged.shape
    n = slot_map.shape[1]
    out = x_merged.new_empty(bsz, n, c)
    if bsz == 0 or n == 0 or c == 0:
        return out
    block_c = pow2(c, 16, 1024)
    launch(_gather_rows_kernel, (bsz, n, triton.cdiv(c, block_c)), 
        x_merged.contiguous(), slot_map.contiguous(), out, m, n, c, BLOCK_C=block_c)
    return out


@triton.jit
def _sum_rows_kernel(g_ptr, order_ptr, ptr_ptr, out_ptr, M, N, C, BLOCK_C: tl.constexpr, ACC: tl.constexpr):
    """out[b, s] = sum of grad rows of the tokens in slot s (CSR by slot, fixed order)."""
    b = tl.program_id(0)
    s = tl.program_id(1)
    ch = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    acc = tl.zeros([BLOCK_C], dtype=ACC)
    for e in range(tl.load(ptr_ptr + b * (M + 1) + s), tl.load(ptr_ptr + b * (M + 1) + s + 1)):
        i = tl.load(order_ptr + b * N + e)
        acc += tl.load(g_ptr + (b * N + i) * C + ch, mask=ch < C, other=0.0).to(ACC)
    tl.store(out_ptr + (b * M + s) * C + ch, acc.to(out_ptr.dtype.element_ty), mask=ch < C)


@register_op("leanops::unmerge_backward_triton", mutates_args={})
def unmerge_backward_triton(grad: torch.Tensor, slot_map: torch.Tensor, m: int) -> torch.Tensor:
    bsz, n, c = grad.shape
    out = grad.new_zeros(bsz, m, c)
    if bsz == 0 or n == 0 or m == 0 or c == 0:
        return out
    order = torch.sort(slot_map, dim=1, stable=True).indices.contiguous()
    counts = torch.zeros(bsz, m, dtype=torch.long, device=grad.device)
    counts.scatter_add_(1, slot_map, torch.ones_like(slot_map))
    ptr = torch.cat([counts.new_zeros(bsz, 1), counts.cumsum(1)], dim=1).contiguous()
    block_c = pow2(c, 16, 1024)
    launch(_sum_rows_kernel, (bsz, m, triton.cdiv(c, block_c)), 
        grad.contiguous(), order, ptr, out, m, n, c, BLOCK_C=block_c, ACC=acc_tl_dtype(grad))
    return out

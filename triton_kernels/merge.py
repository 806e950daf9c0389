"""Triton kernels of the merge family, exposed as ``torch.ops.leanops.*_triton`` via ``triton_op``.

On CPU tensors they run under ``TRITON_INTERPRET=1`` (how CI tests them). Merges into a B token are
gathered through a CSR list (``offsets``) built by a stable sort, so every sum has a fixed order (no
atomics).

Sizes: every kernel is a grid-stride loop. Axis 0 of the grid walks a flat range of rows or tiles
(batch included), axis 1 (where used) the channel blocks; ``launch_grid`` caps each axis at the
hardware limit and the kernels loop over the rest, so no batch, token or channel count is too large.
Offsets are int64: the batch index is cast first (``tl.cast(..., tl.int64)``), so ``(b * N + t) * C``
never wraps at 2^31 as a product of int32 program ids would.

Scores (bipartite_match) follow DESIGN.md's order: NaN above every number, ties to the lower index.
``tl.max`` drops NaN on a GPU, so NaN is found explicitly (``x != x``) and never enters a max.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from leanops._token_layout import effective_r, layout

from ._common import INTERPRETED, acc_tl_dtype, launch, pow2, register_op

MAX_GRID_AXIS0 = 2**31 - 1  # CUDA gridDim.x
MAX_GRID_AXIS12 = 65535  # CUDA gridDim.y and .z
BLOCK_C_MAX = 1024  # channels per program and loop step: any C works, in ceil(C / 1024) steps


def launch_grid(items: int, chunks: int = 1) -> tuple[int, int]:
    """Grid of a grid-stride kernel: ``items`` rows/tiles on axis 0, ``chunks`` channel blocks on axis 1,
    each capped at the hardware limit (at least 1); the kernel's loops cover what the grid does not."""
    return max(1, min(int(items), MAX_GRID_AXIS0)), max(1, min(int(chunks), MAX_GRID_AXIS12))


def _device_fn(fn):
    """A small helper called inside kernels: a @triton.jit function on a GPU, a plain Python function under
    the CPU interpreter (which runs kernels as Python, but re-patches triton.language on every call of a
    jit function: that was most of the interpreted run time of these one-line helpers)."""
    return fn if INTERPRETED else triton.jit(fn)


@_device_fn
def _beats(a, b):
    """DESIGN.md's score order: NaN above every number; NaN does not beat NaN (a tie)."""
    return ((a != a) & (b == b)) | (a > b)


@_device_fn
def _ties(a, b):
    return (a == b) | ((a != a) & (b != b))


@_device_fn
def _token_offset(b, n, tok, c):
    """Element offset of token ``tok`` of batch row ``b`` in a contiguous ``[B, n, c]`` tensor, in int64."""
    return (tl.cast(b, tl.int64) * n + tok) * c


@_device_fn
def _row_offset(b, width):
    """Offset of batch row ``b`` in a contiguous ``[B, width]`` tensor, in int64."""
    return tl.cast(b, tl.int64) * width


# ----------------------------------------------------------------------------- bipartite_match
@triton.jit
def _norm_kernel(m_ptr, out_ptr, N, C, TILES, UNITS, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr,
                 ACC: tl.constexpr):
    for unit in range(tl.program_id(0), UNITS, tl.num_programs(0)):
        b = unit // TILES
        tok = (unit % TILES) * BLOCK_T + tl.arange(0, BLOCK_T)
        ss = tl.zeros([BLOCK_T], dtype=ACC)
        for c0 in range(0, C, BLOCK_C):
            ch = c0 + tl.arange(0, BLOCK_C)
            mask = (tok[:, None] < N) & (ch[None, :] < C)
            v = tl.load(m_ptr + _token_offset(b, N, tok[:, None], C) + ch[None, :], mask=mask, other=0.0).to(ACC)
            ss += tl.sum(v * v, axis=1)
        tl.store(out_ptr + _row_offset(b, N) + tok, tl.sqrt(ss), mask=tok < N)


@triton.jit
def _best_match_kernel(m_ptr, norm_ptr, best_ptr, arg_ptr, N, C, NA, NB, FIRST_A, FIRST_B, TILES, UNITS,
                       BLOCK_A: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_C: tl.constexpr, ACC: tl.constexpr):
    """Each A token's most similar B token: first NaN if any, else first maximum."""
    for unit in range(tl.program_id(0), UNITS, tl.num_programs(0)):
        b = unit // TILES
        ia = (unit % TILES) * BLOCK_A + tl.arange(0, BLOCK_A)
        tok_a = FIRST_A + 2 * ia
        norm_a = tl.load(norm_ptr + _row_offset(b, N) + tok_a, mask=ia < NA, other=1.0)
        best = tl.full([BLOCK_A], float("-inf"), ACC)  # real scores are bounded cosines or NaN
        arg = tl.zeros([BLOCK_A], dtype=tl.int32)
        for j0 in range(0, NB, BLOCK_B):
            jb = j0 + tl.arange(0, BLOCK_B)
            tok_b = FIRST_B + 2 * jb
            norm_b = tl.load(norm_ptr + _row_offset(b, N) + tok_b, mask=jb < NB, other=1.0)
            acc = tl.zeros([BLOCK_A, BLOCK_B], dtype=ACC)
            for c0 in range(0, C, BLOCK_C):
                ch = c0 + tl.arange(0, BLOCK_C)
                # unit vectors by division, as the reference does, so that exact ties stay ties
                a = tl.load(m_ptr + _token_offset(b, N, tok_a[:, None], C) + ch[None, :],
                            mask=(ia[:, None] < NA) & (ch[None, :] < C), other=0.0).to(ACC) / norm_a[:, None]
                bt = tl.load(m_ptr + _token_offset(b, N, tok_b[None, :], C) + ch[:, None],
                             mask=(jb[None, :] < NB) & (ch[:, None] < C), other=0.0).to(ACC) / norm_b[None, :]
                acc += tl.dot(a, bt, input_precision="ieee")
            valid = jb[None, :] < NB
            nan = (acc != acc) & valid
            tile_has_nan = tl.max(nan.to(tl.int32), axis=1) > 0
            s = tl.where(valid & (acc == acc), acc, float("-inf"))
            tile_max = tl.max(s, axis=1)
            hit = tl.where(tile_has_nan[:, None], nan, valid & (s == tile_max[:, None]))
            tile_arg = tl.min(tl.where(hit, jb[None, :], 2147483647), axis=1)
            tile_best = tl.where(tile_has_nan, float("nan"), tile_max)
            better = _beats(tile_best, best)  # strict: an earlier tile keeps ties
            arg = tl.where(better, tile_arg, arg)
            best = tl.where(better, tile_best, best)
        tl.store(best_ptr + _row_offset(b, NA) + ia, best, mask=ia < NA)
        tl.store(arg_ptr + _row_offset(b, NA) + ia, arg, mask=ia < NA)


@triton.jit
def _rank_place_kernel(best_ptr, arg_ptr, rank_ptr, src_ptr, dst_ptr, NA, R, FIRST_A, FIRST_B, TILES, UNITS,
                       BLOCK: tl.constexpr):
    """rank_i = #{j: best_j beats best_i, or ties with j < i}: a strict total order on (score, index), so
    the ranks are a permutation even with NaN and ties; the top R become (src, dst) in rank order."""
    for unit in range(tl.program_id(0), UNITS, tl.num_programs(0)):
        b = unit // TILES
        i = (unit % TILES) * BLOCK + tl.arange(0, BLOCK)
        bi = tl.load(best_ptr + _row_offset(b, NA) + i, mask=i < NA, other=0.0)
        rank = tl.zeros([BLOCK], dtype=tl.int32)
        for j0 in range(0, NA, BLOCK):
            j = j0 + tl.arange(0, BLOCK)
            bj = tl.load(best_ptr + _row_offset(b, NA) + j, mask=j < NA, other=0.0)
            ahead = _beats(bj[None, :], bi[:, None]) | (_ties(bj[None, :], bi[:, None]) & (j[None, :] < i[:, None]))
            ahead = ahead & (j[None, :] < NA)
            rank += tl.sum(ahead.to(tl.int32), axis=1)
        tl.store(rank_ptr + _row_offset(b, NA) + i, rank, mask=i < NA)
        arg = tl.load(arg_ptr + _row_offset(b, NA) + i, mask=i < NA, other=0)
        chosen = (i < NA) & (rank < R)
        tl.store(src_ptr + _row_offset(b, R) + rank, (FIRST_A + 2 * i).to(tl.int64), mask=chosen)
        tl.store(dst_ptr + _row_offset(b, R) + rank, (FIRST_B + 2 * arg).to(tl.int64), mask=chosen)


@triton.jit
def _place_unmerged_kernel(rank_ptr, unm_ptr, NA, R, FIRST_A, TILES, UNITS, BLOCK: tl.constexpr):
    """Unmerged A tokens keep their order: position = #{j < i unmerged}."""
    for unit in range(tl.program_id(0), UNITS, tl.num_programs(0)):
        b = unit // TILES
        i = (unit % TILES) * BLOCK + tl.arange(0, BLOCK)
        ri = tl.load(rank_ptr + _row_offset(b, NA) + i, mask=i < NA, other=0)
        pos = tl.zeros([BLOCK], dtype=tl.int32)
        for j0 in range(0, NA, BLOCK):
            j = j0 + tl.arange(0, BLOCK)
            rj = tl.load(rank_ptr + _row_offset(b, NA) + j, mask=j < NA, other=0)
            before = (j[None, :] < i[:, None]) & (rj[None, :] >= R) & (j[None, :] < NA)
            pos += tl.sum(before.to(tl.int32), axis=1)
        tl.store(unm_ptr + _row_offset(b, NA - R) + pos, (FIRST_A + 2 * i).to(tl.int64), mask=(i < NA) & (ri >= R))


@register_op("leanops::bipartite_match_triton", mutates_args={})
def bipartite_match_triton(metric: torch.Tensor, r: int, num_protected: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    bsz, n, c = metric.shape
    na, nb, first_a, first_b = layout(n, num_protected)
    re = effective_r(n, r, num_protected)
    src = metric.new_empty(bsz, re, dtype=torch.long)
    dst = metric.new_empty(bsz, re, dtype=torch.long)
    if re == 0:  # identity: every A token unmerged, ascending; no similarity needed
        unm = torch.arange(first_a, first_a + 2 * na, 2, device=metric.device).expand(bsz, na).contiguous()
        return src, dst, unm
    unm = metric.new_empty(bsz, na - re, dtype=torch.long)
    if bsz == 0:
        return src, dst, unm
    m = metric.contiguous()
    acc_dtype = torch.float64 if metric.dtype == torch.float64 else torch.float32
    norm = metric.new_empty(bsz, n, dtype=acc_dtype)
    best = metric.new_empty(bsz, na, dtype=acc_dtype)
    arg = metric.new_empty(bsz, na, dtype=torch.int32)
    rank = metric.new_empty(bsz, na, dtype=torch.int32)
    block_c, acc = pow2(c, 16, 64), acc_tl_dtype(m)
    tiles = triton.cdiv(n, 32)
    launch(_norm_kernel, launch_grid(bsz * tiles)[:1], m, norm, n, c, tiles, bsz * tiles,
           BLOCK_T=32, BLOCK_C=block_c, ACC=acc)
    tiles = triton.cdiv(na, 32)
    launch(_best_match_kernel, launch_grid(bsz * tiles)[:1], m, norm, best, arg, n, c, na, nb, first_a, first_b,
           tiles, bsz * tiles, BLOCK_A=32, BLOCK_B=32, BLOCK_C=block_c, ACC=acc)
    block = 64
    tiles = triton.cdiv(na, block)
    launch(_rank_place_kernel, launch_grid(bsz * tiles)[:1], best, arg, rank, src, dst, na, re, first_a, first_b,
           tiles, bsz * tiles, BLOCK=block)
    if na > re:
        launch(_place_unmerged_kernel, launch_grid(bsz * tiles)[:1], rank, unm, na, re, first_a, tiles, bsz * tiles,
               BLOCK=block)
    return src, dst, unm


# ----------------------------------------------------------------------------- merge_wavg
def _merges_by_dst(dst_idx: torch.Tensor, first_b: int, nb: int):
    """CSR of the merges into each B token: ``order`` (rows of src_idx) and ``offsets[B, nb+1]``."""
    bsz, r = dst_idx.shape
    pos = (dst_idx - first_b) // 2
    order = torch.sort(pos, dim=1, stable=True).indices
    counts = torch.zeros(bsz, nb, dtype=torch.long, device=dst_idx.device)
    counts.scatter_add_(1, pos, torch.ones_like(pos))
    offsets = torch.cat([counts.new_zeros(bsz, 1), counts.cumsum(1)], dim=1)
    return order.contiguous(), offsets.contiguous()


@triton.jit
def _merge_wavg_kernel(x_ptr, size_ptr, src_ptr, unm_ptr, order_ptr, offsets_ptr, cg_ptr, tg_ptr, out_ptr,
                       size_out_ptr, N, C, M, R, NU, NB, P, FIRST_B, ROWS,
                       HAS_SIZE: tl.constexpr, HAS_GATE: tl.constexpr, BLOCK_C: tl.constexpr, ACC: tl.constexpr):
    """One output slot per row (row = b * M + s): protected, unmerged A, or B with everything merged into it."""
    for row in range(tl.program_id(0), ROWS, tl.num_programs(0)):
        b = row // M
        s = row % M
        if s < P + NU:
            tok = tl.cast(s, tl.int64)
            if s >= P:
                tok = tl.load(unm_ptr + _row_offset(b, NU) + (s - P))
            if tl.program_id(1) == 0:
                w = 1.0
                if HAS_SIZE:
                    w = tl.load(size_ptr + _row_offset(b, N) + tok)
                tl.store(size_out_ptr + _row_offset(b, M) + s, w)
            for c0 in range(tl.program_id(1) * BLOCK_C, C, tl.num_programs(1) * BLOCK_C):
                ch = c0 + tl.arange(0, BLOCK_C)
                v = tl.load(x_ptr + _token_offset(b, N, tok, C) + ch, mask=ch < C)
                tl.store(out_ptr + _token_offset(b, M, s, C) + ch, v, mask=ch < C)
        else:
            j = s - P - NU
            tok = FIRST_B + 2 * j
            start = tl.load(offsets_ptr + _row_offset(b, NB + 1) + j)
            end = tl.load(offsets_ptr + _row_offset(b, NB + 1) + j + 1)
            w = tl.full([], 1.0, ACC)
            if HAS_SIZE:
                w = tl.load(size_ptr + _row_offset(b, N) + tok).to(ACC)
            den = w
            for e in range(start, end):
                if HAS_SIZE:
                    k = tl.load(order_ptr + _row_offset(b, R) + e)
                    den += tl.load(size_ptr + _row_offset(b, N) + tl.load(src_ptr + _row_offset(b, R) + k)).to(ACC)
                else:
                    den += 1.0
            if tl.program_id(1) == 0:
                tl.store(size_out_ptr + _row_offset(b, M) + s, den.to(tl.float32))
            for c0 in range(tl.program_id(1) * BLOCK_C, C, tl.num_programs(1) * BLOCK_C):
                ch = c0 + tl.arange(0, BLOCK_C)
                cm = ch < C
                num = w * tl.load(x_ptr + _token_offset(b, N, tok, C) + ch, mask=cm, other=0.0).to(ACC)
                if HAS_GATE:
                    gate = tl.load(cg_ptr + _row_offset(b, C) + ch, mask=cm, other=0.0).to(ACC)
                for e in range(start, end):
                    k = tl.load(order_ptr + _row_offset(b, R) + e)
                    stok = tl.load(src_ptr + _row_offset(b, R) + k)
                    ws = 1.0
                    if HAS_SIZE:
                        ws = tl.load(size_ptr + _row_offset(b, N) + stok).to(ACC)
                    v = tl.load(x_ptr + _token_offset(b, N, stok, C) + ch, mask=cm, other=0.0).to(ACC)
                    if HAS_GATE:
                        t = tl.load(tg_ptr + _row_offset(b, R) + k).to(ACC)
                        v = v * (1.0 + gate * t)
                    num += ws * v
                val = tl.where(den > 0, num / tl.where(den > 0, den, 1.0), 0.0)  # empty (padding) slot -> 0
                tl.store(out_ptr + _token_offset(b, M, s, C) + ch, val.to(out_ptr.dtype.element_ty), mask=cm)


def _block_c(c: int) -> int:
    return pow2(c, 16, BLOCK_C_MAX)


@register_op("leanops::merge_wavg_triton", mutates_args={})
def merge_wavg_triton(x: torch.Tensor, size: torch.Tensor | None, src_idx: torch.Tensor, dst_idx: torch.Tensor,
                      unm_idx: torch.Tensor, num_protected: int, channel_gate: torch.Tensor | None,
                      token_gate: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    bsz, n, c = x.shape
    r, nu = src_idx.shape[1], unm_idx.shape[1]
    if r == 0:  # nothing merged: the identity, tokens in their original order
        size_out = size.clone(memory_format=torch.contiguous_format) if size is not None else \
            x.new_ones(bsz, n, dtype=torch.float32)
        return x.clone(memory_format=torch.contiguous_format), size_out
    _, nb, _, first_b = layout(n, num_protected)
    m = n - r
    out = x.new_empty(bsz, m, c)
    size_out = x.new_empty(bsz, m, dtype=torch.float32)
    if bsz == 0:
        return out, size_out
    order, offsets = _merges_by_dst(dst_idx, first_b, nb)
    xc = x.contiguous()
    size_c = size.contiguous() if size is not None else size_out  # dummy pointer when absent
    cg = channel_gate.contiguous() if channel_gate is not None else xc
    tg = token_gate.contiguous() if token_gate is not None else xc
    block_c = _block_c(c)
    launch(_merge_wavg_kernel, launch_grid(bsz * m, triton.cdiv(c, block_c)),
           xc, size_c, src_idx.contiguous(), unm_idx.contiguous(), order, offsets, cg, tg, out, size_out,
           n, c, m, r, nu, nb, num_protected, first_b, bsz * m,
           HAS_SIZE=size is not None, HAS_GATE=channel_gate is not None, BLOCK_C=block_c, ACC=acc_tl_dtype(x))
    return out, size_out


@triton.jit
def _merge_wavg_backward_kernel(g_ptr, x_ptr, size_ptr, size_out_ptr, src_ptr, dst_ptr, unm_ptr, cg_ptr, tg_ptr,
                                gx_ptr, gtg_ptr, N, C, M, R, NU, P, FIRST_B, ROWS,
                                HAS_SIZE: tl.constexpr, HAS_GATE: tl.constexpr, BLOCK_C: tl.constexpr,
                                ACC: tl.constexpr):
    """One row of grad_x per row (row = b * N + i): i < M is output slot i (protected, unmerged or B),
    i >= M merged token q = i - M. Divides by the forward's size_out; loops over all channels
    (the token-gate gradient sums over them)."""
    for row in range(tl.program_id(0), ROWS, tl.num_programs(0)):
        b = row // N
        i = row % N
        if i < P + NU:
            tok = tl.cast(i, tl.int64)
            if i >= P:
                tok = tl.load(unm_ptr + _row_offset(b, NU) + (i - P))
            for c0 in range(0, C, BLOCK_C):
                ch = c0 + tl.arange(0, BLOCK_C)
                g = tl.load(g_ptr + _token_offset(b, M, i, C) + ch, mask=ch < C)
                tl.store(gx_ptr + _token_offset(b, N, tok, C) + ch, g, mask=ch < C)
        elif i < M:  # a B token: its own share of its slot
            tok = FIRST_B + 2 * (i - P - NU)
            den = tl.load(size_out_ptr + _row_offset(b, M) + i).to(ACC)
            w = tl.full([], 1.0, ACC)
            if HAS_SIZE:
                w = tl.load(size_ptr + _row_offset(b, N) + tok).to(ACC)
            f = tl.where(den > 0, w / tl.where(den > 0, den, 1.0), 0.0)
            for c0 in range(0, C, BLOCK_C):
                ch = c0 + tl.arange(0, BLOCK_C)
                g = tl.load(g_ptr + _token_offset(b, M, i, C) + ch, mask=ch < C, other=0.0).to(ACC)
                tl.store(gx_ptr + _token_offset(b, N, tok, C) + ch, (g * f).to(gx_ptr.dtype.element_ty), mask=ch < C)
        else:  # merged token q
            q = i - M
            stok = tl.load(src_ptr + _row_offset(b, R) + q)
            slot = P + NU + (tl.load(dst_ptr + _row_offset(b, R) + q) - FIRST_B) // 2
            den = tl.load(size_out_ptr + _row_offset(b, M) + slot).to(ACC)
            ws = tl.full([], 1.0, ACC)
            if HAS_SIZE:
                ws = tl.load(size_ptr + _row_offset(b, N) + stok).to(ACC)
            f = tl.where(den > 0, ws / tl.where(den > 0, den, 1.0), 0.0)
            if HAS_GATE:
                t = tl.load(tg_ptr + _row_offset(b, R) + q).to(ACC)
            gt = tl.zeros([BLOCK_C], dtype=ACC)
            for c0 in range(0, C, BLOCK_C):
                ch = c0 + tl.arange(0, BLOCK_C)
                cm = ch < C
                gf = tl.load(g_ptr + _token_offset(b, M, slot, C) + ch, mask=cm, other=0.0).to(ACC) * f
                if HAS_GATE:
                    gate = tl.load(cg_ptr + _row_offset(b, C) + ch, mask=cm, other=0.0).to(ACC)
                    v = tl.load(x_ptr + _token_offset(b, N, stok, C) + ch, mask=cm, other=0.0).to(ACC)
                    gt += gf * v * gate
                    gf = gf * (1.0 + gate * t)
                tl.store(gx_ptr + _token_offset(b, N, stok, C) + ch, gf.to(gx_ptr.dtype.element_ty), mask=cm)
            if HAS_GATE:
                tl.store(gtg_ptr + _row_offset(b, R) + q, tl.sum(gt, axis=0).to(gtg_ptr.dtype.element_ty))


@triton.jit
def _channel_gate_grad_kernel(g_ptr, x_ptr, size_ptr, size_out_ptr, src_ptr, dst_ptr, tg_ptr, gcg_ptr,
                              N, C, M, R, NU, P, FIRST_B, TILES, UNITS, HAS_SIZE: tl.constexpr,
                              BLOCK_C: tl.constexpr, ACC: tl.constexpr):
    """d/d channel_gate[c] = sum over merged tokens k (in order) of g[slot_k, c] * w_k / size_out[slot_k]
    * x_k[c] * token_gate_k."""
    for unit in range(tl.program_id(0), UNITS, tl.num_programs(0)):
        b = unit // TILES
        ch = (unit % TILES) * BLOCK_C + tl.arange(0, BLOCK_C)
        cm = ch < C
        acc = tl.zeros([BLOCK_C], dtype=ACC)
        for k in range(0, R):
            stok = tl.load(src_ptr + _row_offset(b, R) + k)
            slot = P + NU + (tl.load(dst_ptr + _row_offset(b, R) + k) - FIRST_B) // 2
            ws = 1.0
            if HAS_SIZE:
                ws = tl.load(size_ptr + _row_offset(b, N) + stok).to(ACC)
            den = tl.load(size_out_ptr + _row_offset(b, M) + slot).to(ACC)
            f = tl.where(den > 0, ws / tl.where(den > 0, den, 1.0), 0.0)
            g = tl.load(g_ptr + _token_offset(b, M, slot, C) + ch, mask=cm, other=0.0).to(ACC)
            v = tl.load(x_ptr + _token_offset(b, N, stok, C) + ch, mask=cm, other=0.0).to(ACC)
            acc += g * f * v * tl.load(tg_ptr + _row_offset(b, R) + k).to(ACC)
        tl.store(gcg_ptr + _row_offset(b, C) + ch, acc.to(gcg_ptr.dtype.element_ty), mask=cm)


@register_op("leanops::merge_wavg_backward_triton", mutates_args={})
def merge_wavg_backward_triton(grad_out: torch.Tensor, x: torch.Tensor, size: torch.Tensor | None,
                               size_out: torch.Tensor, src_idx: torch.Tensor, dst_idx: torch.Tensor,
                               unm_idx: torch.Tensor, num_protected: int, channel_gate: torch.Tensor | None,
                               token_gate: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    bsz, n, c = x.shape
    r, nu = src_idx.shape[1], unm_idx.shape[1]
    m = n - r
    gated = channel_gate is not None
    # contiguous outputs, as the fake kernels say
    gcg = x.new_zeros(channel_gate.shape) if gated else x.new_empty(0)
    gtg = x.new_zeros(token_gate.shape) if gated else x.new_empty(0)
    if r == 0:  # the forward was the identity (gate gradients are zero)
        return grad_out.to(x.dtype).clone(memory_format=torch.contiguous_format), gcg, gtg
    gx = x.new_empty(x.shape)
    if bsz == 0:
        return gx, gcg, gtg
    _, _, _, first_b = layout(n, num_protected)
    g = grad_out.to(x.dtype).contiguous()
    xc = x.contiguous()
    size_c = size.contiguous() if size is not None else gx  # dummy pointer when absent
    size_out_c = size_out.contiguous()
    cg = channel_gate.contiguous() if gated else xc
    tg = token_gate.contiguous() if gated else xc
    src_c, dst_c = src_idx.contiguous(), dst_idx.contiguous()
    block_c, acc = _block_c(c), acc_tl_dtype(x)
    launch(_merge_wavg_backward_kernel, launch_grid(bsz * n)[:1],
           g, xc, size_c, size_out_c, src_c, dst_c, unm_idx.contiguous(), cg, tg, gx, gtg if gated else gx,
           n, c, m, r, nu, num_protected, first_b, bsz * n,
           HAS_SIZE=size is not None, HAS_GATE=gated, BLOCK_C=block_c, ACC=acc)
    if gated:
        block_c = pow2(c, 16, 256)
        tiles = triton.cdiv(c, block_c)
        launch(_channel_gate_grad_kernel, launch_grid(bsz * tiles)[:1],
               g, xc, size_c, size_out_c, src_c, dst_c, tg, gcg, n, c, m, r, nu, num_protected, first_b,
               tiles, bsz * tiles, HAS_SIZE=size is not None, BLOCK_C=block_c, ACC=acc)
    return gx, gcg, gtg


# ----------------------------------------------------------------------------- slot map, unmerge
@triton.jit
def _slot_map_fixed_kernel(slot_ptr, N, P, NU, FIRST_B, TILES, UNITS, BLOCK: tl.constexpr):
    """Protected tokens keep their slot; B tokens go to P + NU + their position in B."""
    for unit in range(tl.program_id(0), UNITS, tl.num_programs(0)):
        b = unit // TILES
        i = (unit % TILES) * BLOCK + tl.arange(0, BLOCK)
        is_b = (i >= P) & (i % 2 == FIRST_B % 2)
        slot = tl.where(i < P, i, P + NU + (i - FIRST_B) // 2)
        tl.store(slot_ptr + _row_offset(b, N) + i, slot.to(tl.int64), mask=(i < N) & ((i < P) | is_b))


@triton.jit
def _slot_map_a_kernel(slot_ptr, src_ptr, dst_ptr, unm_ptr, N, R, NU, P, FIRST_B, TILES, UNITS,
                       BLOCK: tl.constexpr):
    for unit in range(tl.program_id(0), UNITS, tl.num_programs(0)):
        b = unit // TILES
        k = (unit % TILES) * BLOCK + tl.arange(0, BLOCK)
        u = tl.load(unm_ptr + _row_offset(b, NU) + k, mask=k < NU, other=0)
        tl.store(slot_ptr + _row_offset(b, N) + u, (P + k).to(tl.int64), mask=k < NU)
        s = tl.load(src_ptr + _row_offset(b, R) + k, mask=k < R, other=0)
        d = tl.load(dst_ptr + _row_offset(b, R) + k, mask=k < R, other=0)
        tl.store(slot_ptr + _row_offset(b, N) + s, (P + NU + (d - FIRST_B) // 2).to(tl.int64), mask=k < R)


@register_op("leanops::merge_slot_map_triton", mutates_args={})
def merge_slot_map_triton(src_idx: torch.Tensor, dst_idx: torch.Tensor, unm_idx: torch.Tensor, num_protected: int,
                          n: int) -> torch.Tensor:
    bsz, r = src_idx.shape
    nu = unm_idx.shape[1]
    if r == 0:  # nothing merged: the identity
        return torch.arange(n, device=src_idx.device).expand(bsz, n).contiguous()
    _, _, _, first_b = layout(n, num_protected)
    slot = src_idx.new_empty(bsz, n)
    if bsz == 0:
        return slot
    block = 64
    tiles = triton.cdiv(n, block)
    launch(_slot_map_fixed_kernel, launch_grid(bsz * tiles)[:1], slot, n, num_protected, nu, first_b, tiles,
           bsz * tiles, BLOCK=block)
    tiles = triton.cdiv(max(r, nu), block)
    launch(_slot_map_a_kernel, launch_grid(bsz * tiles)[:1], slot, src_idx.contiguous(), dst_idx.contiguous(),
           unm_idx.contiguous(), n, r, nu, num_protected, first_b, tiles, bsz * tiles, BLOCK=block)
    return slot


@triton.jit
def _gather_rows_kernel(x_ptr, idx_ptr, out_ptr, M, N, C, ROWS, BLOCK_C: tl.constexpr):
    """out[b, i] = x[b, idx[b, i]], one row per (b, i)."""
    for row in range(tl.program_id(0), ROWS, tl.num_programs(0)):
        b = row // N
        i = row % N
        s = tl.load(idx_ptr + _row_offset(b, N) + i)
        for c0 in range(tl.program_id(1) * BLOCK_C, C, tl.num_programs(1) * BLOCK_C):
            ch = c0 + tl.arange(0, BLOCK_C)
            v = tl.load(x_ptr + _token_offset(b, M, s, C) + ch, mask=ch < C)
            tl.store(out_ptr + _token_offset(b, N, i, C) + ch, v, mask=ch < C)


@register_op("leanops::unmerge_triton", mutates_args={})
def unmerge_triton(x_merged: torch.Tensor, slot_map: torch.Tensor) -> torch.Tensor:
    bsz, m, c = x_merged.shape
    n = slot_map.shape[1]
    out = x_merged.new_empty(bsz, n, c)
    if bsz == 0 or n == 0 or c == 0:
        return out
    block_c = _block_c(c)
    launch(_gather_rows_kernel, launch_grid(bsz * n, triton.cdiv(c, block_c)),
           x_merged.contiguous(), slot_map.contiguous(), out, m, n, c, bsz * n, BLOCK_C=block_c)
    return out


@triton.jit
def _sum_rows_kernel(g_ptr, order_ptr, offsets_ptr, out_ptr, M, N, C, ROWS, BLOCK_C: tl.constexpr,
                     ACC: tl.constexpr):
    """out[b, s] = sum of the grad rows of the tokens in slot s (CSR by slot, fixed order)."""
    for row in range(tl.program_id(0), ROWS, tl.num_programs(0)):
        b = row // M
        s = row % M
        start = tl.load(offsets_ptr + _row_offset(b, M + 1) + s)
        end = tl.load(offsets_ptr + _row_offset(b, M + 1) + s + 1)
        for c0 in range(tl.program_id(1) * BLOCK_C, C, tl.num_programs(1) * BLOCK_C):
            ch = c0 + tl.arange(0, BLOCK_C)
            acc = tl.zeros([BLOCK_C], dtype=ACC)
            for e in range(start, end):
                i = tl.load(order_ptr + _row_offset(b, N) + e)
                acc += tl.load(g_ptr + _token_offset(b, N, i, C) + ch, mask=ch < C, other=0.0).to(ACC)
            tl.store(out_ptr + _token_offset(b, M, s, C) + ch, acc.to(out_ptr.dtype.element_ty), mask=ch < C)


@register_op("leanops::unmerge_backward_triton", mutates_args={})
def unmerge_backward_triton(grad: torch.Tensor, slot_map: torch.Tensor, m: int) -> torch.Tensor:
    bsz, n, c = grad.shape
    out = grad.new_zeros(bsz, m, c)
    if bsz == 0 or n == 0 or m == 0 or c == 0:
        return out
    order = torch.sort(slot_map, dim=1, stable=True).indices.contiguous()
    counts = torch.zeros(bsz, m, dtype=torch.long, device=grad.device)
    counts.scatter_add_(1, slot_map, torch.ones_like(slot_map))
    offsets = torch.cat([counts.new_zeros(bsz, 1), counts.cumsum(1)], dim=1).contiguous()
    block_c = _block_c(c)
    launch(_sum_rows_kernel, launch_grid(bsz * m, triton.cdiv(c, block_c)),
           grad.contiguous(), order, offsets, out, m, n, c, bsz * m, BLOCK_C=block_c, ACC=acc_tl_dtype(grad))
    return out

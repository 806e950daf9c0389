"""Triton kernels of the pool family: ``torch.ops.leanops.jagged_attention_pool{,_backward}_triton``.

One program per (row, head) pair walks the row's behaviours in blocks of BLOCK_T with an online softmax.
Head dims are processed in chunks of at most 128 (BLOCK_D, BLOCK_DV), so any D and Dv work: the logits
loop over D chunks, and a Dv larger than one chunk takes one pass over the row per chunk (recomputing
the logits). Offsets are int64 (program ids are cast before any multiplication). NaN/inf follow the
reference's contract (docs/DESIGN.md, pool); ``tl.max`` drops NaN on GPUs, so NaN is tracked apart.
Runs on CPU under ``TRITON_INTERPRET=1``.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import acc_tl_dtype, launch, pow2, register_op

BLOCK_T = 32
MAX_BLOCK_D = 128  # register tile [BLOCK_T, BLOCK_D] stays small; larger dims loop over chunks
MAX_PROGRAMS = 2**31 - 1  # grid axis-0 limit; beyond it a program strides over pairs


def pool_blocks(d: int, dv: int) -> dict:
    """Block sizes: powers of two in [16, MAX_BLOCK_D] covering D and Dv, and the number of chunks of each."""
    block_d, block_dv = pow2(d, 16, MAX_BLOCK_D), pow2(dv, 16, MAX_BLOCK_D)
    return dict(BLOCK_T=BLOCK_T, BLOCK_D=block_d, BLOCK_DV=block_dv,
                d_passes=max(1, triton.cdiv(d, block_d)), dv_passes=max(1, triton.cdiv(dv, block_dv)))


def pool_grid(pairs: int) -> tuple[int]:
    """One program per (row, head) pair on axis 0 (axis 1 would stop at 65535), capped at its limit."""
    return (max(1, min(pairs, MAX_PROGRAMS)),)


@triton.jit
def _pair(bh, H):
    """(row, head) of pair bh, in int64 so that every offset derived from them is int64."""
    bh = tl.cast(bh, tl.int64)  # (tl.cast: under the interpreter a loop index is a Python int)
    return bh, bh // H, bh % H


@triton.jit
def _logits(q_row_ptr, k_ptr, bias_ptr, freq_ptr, t, tmask, h, H, D, scale, BLOCK_T: tl.constexpr,
            BLOCK_D: tl.constexpr, d_passes, HAS_BIAS: tl.constexpr, HAS_FREQ: tl.constexpr,
            ACC: tl.constexpr):
    """(raw logits, logits after the frequency transform) of a block of behaviours t (int64) for head h;
    -inf outside the row (tmask false)."""
    dot = tl.zeros([BLOCK_T], dtype=ACC)
    for i in range(d_passes):
        dk = i * BLOCK_D + tl.arange(0, BLOCK_D)
        dmask = dk < D
        q = tl.load(q_row_ptr + dk, mask=dmask, other=0.0).to(ACC)
        k = tl.load(k_ptr + (t[:, None] * H + h) * D + dk[None, :], mask=tmask[:, None] & dmask[None, :],
                    other=0.0).to(ACC)
        dot += tl.sum(k * q[None, :], axis=1)
    raw = dot * scale
    if HAS_BIAS:
        raw += tl.load(bias_ptr + t * H + h, mask=tmask, other=0.0).to(ACC)
    s = raw
    if HAS_FREQ:
        x = raw + tl.load(freq_ptr + t * H + h, mask=tmask, other=0.0).to(ACC)
        s = raw - (tl.maximum(x, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(x))))  # softplus(x), +inf at +inf
    return raw, tl.where(tmask, s, float("-inf"))


@triton.jit
def _pool_fwd_kernel(q_ptr, k_ptr, v_ptr, off_ptr, bias_ptr, freq_ptr, pl_ptr, pv_ptr, out_ptr, lse_ptr,
                     pairs, H, D, DV, d_passes, dv_passes, scale, HAS_BIAS: tl.constexpr, HAS_FREQ: tl.constexpr,
                     HAS_PRIOR: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
                     BLOCK_DV: tl.constexpr, ACC: tl.constexpr):
    zero1 = tl.zeros([1], dtype=tl.int32)
    for pid in range(tl.program_id(0), pairs, tl.num_programs(0)):
        bh, b, h = _pair(pid, H)
        start = tl.load(off_ptr + b)
        end = tl.load(off_ptr + b + 1)
        for vp in range(dv_passes):  # one pass over the row per Dv chunk
            dvr = vp * BLOCK_DV + tl.arange(0, BLOCK_DV)
            vmask = dvr < DV
            m = tl.full([1], float("-inf"), ACC)
            l = tl.zeros([1], dtype=ACC)  # 0: nothing summed yet; else >= 1 or NaN
            acc = tl.zeros([BLOCK_DV], dtype=ACC)
            if HAS_PRIOR:  # the prior is the first entry (masked when its logit is -inf)
                pl = tl.load(pl_ptr + bh + zero1).to(ACC)
                p_masked = pl == float("-inf")
                m = tl.where(p_masked, float("-inf"), pl)
                l = tl.where(p_masked, 0.0, tl.exp(pl - m))  # 1; NaN for a NaN or +inf logit
                pv = tl.load(pv_ptr + bh * DV + dvr, mask=vmask & ~p_masked, other=0.0).to(ACC)
                acc = l * pv
            for t0 in range(start, end, BLOCK_T):
                t = t0 + tl.arange(0, BLOCK_T)
                tmask = t < end
                _raw, s = _logits(q_ptr + bh * D, k_ptr, bias_ptr, freq_ptr, t, tmask, h, H, D, scale, BLOCK_T,
                                  BLOCK_D, d_passes, HAS_BIAS, HAS_FREQ, ACC)
                masked = s == float("-inf")  # masked entries (and those past the row): values not read
                # running max, NaN-sticky (tl.max drops NaN on GPUs, so NaN is counted apart)
                is_nan = s != s
                any_nan = tl.sum(is_nan.to(tl.int32), axis=0) > 0
                block_max = tl.max(tl.where(is_nan, float("-inf"), s), axis=0)
                m_new = tl.where(any_nan | (m != m), float("nan"), tl.maximum(m, block_max))
                alpha = tl.where((l == 0) | (m_new == m), 1.0, tl.exp(m - m_new))
                p = tl.where(masked, 0.0, tl.exp(s - m_new))
                v = tl.load(v_ptr + (t[:, None] * H + h) * DV + dvr[None, :],
                            mask=~masked[:, None] & vmask[None, :], other=0.0).to(ACC)
                l = l * alpha + tl.sum(p, axis=0)
                acc = acc * alpha + tl.sum(p[:, None] * v, axis=0)
                m = m_new
            empty = l == 0  # every entry masked, or none
            l_safe = tl.where(empty, 1.0, l)
            out = tl.where(empty, 0.0, acc / l_safe)
            tl.store(out_ptr + bh * DV + dvr, out.to(out_ptr.dtype.element_ty), mask=vmask)
            lse = tl.where(empty, float("-inf"), m + tl.log(l_safe))
            tl.store(lse_ptr + bh + zero1, lse.to(lse_ptr.dtype.element_ty), mask=(zero1 + vp) == 0)


@triton.jit
def _pool_bwd_kernel(go_ptr, gl_ptr, q_ptr, k_ptr, v_ptr, off_ptr, bias_ptr, freq_ptr, pl_ptr, pv_ptr, out_ptr,
                     lse_ptr, dq_ptr, dk_ptr, dv_ptr, dbias_ptr, dfreq_ptr, dpl_ptr, dpv_ptr, pairs, H, D, DV,
                     d_passes, dv_passes, scale,
                     HAS_GLSE: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_FREQ: tl.constexpr,
                     HAS_PRIOR: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
                     BLOCK_DV: tl.constexpr, ACC: tl.constexpr):
    """Recomputes each probability from lse; every behaviour belongs to one row, so dk/dv need no atomics.
    dq accumulates one D chunk per pass over the row; dv, dbias and dfreq are stored on the first pass. A
    masked entry has p = 0, ds = 0 and its value is not read (dq, dk still take 0 * k, 0 * q, as autograd)."""
    zero1 = tl.zeros([1], dtype=tl.int32)
    for pid in range(tl.program_id(0), pairs, tl.num_programs(0)):
        bh, b, h = _pair(pid, H)
        lse = tl.load(lse_ptr + bh + zero1).to(ACC)
        gl = tl.zeros([1], dtype=ACC)
        if HAS_GLSE:
            gl = tl.load(gl_ptr + bh + zero1).to(ACC)
        delta = tl.zeros([1], dtype=ACC)  # dout . out
        for vp in range(dv_passes):
            dvr = vp * BLOCK_DV + tl.arange(0, BLOCK_DV)
            go = tl.load(go_ptr + bh * DV + dvr, mask=dvr < DV, other=0.0).to(ACC)
            out = tl.load(out_ptr + bh * DV + dvr, mask=dvr < DV, other=0.0).to(ACC)
            delta += tl.sum(go * out, axis=0)
        start = tl.load(off_ptr + b)
        end = tl.load(off_ptr + b + 1)
        for dp in range(d_passes):
            dk_r = dp * BLOCK_D + tl.arange(0, BLOCK_D)
            dmask = dk_r < D
            first = (zero1 + dp) == 0
            q = tl.load(q_ptr + bh * D + dk_r, mask=dmask, other=0.0).to(ACC)
            dq = tl.zeros([BLOCK_D], dtype=ACC)
            for t0 in range(start, end, BLOCK_T):
                t = t0 + tl.arange(0, BLOCK_T)
                tmask = t < end
                raw, s = _logits(q_ptr + bh * D, k_ptr, bias_ptr, freq_ptr, t, tmask, h, H, D, scale, BLOCK_T,
                                 BLOCK_D, d_passes, HAS_BIAS, HAS_FREQ, ACC)
                masked = s == float("-inf")
                p = tl.where(masked, 0.0, tl.exp(s - lse))
                gv = tl.zeros([BLOCK_T], dtype=ACC)
                for vp in range(dv_passes):
                    dvr = vp * BLOCK_DV + tl.arange(0, BLOCK_DV)
                    vmask = dvr < DV
                    go = tl.load(go_ptr + bh * DV + dvr, mask=vmask, other=0.0).to(ACC)
                    v = tl.load(v_ptr + (t[:, None] * H + h) * DV + dvr[None, :],
                                mask=~masked[:, None] & vmask[None, :], other=0.0).to(ACC)
                    gv += tl.sum(v * go[None, :], axis=1)
                    tl.store(dv_ptr + (t[:, None] * H + h) * DV + dvr[None, :],
                             (p[:, None] * go[None, :]).to(dv_ptr.dtype.element_ty),
                             mask=tmask[:, None] & vmask[None, :] & first[:, None])
                ds_after = tl.where(masked, 0.0, p * (gv - delta) + p * gl)
                ds = ds_after
                if HAS_FREQ:
                    sg = tl.sigmoid(raw + tl.load(freq_ptr + t * H + h, mask=tmask, other=0.0).to(ACC))
                    # lanes past the row end have raw = 0 * q, NaN when q is infinite: keep them out
                    ds = tl.where(masked, 0.0, ds_after * (1.0 - sg))
                    dfreq = tl.where(masked, 0.0, -ds_after * sg)
                    tl.store(dfreq_ptr + t * H + h, dfreq.to(dfreq_ptr.dtype.element_ty),
                             mask=tmask & first)
                if HAS_BIAS:
                    tl.store(dbias_ptr + t * H + h, ds.to(dbias_ptr.dtype.element_ty), mask=tmask & first)
                k = tl.load(k_ptr + (t[:, None] * H + h) * D + dk_r[None, :], mask=tmask[:, None] & dmask[None, :],
                            other=0.0).to(ACC)
                tl.store(dk_ptr + (t[:, None] * H + h) * D + dk_r[None, :],
                         (scale * ds[:, None] * q[None, :]).to(dk_ptr.dtype.element_ty),
                         mask=tmask[:, None] & dmask[None, :])
                dq += tl.sum(scale * ds[:, None] * k, axis=0)
            tl.store(dq_ptr + bh * D + dk_r, dq.to(dq_ptr.dtype.element_ty), mask=dmask)
        if HAS_PRIOR:
            pl = tl.load(pl_ptr + bh + zero1).to(ACC)
            p_masked = pl == float("-inf")  # a masked prior's value is not read
            p0 = tl.where(p_masked, 0.0, tl.exp(pl - lse))
            gv0 = tl.zeros([1], dtype=ACC)
            for vp in range(dv_passes):
                dvr = vp * BLOCK_DV + tl.arange(0, BLOCK_DV)
                vmask = dvr < DV
                go = tl.load(go_ptr + bh * DV + dvr, mask=vmask, other=0.0).to(ACC)
                pv = tl.load(pv_ptr + bh * DV + dvr, mask=vmask & ~p_masked, other=0.0).to(ACC)
                tl.store(dpv_ptr + bh * DV + dvr, (p0 * go).to(dpv_ptr.dtype.element_ty), mask=vmask)
                gv0 += tl.sum(pv * go, axis=0)
            dpl = tl.where(p_masked, 0.0, p0 * (gv0 - delta) + p0 * gl)
            tl.store(dpl_ptr + bh + zero1, dpl.to(dpl_ptr.dtype.element_ty))


def _lse_dtype(q: torch.Tensor) -> torch.dtype:
    return torch.float64 if q.dtype == torch.float64 else torch.float32


@register_op("leanops::jagged_attention_pool_triton", mutates_args={})
def jagged_attention_pool_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, offsets: torch.Tensor,
                                 scale: float, bias: torch.Tensor | None, freq_c: torch.Tensor | None,
                                 prior_logit: torch.Tensor | None,
                                 prior_value: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    bsz, heads, d = q.shape
    dv = v.shape[2]
    out = q.new_empty(bsz, heads, dv)
    lse = q.new_empty(bsz, heads, dtype=_lse_dtype(q))
    if bsz == 0 or heads == 0:
        return out, lse
    qc = q.contiguous()
    dummy = qc
    opt = lambda x: x.contiguous() if x is not None else dummy  # noqa: E731
    launch(_pool_fwd_kernel, pool_grid(bsz * heads), qc, k.contiguous(), v.contiguous(), offsets.contiguous(),
           opt(bias), opt(freq_c), opt(prior_logit), opt(prior_value), out, lse, bsz * heads, heads, d, dv,
           scale=float(scale), HAS_BIAS=bias is not None, HAS_FREQ=freq_c is not None, HAS_PRIOR=prior_logit is not None,
           ACC=acc_tl_dtype(q), **pool_blocks(d, dv))
    return out, lse


@register_op("leanops::jagged_attention_pool_backward_triton", mutates_args={})
def jagged_attention_pool_backward_triton(
        grad_out: torch.Tensor, grad_lse: torch.Tensor | None, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
        offsets: torch.Tensor, scale: float, bias: torch.Tensor | None, freq_c: torch.Tensor | None,
        prior_logit: torch.Tensor | None, prior_value: torch.Tensor | None, out: torch.Tensor, lse: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    bsz, heads, d = q.shape
    t, dv = v.shape[0], v.shape[2]
    empty = lambda: q.new_empty(0)  # noqa: E731  a fresh one each: outputs must not alias
    dq = q.new_empty(bsz, heads, d)
    # zero-filled: every behaviour is written by its row's program, but zeros keep unvisited ones defined
    dk = q.new_zeros(t, heads, d)
    dvv = q.new_zeros(t, heads, dv)
    dbias = q.new_zeros(t, heads) if bias is not None else empty()
    dfreq = q.new_zeros(t, heads) if freq_c is not None else empty()
    dpl = q.new_empty(bsz, heads) if prior_logit is not None else empty()
    dpv = q.new_empty(bsz, heads, dv) if prior_value is not None else empty()
    if bsz == 0 or heads == 0:
        return dq, dk, dvv, dbias, dfreq, dpl, dpv
    qc = q.contiguous()
    dummy = qc
    opt = lambda x: x.contiguous() if x is not None else dummy  # noqa: E731
    lse_dtype = _lse_dtype(q)
    launch(_pool_bwd_kernel, pool_grid(bsz * heads), grad_out.to(q.dtype).contiguous(),
           grad_lse.to(lse_dtype).contiguous() if grad_lse is not None else dummy, qc, k.contiguous(),
           v.contiguous(), offsets.contiguous(), opt(bias), opt(freq_c), opt(prior_logit), opt(prior_value),
           out.to(q.dtype).contiguous(), lse.to(lse_dtype).contiguous(), dq, dk, dvv,
           dbias if bias is not None else dummy, dfreq if freq_c is not None else dummy,
           dpl if prior_logit is not None else dummy, dpv if prior_value is not None else dummy,
           bsz * heads, heads, d, dv, scale=float(scale),
           HAS_GLSE=grad_lse is not None, HAS_BIAS=bias is not None, HAS_FREQ=freq_c is not None,
           HAS_PRIOR=prior_logit is not None, ACC=acc_tl_dtype(q), **pool_blocks(d, dv))
    return dq, dk, dvv, dbias, dfreq, dpl, dpv


__all__ = ["jagged_attention_pool_triton", "jagged_attention_pool_backward_triton", "pool_blocks", "pool_grid"]

"""Triton kernels of the pool family: ``torch.ops.leanops.jagged_attention_pool{,_backward}_triton``.

One program per (row, head) walks the row's behaviours in blocks with an online softmax; any head
dim D (padded to a power of two inside the kernel, masked). Runs on CPU under ``TRITON_INTERPRET=1``.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import acc_tl_dtype, launch, pow2, register_op


@triton.jit
def _softplus(x):
    return tl.maximum(x, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(x)))


@triton.jit
def _logits(q, k_ptr, bias_ptr, freq_ptr, t, tmask, h, H, D, scale, dk, dmask,
            HAS_BIAS: tl.constexpr, HAS_FREQ: tl.constexpr, ACC: tl.constexpr):
    """(raw logits, logits after the frequency transform) of a block of behaviours t for head h."""
    k = tl.load(k_ptr + (t[:, None] * H + h) * D + dk[None, :], mask=tmask[:, None] & dmask[None, :],
                other=0.0).to(ACC)
    raw = tl.sum(k * q[None, :], axis=1) * scale
    if HAS_BIAS:
        raw += tl.load(bias_ptr + t * H + h, mask=tmask, other=0.0).to(ACC)
    s = raw
    if HAS_FREQ:
        s = raw - _softplus(raw + tl.load(freq_ptr + t * H + h, mask=tmask, other=0.0).to(ACC))
    return k, raw, s


@triton.jit
def _pool_fwd_kernel(q_ptr, k_ptr, v_ptr, off_ptr, bias_ptr, freq_ptr, pl_ptr, pv_ptr, out_ptr, lse_ptr,
                     H, D, DV, scale, HAS_BIAS: tl.constexpr, HAS_FREQ: tl.constexpr, HAS_PRIOR: tl.constexpr,
                     BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr, ACC: tl.constexpr):
    b = tl.program_id(0)
    h = tl.program_id(1)
    dk = tl.arange(0, BLOCK_D)
    dmask = dk < D
    dvr = tl.arange(0, BLOCK_DV)
    vmask = dvr < DV
    q = tl.load(q_ptr + (b * H + h) * D + dk, mask=dmask, other=0.0).to(ACC)
    start = tl.load(off_ptr + b)
    end = tl.load(off_ptr + b + 1)
    m = tl.full([1], float("-inf"), ACC)
    l = tl.zeros([1], dtype=ACC)
    acc = tl.zeros([BLOCK_DV], dtype=ACC)
    if HAS_PRIOR:
        m = tl.load(pl_ptr + b * H + h + tl.zeros([1], dtype=tl.int32)).to(ACC)
        l += 1.0
        acc = tl.load(pv_ptr + (b * H + h) * DV + dvr, mask=vmask, other=0.0).to(ACC)
    for t0 in range(start, end, BLOCK_T):
        t = t0 + tl.arange(0, BLOCK_T)
        tmask = t < end
        _k, _raw, s = _logits(q, k_ptr, bias_ptr, freq_ptr, t, tmask, h, H, D, scale, dk, dmask,
                              HAS_BIAS, HAS_FREQ, ACC)
        s = tl.where(tmask, s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, axis=0))
        alpha = tl.where(m_new == float("-inf"), 0.0, tl.exp(m - m_new))
        p = tl.where(s == float("-inf"), 0.0, tl.exp(s - m_new))
        v = tl.load(v_ptr + (t[:, None] * H + h) * DV + dvr[None, :], mask=tmask[:, None] & vmask[None, :],
                    other=0.0).to(ACC)
        l = l * alpha + tl.sum(p, axis=0)
        acc = acc * alpha + tl.sum(p[:, None] * v, axis=0)
        m = m_new
    out = tl.where(l > 0, acc / tl.where(l > 0, l, 1.0), 0.0)
    tl.store(out_ptr + (b * H + h) * DV + dvr, out.to(out_ptr.dtype.element_ty), mask=vmask)
    lse = tl.where(l > 0, m + tl.log(tl.where(l > 0, l, 1.0)), float("-inf"))
    tl.store(lse_ptr + b * H + h + tl.zeros([1], dtype=tl.int32), lse.to(lse_ptr.dtype.element_ty))


@triton.jit
def _pool_bwd_kernel(go_ptr, gl_ptr, q_ptr, k_ptr, v_ptr, off_ptr, bias_ptr, freq_ptr, pl_ptr, pv_ptr, out_ptr,
                     lse_ptr, dq_ptr, dk_ptr, dv_ptr, dbias_ptr, dfreq_ptr, dpl_ptr, dpv_ptr, H, D, DV, scale,
                     HAS_GLSE: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_FREQ: tl.constexpr,
                     HAS_PRIOR: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
                     BLOCK_DV: tl.constexpr, ACC: tl.constexpr):
    """Recomputes each probability from lse; every behaviour belongs to one row, so dk/dv need no atomics."""
    b = tl.program_id(0)
    h = tl.program_id(1)
    bh = b * H + h
    dk_r = tl.arange(0, BLOCK_D)
    dmask = dk_r < D
    dvr = tl.arange(0, BLOCK_DV)
    vmask = dvr < DV
    zero1 = tl.zeros([1], dtype=tl.int32)
    q = tl.load(q_ptr + bh * D + dk_r, mask=dmask, other=0.0).to(ACC)
    go = tl.load(go_ptr + bh * DV + dvr, mask=vmask, other=0.0).to(ACC)
    out = tl.load(out_ptr + bh * DV + dvr, mask=vmask, other=0.0).to(ACC)
    lse = tl.load(lse_ptr + bh + zero1).to(ACC)
    gl = tl.zeros([1], dtype=ACC)
    if HAS_GLSE:
        gl = tl.load(gl_ptr + bh + zero1).to(ACC)
    empty = lse == float("-inf")
    lse_safe = tl.where(empty, 0.0, lse)
    delta = tl.sum(go * out, axis=0)
    dq = tl.zeros([BLOCK_D], dtype=ACC)
    start = tl.load(off_ptr + b)
    end = tl.load(off_ptr + b + 1)
    for t0 in range(start, end, BLOCK_T):
        t = t0 + tl.arange(0, BLOCK_T)
        tmask = t < end
        k, raw, s = _logits(q, k_ptr, bias_ptr, freq_ptr, t, tmask, h, H, D, scale, dk_r, dmask,
                            HAS_BIAS, HAS_FREQ, ACC)
        p = tl.where(tmask & ~empty, tl.exp(s - lse_safe), 0.0)
        v = tl.load(v_ptr + (t[:, None] * H + h) * DV + dvr[None, :], mask=tmask[:, None] & vmask[None, :],
                    other=0.0).to(ACC)
        tl.store(dv_ptr + (t[:, None] * H + h) * DV + dvr[None, :], (p[:, None] * go[None, :]).to(dv_ptr.dtype.element_ty),
                 mask=tmask[:, None] & vmask[None, :])
        gv = tl.sum(v * go[None, :], axis=1)
        ds_after = p * (gv - delta) + p * gl
        ds = ds_after
        if HAS_FREQ:
            sg = tl.sigmoid(raw + tl.load(freq_ptr + t * H + h, mask=tmask, other=0.0).to(ACC))
            ds = ds_after * (1.0 - sg)
            tl.store(dfreq_ptr + t * H + h, (-ds_after * sg).to(dfreq_ptr.dtype.element_ty), mask=tmask)
        if HAS_BIAS:
            tl.store(dbias_ptr + t * H + h, ds.to(dbias_ptr.dtype.element_ty), mask=tmask)
        tl.store(dk_ptr + (t[:, None] * H + h) * D + dk_r[None, :],
                 (scale * ds[:, None] * q[None, :]).to(dk_ptr.dtype.element_ty), mask=tmask[:, None] & dmask[None, :])
        dq += tl.sum(scale * ds[:, None] * k, axis=0)
    tl.store(dq_ptr + bh * D + dk_r, dq.to(dq_ptr.dtype.element_ty), mask=dmask)
    if HAS_PRIOR:
        pl = tl.load(pl_ptr + bh + zero1).to(ACC)
        p0 = tl.where(empty, 0.0, tl.exp(pl - lse_safe))
        pv = tl.load(pv_ptr + bh * DV + dvr, mask=vmask, other=0.0).to(ACC)
        tl.store(dpv_ptr + bh * DV + dvr, (p0 * go).to(dpv_ptr.dtype.element_ty), mask=vmask)
        dpl = p0 * (tl.sum(pv * go, axis=0) - delta) + p0 * gl
        tl.store(dpl_ptr + bh + zero1, dpl.to(dpl_ptr.dtype.element_ty))


def _blocks(d: int, dv: int):
    return dict(BLOCK_T=32, BLOCK_D=pow2(d, 16), BLOCK_DV=pow2(dv, 16))


@register_op("leanops::jagged_attention_pool_triton", mutates_args={})
def jagged_attention_pool_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, offsets: torch.Tensor,
                                 scale: float, bias: torch.Tensor | None, freq_c: torch.Tensor | None,
                                 prior_logit: torch.Tensor | None,
                                 prior_value: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    bsz, heads, d = q.shape
    dv = v.shape[2]
    out = q.new_empty(bsz, heads, dv)
    lse = q.new_empty(bsz, heads, dtype=torch.float64 if q.dtype == torch.float64 else torch.float32)
    if bsz == 0 or heads == 0:
        return out, lse
    qc, kc, vc = q.contiguous(), k.contiguous(), v.contiguous()
    dummy = qc
    launch(_pool_fwd_kernel, (bsz, heads), qc, kc, vc, offsets.contiguous(),
            bias.contiguous() if bias is not None else dummy, freq_c.contiguous() if freq_c is not None else dummy,
            prior_logit.contiguous() if prior_logit is not None else dummy,
            prior_value.contiguous() if prior_value is not None else dummy, out, lse, heads, d, dv, float(scale),
            HAS_BIAS=bias is not None, HAS_FREQ=freq_c is not None, HAS_PRIOR=prior_logit is not None,
            ACC=acc_tl_dtype(q), **_blocks(d, dv))
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
    dq = torch.empty_like(q, memory_format=torch.contiguous_format)
    dk = torch.zeros_like(k, memory_format=torch.contiguous_format)
    dvv = torch.zeros_like(v, memory_format=torch.contiguous_format)
    dbias = q.new_zeros(t, heads) if bias is not None else empty()
    dfreq = q.new_zeros(t, heads) if freq_c is not None else empty()
    dpl = q.new_empty(bsz, heads) if prior_logit is not None else empty()
    dpv = q.new_empty(bsz, heads, dv) if prior_value is not None else empty()
    if bsz == 0 or heads == 0:
        return dq, dk, dvv, dbias, dfreq, dpl, dpv
    qc = q.contiguous()
    dummy = qc
    lse_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    launch(_pool_bwd_kernel, (bsz, heads), grad_out.to(q.dtype).contiguous(),
            grad_lse.to(lse_dtype).contiguous() if grad_lse is not None else dummy, qc, k.contiguous(),
            v.contiguous(), offsets.contiguous(), bias.contiguous() if bias is not None else dummy,
            freq_c.contiguous() if freq_c is not None else dummy,
            prior_logit.contiguous() if prior_logit is not None else dummy,
            prior_value.contiguous() if prior_value is not None else dummy, out.contiguous(),
            lse.to(lse_dtype).contiguous(), dq, dk, dvv, dbias if bias is not None else dummy,
            dfreq if freq_c is not None else dummy, dpl if prior_logit is not None else dummy,
            dpv if prior_value is not None else dummy, heads, d, dv, float(scale),
            HAS_GLSE=grad_lse is not None, HAS_BIAS=bias is not None, HAS_FREQ=freq_c is not None,
            HAS_PRIOR=prior_logit is not None, ACC=acc_tl_dtype(q), **_blocks(d, dv))
    return dq, dk, dvv, dbias, dfreq, dpl, dpv


__all__ = ["jagged_attention_pool_triton", "jagged_attention_pool_backward_triton"]

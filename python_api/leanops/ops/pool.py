"""Public pool op ``jagged_attention_pool``: checks, backend choice, fake and autograd registration,
and the helpers that build the jagged layout (from padded tensors; duplicate keys grouped for KFAtt-freq)."""
from __future__ import annotations

import math

import torch

from .. import _backend, _checks, _library
from ..reference import pool as ref

__all__ = ["jagged_attention_pool", "jagged_from_padded", "group_duplicates", "lengths_to_offsets"]


def _check(q, k, v, offsets, scale, bias, freq_c, prior_logit, prior_value, validate, check_finite):
    _checks.rank(q, "q", 3, "[B, H, D]")
    _checks.rank(k, "k", 3, "[T, H, D]")
    _checks.rank(v, "v", 3, "[T, H, Dv]")
    _checks.feature_dtype(q, "q")
    for name, t in (("k", k), ("v", v)):
        if t.dtype != q.dtype:
            raise TypeError(f"{name} must have q's dtype {q.dtype}, got {t.dtype}")
        _checks.same_device(t, name, q, "q")
    bsz, heads, d = q.shape
    if k.shape[1:] != (heads, d):
        raise ValueError(f"k must be [T, H={heads}, D={d}], got {tuple(k.shape)}")
    if v.shape[:2] != k.shape[:2]:
        raise ValueError(f"v must be [T={k.shape[0]}, H={heads}, Dv], got {tuple(v.shape)}")
    _checks.tensor(offsets, "offsets")
    if offsets.dim() != 1 or offsets.shape[0] != bsz + 1:
        raise ValueError(f"offsets must be 1-D [B+1] = [{bsz + 1}], got {tuple(offsets.shape)}")
    _checks.index_dtype(offsets, "offsets")
    _checks.same_device(offsets, "offsets", q, "q")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"scale must be a float, got {type(scale).__name__}")
    if not math.isfinite(scale):
        raise ValueError(f"scale must be finite, got {scale}")
    t = k.shape[0]
    for name, x, shape in (("bias", bias, (t, heads)), ("freq_c", freq_c, (t, heads)),
                           ("prior_logit", prior_logit, (bsz, heads)), ("prior_value", prior_value, (bsz, heads, v.shape[2]))):
        if x is None:
            continue
        _checks.tensor(x, name)
        if tuple(x.shape) != shape:
            raise ValueError(f"{name} must be {list(shape)}, got {tuple(x.shape)}")
        if x.dtype != q.dtype:
            raise TypeError(f"{name} must have q's dtype {q.dtype}, got {x.dtype}")
        _checks.same_device(x, name, q, "q")
    if (prior_logit is None) != (prior_value is None):
        raise ValueError("prior_logit and prior_value must be given together")
    if validate:
        _check_offsets(offsets, t)
    if check_finite:
        for name, x in (("q", q), ("k", k), ("v", v), ("bias", bias), ("freq_c", freq_c),
                        ("prior_logit", prior_logit), ("prior_value", prior_value)):
            if x is not None and not bool(torch.isfinite(x).all()):
                bad = (~torch.isfinite(x)).nonzero()[0].tolist()
                raise ValueError(f"{name} holds a non-finite value at index {bad}")


def _check_offsets(offsets, t):
    """offsets[0] == 0, non-decreasing, offsets[-1] == T (a device sync on GPU)."""
    if offsets.numel() == 0:
        raise ValueError("offsets must have B+1 >= 1 entries")
    if int(offsets[0]) != 0:
        raise ValueError(f"offsets must start at 0, got {int(offsets[0])}")
    if offsets.numel() > 1 and bool((offsets[1:] < offsets[:-1]).any()):
        i = int((offsets[1:] < offsets[:-1]).nonzero()[0]) + 1
        raise ValueError(f"offsets must be non-decreasing: offsets[{i}] = {int(offsets[i])} < offsets[{i - 1}]")
    if int(offsets[-1]) != t:
        raise ValueError(f"offsets must end at T = {t}, got {int(offsets[-1])}")


def jagged_attention_pool(q, k, v, offsets, scale: float, bias=None, freq_c=None, prior_logit=None,
                          prior_value=None, *, backend: str | None = None, validate: bool = True,
                          check_finite: bool = False):
    """Softmax attention pooling of jagged behaviours (KFAtt / DIN): ``(out[B,H,Dv], lse[B,H])``.

    ``freq_c`` applies KFAtt-freq's ``s - softplus(s + freq_c)``; ``prior_logit``/``prior_value`` add
    KFAtt's prior entry. ``validate`` checks the offsets (a sync on GPU); ``check_finite`` (off by
    default: not for the hot path) reports non-finite inputs by name.
    """
    _check(q, k, v, offsets, scale, bias, freq_c, prior_logit, prior_value, validate, check_finite)
    which = _backend.choose(q, backend)
    args = (q, k, v, offsets, float(scale), bias, freq_c, prior_logit, prior_value)
    if which == "reference":
        return ref.jagged_attention_pool(*args)
    if which == "triton":
        return torch.ops.leanops.jagged_attention_pool_triton(*args)
    return torch.ops.leanops.jagged_attention_pool(*args)


# ----------------------------------------------------------------------------- jagged layout helpers
def lengths_to_offsets(lengths: torch.Tensor) -> torch.Tensor:
    _checks.rank(lengths, "lengths", 1, "[B]")
    if bool((lengths < 0).any()):
        raise ValueError("lengths must be >= 0")
    return torch.cat([lengths.new_zeros(1), lengths.cumsum(0)]).long()


def jagged_from_padded(padded: torch.Tensor, lengths: torch.Tensor):
    """``padded[B, L, ...]`` with per-row ``lengths[B]`` -> ``(values[T, ...], offsets[B+1])``."""
    _checks.tensor(padded, "padded")
    if padded.dim() < 2:
        raise ValueError(f"padded must be [B, L, ...], got shape {tuple(padded.shape)}")
    _checks.rank(lengths, "lengths", 1, "[B]")
    if lengths.shape[0] != padded.shape[0]:
        raise ValueError(f"lengths has {lengths.shape[0]} rows, padded has {padded.shape[0]}")
    if bool(((lengths < 0) | (lengths > padded.shape[1])).any()):
        raise ValueError(f"lengths must be in [0, L={padded.shape[1]}]")
    mask = torch.arange(padded.shape[1], device=padded.device)[None, :] < lengths[:, None]
    return padded[mask], lengths_to_offsets(lengths.to(padded.device))


def group_duplicates(ids: torch.Tensor, offsets: torch.Tensor):
    """Group repeated behaviours (same id) within each row, for KFAtt-freq.

    Returns ``(first[T'], counts[T'], new_offsets[B+1])``: ``first`` indexes one occurrence of each
    distinct id per row (rows keep their order of first appearance), ``counts`` how often it occurs.
    """
    _checks.rank(ids, "ids", 1, "[T]")
    _checks.index_dtype(ids, "ids")
    _check_offsets(offsets, ids.shape[0])
    lengths = offsets[1:] - offsets[:-1]
    row = torch.repeat_interleave(torch.arange(lengths.shape[0], device=ids.device), lengths)
    pos = torch.arange(ids.shape[0], device=ids.device)
    # sort by (row, id, position): the first of each (row, id) run is its first occurrence
    key_order = torch.argsort(ids, stable=True)
    order = key_order[torch.argsort(row[key_order], stable=True)]
    r_s, i_s = row[order], ids[order]
    starts = torch.ones_like(r_s, dtype=torch.bool)
    starts[1:] = (r_s[1:] != r_s[:-1]) | (i_s[1:] != i_s[:-1])
    group = torch.cumsum(starts.long(), 0) - 1
    n_groups = int(starts.sum())
    counts = torch.zeros(n_groups, dtype=torch.long, device=ids.device).index_add_(0, group, torch.ones_like(group))
    first = torch.full((n_groups,), ids.shape[0], dtype=torch.long, device=ids.device)
    first = first.scatter_reduce(0, group, pos[order], reduce="amin")
    g_row = row[first]
    reorder = torch.argsort(g_row * (ids.shape[0] + 1) + first)  # row-major, then first appearance
    first, counts = first[reorder], counts[reorder]
    new_lengths = torch.zeros_like(lengths).index_add_(0, g_row, torch.ones_like(g_row))
    return first, counts, lengths_to_offsets(new_lengths)


# ----------------------------------------------------------------------------- fake + autograd
def _register_fake(suffix: str) -> None:
    @torch.library.register_fake(f"leanops::jagged_attention_pool{suffix}")
    def _(q, k, v, offsets, scale, bias, freq_c, prior_logit, prior_value):
        lse_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
        return q.new_empty(q.shape[0], q.shape[1], v.shape[2]), q.new_empty(q.shape[0], q.shape[1], dtype=lse_dtype)

    @torch.library.register_fake(f"leanops::jagged_attention_pool_backward{suffix}")
    def _(grad_out, grad_lse, q, k, v, offsets, scale, bias, freq_c, prior_logit, prior_value, out, lse):
        # the kernels return contiguous gradients whatever the inputs' strides: so must the fake
        like = lambda t: q.new_empty(t.shape) if t is not None else q.new_empty(0)  # noqa: E731
        return like(q), like(k), like(v), like(bias), like(freq_c), like(prior_logit), like(prior_value)


def _register_autograd(suffix: str) -> None:
    backward_op = getattr(torch.ops.leanops, "jagged_attention_pool_backward" + suffix)

    def setup(ctx, inputs, output):
        q, k, v, offsets, scale, bias, freq_c, prior_logit, prior_value = inputs
        out, lse = output
        ctx.scale = scale
        ctx.save_for_backward(q, k, v, offsets, bias, freq_c, prior_logit, prior_value, out, lse)

    def backward(ctx, grad_out, grad_lse):
        q, k, v, offsets, bias, freq_c, prior_logit, prior_value, out, lse = ctx.saved_tensors
        if grad_out is None:
            grad_out = torch.zeros_like(out)
        # grad_lse of an empty row (lse = -inf) needs no masking: all its entries are masked, so p = 0
        dq, dk, dv, dbias, dfreq, dpl, dpv = backward_op(grad_out.contiguous(), grad_lse, q, k, v, offsets, ctx.scale,
                                                         bias, freq_c, prior_logit, prior_value, out, lse)
        pick = lambda g, x: g if x is not None else None  # noqa: E731
        return dq, dk, dv, None, None, pick(dbias, bias), pick(dfreq, freq_c), pick(dpl, prior_logit), pick(dpv, prior_value)

    torch.library.register_autograd(f"leanops::jagged_attention_pool{suffix}", backward, setup_context=setup)


if _library.compiled_available():
    _register_fake("")
    _register_autograd("")
if _backend.triton_available():
    from ..triton_kernels import pool as _triton_pool

    from ..triton_kernels._common import INTERPRETED

    if INTERPRETED:
        _register_fake("_triton")
    _register_autograd("_triton")

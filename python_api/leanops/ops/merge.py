"""Public merge ops: argument checks, backend choice, fake and autograd registration.

The compiled ops are ``torch.ops.leanops.{bipartite_match, merge_wavg, merge_slot_map, unmerge}``
(schemas in csrc/registration.cpp); the Triton ones are ``torch.ops.leanops.*_triton``
(triton_kernels/merge.py). ``python_api/leanops/reference/merge.py`` is the specification.
"""
from __future__ import annotations

import torch

from .. import _backend, _checks, _library
from .._token_layout import a_b_indices, effective_r, split_sizes
from ..reference import merge as ref

__all__ = ["bipartite_match", "merge_wavg", "merge_slot_map", "unmerge", "compose_slot_maps"]


# ----------------------------------------------------------------------------- argument checks
def _check_metric(metric, r, num_protected):
    _checks.rank(metric, "metric", 3, "[B, N, C]")
    _checks.feature_dtype(metric, "metric")
    if metric.shape[2] == 0:
        raise ValueError("metric must have C > 0 channels")
    n = metric.shape[1]
    _checks.integer(num_protected, "num_protected", 0, n)
    _checks.integer(r, "r", 0)
    if r > n - num_protected:
        raise ValueError(f"r ({r}) is larger than the {n - num_protected} mergeable tokens (N - num_protected)")


def _check_merge(x, size, src_idx, dst_idx, unm_idx, num_protected, channel_gate, token_gate, validate):
    _checks.rank(x, "x", 3, "[B, N, C]")
    _checks.feature_dtype(x, "x")
    bsz, n, c = x.shape
    _checks.integer(num_protected, "num_protected", 0, n)
    if size is not None:
        _checks.rank(size, "size", 2, "[B, N]")
        if tuple(size.shape) != (bsz, n):
            raise ValueError(f"size must be [B, N] = [{bsz}, {n}], got {tuple(size.shape)}")
        if size.dtype != torch.float32:
            raise TypeError(f"size must be float32, got {size.dtype}")
        _checks.same_device(size, "size", x, "x")
    for name, t in (("src_idx", src_idx), ("dst_idx", dst_idx), ("unm_idx", unm_idx)):
        _checks.rank(t, name, 2, "[B, k]")
        _checks.index_dtype(t, name)
        _checks.same_device(t, name, x, "x")
        if t.shape[0] != bsz:
            raise ValueError(f"{name} batch size {t.shape[0]} does not match x's {bsz}")
    na, nb = split_sizes(n, num_protected)
    r = src_idx.shape[1]
    if dst_idx.shape[1] != r:
        raise ValueError(f"src_idx and dst_idx must have the same length, got {r} and {dst_idx.shape[1]}")
    if r + unm_idx.shape[1] != na:
        raise ValueError(f"src_idx ({r}) and unm_idx ({unm_idx.shape[1]}) must together list the {na} A tokens")
    if (channel_gate is None) != (token_gate is None):
        raise ValueError("channel_gate and token_gate must be given together")
    if channel_gate is not None:
        if tuple(channel_gate.shape) != (bsz, 1, c):
            raise ValueError(f"channel_gate must be [B, 1, C] = [{bsz}, 1, {c}], got {tuple(channel_gate.shape)}")
        if tuple(token_gate.shape) != (bsz, r, 1):
            raise ValueError(f"token_gate must be [B, r, 1] = [{bsz}, {r}, 1], got {tuple(token_gate.shape)}")
        for name, g in (("channel_gate", channel_gate), ("token_gate", token_gate)):
            if g.dtype != x.dtype:
                raise TypeError(f"{name} must have x's dtype {x.dtype}, got {g.dtype}")
            _checks.same_device(g, name, x, "x")
    if validate and bsz:
        _check_token_sets(src_idx, dst_idx, unm_idx, num_protected, n)


def _check_token_sets(src_idx, dst_idx, unm_idx, num_protected, n):
    """src/unm must list each A token once; dst must hold B tokens (a device sync on GPU)."""
    for name, t, parity in (("src_idx", src_idx, 0), ("unm_idx", unm_idx, 0), ("dst_idx", dst_idx, 1)):
        bad = (t < num_protected) | (t >= n) | (t % 2 != parity)
        if bool(bad.any()):
            kind = "an A token (even index" if parity == 0 else "a B token (odd index"
            raise ValueError(f"{name} holds {int(t[bad][0])}, which is not {kind} in [num_protected, N))")
    a_idx, _ = a_b_indices(n, num_protected, src_idx.device)
    listed = torch.cat([src_idx, unm_idx], dim=1).sort(dim=1).values
    if not bool((listed == a_idx).all()):
        raise ValueError("src_idx and unm_idx must together list every A token exactly once")


# ----------------------------------------------------------------------------- public ops
def bipartite_match(metric: torch.Tensor, r: int, num_protected: int = 1, *, backend: str | None = None):
    """ToMe bipartite soft matching: ``(src_idx[B,r'], dst_idx[B,r'], unm_idx[B,Na-r'])`` (original indices).

    ``r' = min(r, |A|)`` (0 without B tokens). Order and ties: NaN scores above every number, equal
    scores to the lower index (docs/DESIGN.md). With ``num_protected=1`` and no ties the result is ToMe's.
    """
    _check_metric(metric, r, num_protected)
    which = _backend.choose(metric, backend)
    if which == "reference":
        return ref.bipartite_match(metric, r, num_protected)
    if which == "triton":
        return torch.ops.leanops.bipartite_match_triton(metric, r, num_protected)
    return torch.ops.leanops.bipartite_match(metric, r, num_protected)


def merge_wavg(x, size, src_idx, dst_idx, unm_idx, num_protected: int = 1, channel_gate=None, token_gate=None,
               *, backend: str | None = None, validate: bool = True):
    """Size-weighted average merge (with PYRA gates fused in): ``(x_out[B,N-r,C], size_out[B,N-r])``.

    With ``src_idx`` empty (r' = 0) it is the identity: ``x`` and ``size`` in their original order.
    ``validate=False`` skips the index-set check (one device sync) for indices from ``bipartite_match``.
    """
    _check_merge(x, size, src_idx, dst_idx, unm_idx, num_protected, channel_gate, token_gate, validate)
    which = _backend.choose(x, backend)
    args = (x, size, src_idx, dst_idx, unm_idx, num_protected, channel_gate, token_gate)
    if which == "reference":
        return ref.merge_wavg(*args)
    if which == "triton":
        return torch.ops.leanops.merge_wavg_triton(*args)
    return torch.ops.leanops.merge_wavg(*args)


def merge_slot_map(src_idx, dst_idx, unm_idx, num_protected: int, n: int, *, backend: str | None = None,
                   validate: bool = True):
    """Source tracing as an index map ``[B, N]``: the output slot each input token went to
    (the identity when nothing is merged)."""
    for name, t in (("src_idx", src_idx), ("dst_idx", dst_idx), ("unm_idx", unm_idx)):
        _checks.rank(t, name, 2, "[B, k]")
        _checks.index_dtype(t, name)
        _checks.same_device(t, name, src_idx, "src_idx")
        if t.shape[0] != src_idx.shape[0]:
            raise ValueError(f"{name} batch size {t.shape[0]} does not match src_idx's {src_idx.shape[0]}")
    _checks.integer(n, "n", 0)
    _checks.integer(num_protected, "num_protected", 0, n)
    na, _ = split_sizes(n, num_protected)
    if src_idx.shape[1] + unm_idx.shape[1] != na or dst_idx.shape != src_idx.shape:
        raise ValueError(f"src_idx/dst_idx/unm_idx do not fit n={n}, num_protected={num_protected} ({na} A tokens)")
    if validate and src_idx.shape[0]:
        _check_token_sets(src_idx, dst_idx, unm_idx, num_protected, n)
    which = _backend.choose(src_idx, backend)
    if which == "reference":
        return ref.merge_slot_map(src_idx, dst_idx, unm_idx, num_protected, n)
    if which == "triton":
        return torch.ops.leanops.merge_slot_map_triton(src_idx, dst_idx, unm_idx, num_protected, n)
    return torch.ops.leanops.merge_slot_map(src_idx, dst_idx, unm_idx, num_protected, n)


def unmerge(x_merged: torch.Tensor, slot_map: torch.Tensor, *, backend: str | None = None, validate: bool = True):
    """Back to N tokens: token i takes the value of slot ``slot_map[b, i]``. Differentiable in x_merged."""
    _checks.rank(x_merged, "x_merged", 3, "[B, M, C]")
    _checks.feature_dtype(x_merged, "x_merged")
    _checks.rank(slot_map, "slot_map", 2, "[B, N]")
    _checks.index_dtype(slot_map, "slot_map")
    _checks.same_device(slot_map, "slot_map", x_merged, "x_merged")
    if slot_map.shape[0] != x_merged.shape[0]:
        raise ValueError(f"slot_map batch size {slot_map.shape[0]} does not match x_merged's {x_merged.shape[0]}")
    if validate:
        _checks.index_range(slot_map, "slot_map", 0, x_merged.shape[1])
    which = _backend.choose(x_merged, backend)
    if which == "reference":
        return ref.unmerge(x_merged, slot_map)
    if which == "triton":
        return torch.ops.leanops.unmerge_triton(x_merged, slot_map)
    return torch.ops.leanops.unmerge(x_merged, slot_map)


def compose_slot_maps(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Slot map of two merges in a row: tokens -> slots of ``first`` -> slots of ``second``."""
    return ref.compose_slot_maps(first, second)


# ----------------------------------------------------------------------------- fake + autograd
def _register_fakes(suffix: str) -> None:
    """Fake kernels of the compiled ops, and of the Triton ones when they run interpreted
    (on a GPU a triton_op traces its own Python body instead). Every kernel returns contiguous
    tensors, and so do the fakes."""
    name = lambda op: f"leanops::{op}{suffix}"  # noqa: E731

    @torch.library.register_fake(name("bipartite_match"))
    def _(metric, r, num_protected):
        bsz, n, _c = metric.shape
        na, _nb = split_sizes(n, num_protected)
        re = effective_r(n, r, num_protected)
        new = lambda k: metric.new_empty(bsz, k, dtype=torch.long)  # noqa: E731
        return new(re), new(re), new(na - re)

    @torch.library.register_fake(name("merge_wavg"))
    def _(x, size, src_idx, dst_idx, unm_idx, num_protected, channel_gate, token_gate):
        bsz, n, c = x.shape
        m = n - src_idx.shape[1]
        return x.new_empty(bsz, m, c), x.new_empty(bsz, m, dtype=torch.float32)

    @torch.library.register_fake(name("merge_wavg_backward"))
    def _(grad_out, x, size, size_out, src_idx, dst_idx, unm_idx, num_protected, channel_gate, token_gate):
        gated = channel_gate is not None
        return (x.new_empty(x.shape), channel_gate.new_empty(channel_gate.shape) if gated else x.new_empty(0),
                token_gate.new_empty(token_gate.shape) if gated else x.new_empty(0))

    @torch.library.register_fake(name("merge_slot_map"))
    def _(src_idx, dst_idx, unm_idx, num_protected, n):
        return src_idx.new_empty(src_idx.shape[0], n)

    @torch.library.register_fake(name("unmerge"))
    def _(x_merged, slot_map):
        return x_merged.new_empty(x_merged.shape[0], slot_map.shape[1], x_merged.shape[2])

    @torch.library.register_fake(name("unmerge_backward"))
    def _(grad, slot_map, m):
        return grad.new_empty(grad.shape[0], m, grad.shape[2])


def _register_autograd(suffix: str) -> None:
    """Autograd formulas of ``merge_wavg`` and ``unmerge`` for one implementation ('' or '_triton').

    The forward's ``size_out`` (the total size of every slot, the backward's divisor) is saved here,
    so no backward recomputes it."""
    name = lambda op: f"leanops::{op}{suffix}"  # noqa: E731
    wavg_backward_op = getattr(torch.ops.leanops, "merge_wavg_backward" + suffix)
    unmerge_backward_op = getattr(torch.ops.leanops, "unmerge_backward" + suffix)

    def wavg_setup(ctx, inputs, output):
        x, size, src_idx, dst_idx, unm_idx, num_protected, channel_gate, token_gate = inputs
        ctx.save_for_backward(x, size, output[1], src_idx, dst_idx, unm_idx, channel_gate, token_gate)
        ctx.num_protected = num_protected

    def wavg_backward(ctx, grad_x, _grad_size):
        x, size, size_out, src_idx, dst_idx, unm_idx, channel_gate, token_gate = ctx.saved_tensors
        gx, gcg, gtg = wavg_backward_op(grad_x.contiguous(), x, size, size_out, src_idx, dst_idx, unm_idx,
                                        ctx.num_protected, channel_gate, token_gate)
        gated = channel_gate is not None
        return gx, None, None, None, None, None, (gcg if gated else None), (gtg if gated else None)

    torch.library.register_autograd(name("merge_wavg"), wavg_backward, setup_context=wavg_setup)

    def unmerge_setup(ctx, inputs, output):
        x_merged, slot_map = inputs
        ctx.save_for_backward(slot_map)
        ctx.m = x_merged.shape[1]

    def unmerge_bwd(ctx, grad):
        (slot_map,) = ctx.saved_tensors
        return unmerge_backward_op(grad.contiguous(), slot_map, ctx.m), None

    torch.library.register_autograd(name("unmerge"), unmerge_bwd, setup_context=unmerge_setup)


if _library.compiled_available():
    _register_fakes("")
    _register_autograd("")
if _backend.triton_available():
    from ..triton_kernels import merge as _triton_merge  # noqa: F401  (defines leanops::*_triton)
    from ..triton_kernels._common import INTERPRETED

    if INTERPRETED:
        _register_fakes("_triton")
    _register_autograd("_triton")

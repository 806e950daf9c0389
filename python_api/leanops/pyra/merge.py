"""One PYRA merge step: the gates computed from the tokens about to merge, then ``merge_wavg`` with the gates
fused in (``src * (1 + W_c * W_t)``, size-weighted)."""
from __future__ import annotations

import torch
from torch import nn

from .. import _checks
from ..ops import merge as merge_ops
from .._token_layout import layout
from .gate import PYRAGate, gate_values


def _flat_rows(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Row numbers of ``x[b, idx[b, j]]`` in ``x`` viewed as ``[B * N, C]``, flattened."""
    return (idx + torch.arange(x.shape[0], device=idx.device)[:, None] * x.shape[1]).reshape(-1)


def _weighted(x: torch.Tensor, size: torch.Tensor | None, idx: torch.Tensor) -> torch.Tensor:
    """``(x * size)[idx]`` as ``[B, k, C]``. Rows are picked with ``index_select`` on the flattened tokens
    (whole-row copies), which on CPU is faster than ``gather`` with an expanded index."""
    bsz, n, c = x.shape
    out = x.reshape(bsz * n, c).index_select(0, _flat_rows(x, idx)).view(bsz, idx.shape[1], c)
    if size is not None:
        out = out * size.gather(1, idx).to(x.dtype).unsqueeze(-1)
    return out


class _GatedMerge(torch.autograd.Function):
    """The PYRA step with one gradient buffer for ``x``. Autograd through ``index_select`` would give each
    of the two gathers its own zero-filled ``[B, N, C]`` gradient and then add the three together, which
    costs more than the merge itself; here the merge's backward makes the only full-size gradient and the
    gate path adds its ``2 r`` rows into it in place."""

    @staticmethod
    def forward(ctx, x, size, src_idx, dst_idx, unm_idx, protected, validate, eps, *params):
        with torch.enable_grad():  # a local graph: merge and gate math, differentiated in backward
            x_leaf = x.detach().requires_grad_(x.requires_grad)
            plain = x.detach()  # the gathers stay off the local graph: backward adds their rows by hand
            pre_norm = _weighted(plain, size, src_idx) + _weighted(plain, size, dst_idx)
            pre_norm.requires_grad_(x.requires_grad)
            leaves = [p.detach().requires_grad_(p.requires_grad) for p in params]
            channel, token = gate_values(pre_norm, *leaves, eps)
            x_out, size_out = merge_ops.merge_wavg(x_leaf, size, src_idx, dst_idx, unm_idx, protected,
                                                   channel.to(x.dtype), token.to(x.dtype), validate=validate)
        ctx.graph = (x_out, x_leaf, pre_norm, leaves)
        ctx.save_for_backward(size, src_idx, dst_idx)
        ctx.mark_non_differentiable(size_out)
        return x_out.detach(), size_out.detach()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, _grad_size):
        x_out, x_leaf, pre_norm, leaves = ctx.graph
        size, src_idx, dst_idx = ctx.saved_tensors
        wanted = [t for t in (x_leaf, pre_norm, *leaves) if t.requires_grad]
        # retain_graph: the outer graph may be backpropagated again (retain_graph=True, gradcheck); the local
        # graph goes when the outer one frees this node
        found = dict(zip(map(id, wanted), torch.autograd.grad(x_out, wanted, grad_out, retain_graph=True)))
        grad_x = found.get(id(x_leaf))
        if grad_x is not None:  # d(S + D)/dx: the gathered rows, scaled by their sizes
            grad_pre = found[id(pre_norm)]
            grad_x = grad_x.contiguous()  # the kernels' gradients already are; the reference's may not be
            bsz, n, c = grad_x.shape
            flat = grad_x.view(bsz * n, c)
            for idx in (src_idx, dst_idx):
                rows = grad_pre if size is None else grad_pre * size.gather(1, idx).to(grad_pre.dtype)[..., None]
                flat.index_add_(0, _flat_rows(grad_x, idx), rows.reshape(-1, c))
        grads = [found.get(id(p)) for p in leaves]
        return (grad_x, None, None, None, None, None, None, None, *grads)


def pyra_merge(x, size, src_idx, dst_idx, unm_idx, protected, gate: PYRAGate, *, validate: bool = True):
    """One PYRA merge step: ``(x_out [B, N-r, C], size_out [B, N-r])``.

    Arguments as in ``leanops.ops.merge_wavg`` (``protected`` is its ``num_protected``; ``size`` is ``[B, N]``
    float32 or None for all ones); ``gate`` a ``PYRAGate`` built for this step's ``r`` and ``C``. Equal to
    ToMe's ``merge_wavg`` when ``gate.token_gate_weight`` is zero. Differentiable in ``x`` and the gate.
    """
    if not isinstance(gate, PYRAGate):
        raise TypeError(f"gate must be a leanops.pyra.PYRAGate, got {type(gate).__name__}")
    _checks.rank(x, "x", 3, "[B, N, C]")
    _checks.rank(src_idx, "src_idx", 2, "[B, r]")
    _checks.rank(dst_idx, "dst_idx", 2, "[B, r]")
    if x.shape[2] != gate.dim:
        raise ValueError(f"gate was built for dim={gate.dim}, but x has C={x.shape[2]} channels")
    if src_idx.shape[1] != gate.r:
        raise ValueError(f"gate was built for r={gate.r}, but src_idx merges r={src_idx.shape[1]} tokens")
    if src_idx.shape != dst_idx.shape:
        raise ValueError(f"src_idx and dst_idx must have the same shape, got {tuple(src_idx.shape)} and "
                         f"{tuple(dst_idx.shape)}")
    if validate:  # the gather below reads the indices before merge_wavg checks them
        n = x.shape[1]
        for name, t in (("src_idx", src_idx), ("dst_idx", dst_idx)):
            _checks.index_dtype(t, name)
            if t.numel() and (bool((t < 0).any()) or bool((t >= n).any())):
                raise ValueError(f"{name} must hold token indices in [0, {n}), got values outside")
    params = (gate.channel_gate_weight, gate.token_gate_weight, gate.norm.weight, gate.norm.bias)
    if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params)):
        return _GatedMerge.apply(x, size, src_idx, dst_idx, unm_idx, protected, validate, gate.norm.eps, *params)
    return plain_autograd_step(x, size, src_idx, dst_idx, unm_idx, protected, gate, validate=validate)


def plain_autograd_step(x, size, src_idx, dst_idx, unm_idx, protected, gate: PYRAGate, *, validate: bool = True):
    """``pyra_merge``'s forward with no backward of its own (autograd through the two row gathers): its path
    when nothing needs a gradient, and the benchmark's ablation of its one-buffer backward. No input checks."""
    channel, token = gate(_weighted(x, size, src_idx), _weighted(x, size, dst_idx))
    return merge_ops.merge_wavg(x, size, src_idx, dst_idx, unm_idx, protected, channel.to(x.dtype),
                                token.to(x.dtype), validate=validate)


def eager_pyra_merge(x, size, src_idx, dst_idx, unm_idx, protected, gate: PYRAGate):
    """The same step written in eager PyTorch the way a skilled user would (scatter-add of size-weighted
    tokens, then divide): the benchmark's anchor and a second specification in the tests."""
    bsz, n, c = x.shape
    size = x.new_ones(bsz, n) if size is None else size.to(x.dtype)
    xw = x * size.unsqueeze(-1)
    src = xw.gather(1, src_idx[..., None].expand(-1, -1, c))
    dst = xw.gather(1, dst_idx[..., None].expand(-1, -1, c))
    channel, token = gate(src, dst)
    src = src + src * channel * token
    na, nb, first_a, first_b = layout(n, protected)
    b_idx = torch.arange(first_b, n, 2, device=x.device)
    dst_pos = (dst_idx - first_b) // 2
    num = xw[:, b_idx].scatter_add(1, dst_pos[..., None].expand(-1, -1, c), src)
    den = size[:, b_idx].scatter_add(1, dst_pos, size.gather(1, src_idx))
    b_x = num / den.clamp_min(1e-30).unsqueeze(-1)
    keep = torch.cat([torch.arange(protected, device=x.device).expand(bsz, -1), unm_idx], dim=1)
    x_out = torch.cat([x.gather(1, keep[..., None].expand(-1, -1, c)), b_x], dim=1)
    size_out = torch.cat([size.gather(1, keep), den], dim=1)
    return x_out, size_out.float()


class PYRAMergeStep(nn.Module):
    """The merge hook ``leanops.tome`` calls in a patched layer (its ``tome_merge`` slot): one PYRA merge step
    with this layer's gate."""

    def __init__(self, gate: PYRAGate, layer_index: int):
        super().__init__()
        self.gate = gate
        self.layer_index = layer_index

    def forward(self, x, size, src_idx, dst_idx, unm_idx, protected):
        if src_idx.shape[1] != self.gate.r:
            raise ValueError(f"r[{self.layer_index}]={self.gate.r} is larger than the tokens left in layer "
                             f"{self.layer_index} ({src_idx.shape[1]} can merge); use a shorter schedule or longer inputs")
        return pyra_merge(x, size, src_idx, dst_idx, unm_idx, protected, self.gate, validate=False)

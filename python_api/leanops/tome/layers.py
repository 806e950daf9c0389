"""ToMe forward passes for Hugging Face encoder layers: attention through fused SDPA with the
proportional-attention bias ``log(size)`` (no mask while every size is 1), the key mean as the merge
metric, then the merge, then the MLP.

One small adapter per layer family says where its projections and norms are.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._token_layout import effective_r
from ..ops import merge as merge_ops
from .state import ToMeState

_LOG_TINY = math.log(1e-30)  # bias for padding (size 0): masked without -inf, so no NaN rows


def attention_bias(state: ToMeState, dtype: torch.dtype) -> torch.Tensor | None:
    """``[B, 1, 1, N]`` additive key bias, or None when it would be all zeros.

    With proportional attention the bias is ``log(size)``; until a layer of this forward has merged
    (``state.merged``, tracked in Python, so no device sync) every size is 1 and, without padding, the
    bias is zero: SDPA then gets no mask, which lets it pick its fused flash kernel on a GPU.
    """
    size = state.size
    if size is None or (not state.merged and not state.has_padding):
        return None
    if state.prop_attn:
        bias = torch.log(size.clamp_min(1e-30))
    else:
        if not state.has_padding:
            return None
        bias = torch.where(size > 0, 0.0, _LOG_TINY)
    return bias[:, None, None, :].to(dtype)


def sdpa_with_keys(x, q_proj, k_proj, v_proj, num_heads, head_dim, scale, dropout_p, state):
    """Multi-head attention with SDPA; returns (context [B,N,H*D], keys [B,H,N,D]).

    The merge metric is the keys averaged over heads (``keys.mean(1)``), computed only by a layer
    that merges."""
    bsz, n, _ = x.shape
    shape = (bsz, n, num_heads, head_dim)
    q = q_proj(x).view(shape).transpose(1, 2)
    k = k_proj(x).view(shape).transpose(1, 2)
    v = v_proj(x).view(shape).transpose(1, 2)
    ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_bias(state, q.dtype), dropout_p=dropout_p,
                                         scale=scale)
    return ctx.transpose(1, 2).reshape(bsz, n, num_heads * head_dim), k


def init_from_mask(state: ToMeState, x: torch.Tensor, attention_mask) -> None:
    """First layer: every token has size 1, padding (from the HF mask) size 0."""
    bsz, n, _ = x.shape
    size = torch.ones(bsz, n, dtype=torch.float32, device=x.device)
    state.has_padding = False
    if attention_mask is not None:
        row = attention_mask[:, 0, 0, :] if attention_mask.dim() == 4 else attention_mask
        valid = row if row.dtype == torch.bool else row > torch.finfo(row.dtype).min / 2
        if valid.shape[-1] == n:
            size = size * valid.to(torch.float32)
            state.has_padding = bool((size == 0).any())  # one check per forward, not one device sync per layer
    state.size = size
    if state.trace_source:
        state.slot_map = torch.arange(n, device=x.device).expand(bsz, n).contiguous()


def merge_tokens(state: ToMeState, x: torch.Tensor, keys: torch.Tensor, merge=None) -> torch.Tensor:
    """Merge ``r`` tokens of this layer (bipartite soft matching + size-weighted average).

    A layer whose r is 0, or clamped to 0 (no A or no B token left), returns ``x`` itself: the
    identity, with no metric, no op and no reordering.
    ``merge``: the layer's merge hook (its ``tome_merge`` attribute, e.g. a PYRA gate step), called as
    ``merge(x, size, src_idx, dst_idx, unm_idx, num_protected) -> (x_out, size_out)`` in place of
    ``merge_wavg``; None (no hook) is plain ToMe."""
    r = state.r[state.layer] if state.layer < len(state.r) else 0
    state.layer += 1
    x = merge_r(state, x, keys, r, state.num_protected, merge)
    state.tokens_per_layer.append(x.shape[1])
    return x


def merge_r(state: ToMeState, x: torch.Tensor, keys: torch.Tensor, r: int, num_protected: int,
            merge=None) -> torch.Tensor:
    """Merge ``r`` tokens of ``x`` [B, N, C] with the first ``num_protected`` tokens kept, the metric being
    ``keys`` [B, H, N, D] averaged over heads; updates ``state.size`` (and the slot map when traced).

    The building block of ``merge_tokens`` with r and the protected count given by the caller instead of
    the schedule (extension point: ``leanops.tempme`` merges across frames with one protected class token
    per frame). r is clamped to what the token layout allows; at 0 it returns ``x`` itself. ``merge``: as in
    ``merge_tokens``."""
    bsz, n, _ = x.shape
    p = min(num_protected, n)
    r = effective_r(n, min(r, n - p), p)
    if r <= 0:
        return x
    state.merged = True
    if state.ideal:  # cost-free baseline: same token counts, no matching, no averaging
        state.size = state.size[:, : n - r]
        return x[:, : n - r]
    metric = keys.mean(dim=1)
    size = state.size
    if state.has_padding:  # padding merges with padding first
        metric = torch.where(size[..., None] > 0, metric, torch.ones_like(metric))
    src, dst, unm = merge_ops.bipartite_match(metric, r, p)
    if merge is None:
        x, state.size = merge_ops.merge_wavg(x, size, src, dst, unm, p, validate=False)
    else:
        x, state.size = merge(x, size, src, dst, unm, p)
    if state.trace_source:
        step = merge_ops.merge_slot_map(src, dst, unm, p, n, validate=False)
        state.slot_map = merge_ops.compose_slot_maps(state.slot_map, step)
    return x


def vit_layer_forward(layer, hidden_states, attention_mask=None, **kwargs):
    """transformers ViTLayer (pre-norm)."""
    state: ToMeState = layer._tome_state
    if state.size is None:
        init_from_mask(state, hidden_states, attention_mask)
    attn = layer.attention
    ctx, keys = sdpa_with_keys(layer.layernorm_before(hidden_states), attn.q_proj, attn.k_proj, attn.v_proj,
                                   attn.num_attention_heads, attn.head_dim, attn.scaling,
                                   attn.attention_dropout if layer.training else 0.0, state)
    x = hidden_states + layer.dropout(attn.o_proj(ctx))
    x = merge_tokens(state, x, keys, getattr(layer, "tome_merge", None))
    return x + layer.dropout(layer.mlp(layer.layernorm_after(x)))


def clip_layer_forward(layer, hidden_states, attention_mask=None, **kwargs):
    """transformers CLIPEncoderLayer (pre-norm)."""
    state: ToMeState = layer._tome_state
    if state.size is None:
        init_from_mask(state, hidden_states, attention_mask)
    attn = layer.self_attn
    ctx, keys = sdpa_with_keys(layer.layer_norm1(hidden_states), attn.q_proj, attn.k_proj, attn.v_proj,
                                   attn.num_heads, attn.head_dim, attn.scale,
                                   attn.dropout if layer.training else 0.0, state)
    x = hidden_states + attn.out_proj(ctx)
    x = merge_tokens(state, x, keys, getattr(layer, "tome_merge", None))
    return x + layer.mlp(layer.layer_norm2(x))


def bert_layer_forward(layer, hidden_states, attention_mask=None, *args, **kwargs):
    """transformers BertLayer (post-norm encoder; merging sits between attention and feed-forward)."""
    state: ToMeState = layer._tome_state
    if state.size is None:
        init_from_mask(state, hidden_states, attention_mask)
    self_attn = layer.attention.self
    ctx, keys = sdpa_with_keys(hidden_states, self_attn.query, self_attn.key, self_attn.value,
                                   self_attn.num_attention_heads, self_attn.attention_head_size, self_attn.scaling,
                                   self_attn.dropout.p if layer.training else 0.0, state)
    x = layer.attention.output(ctx, hidden_states)
    x = merge_tokens(state, x, keys, getattr(layer, "tome_merge", None))
    return layer.output(layer.intermediate(x), x)


LAYER_FORWARDS = {
    "ViTLayer": vit_layer_forward,
    "CLIPEncoderLayer": clip_layer_forward,
    "BertLayer": bert_layer_forward,
}

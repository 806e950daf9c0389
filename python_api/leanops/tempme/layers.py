"""One TempMe encoder layer on a Hugging Face ``CLIPEncoderLayer``'s weights.

Sequences are clips: ``[videos * clips, tokens, C]`` with the clip's class tokens (one per frame) in front.
ImgMe layers (before the first ClipMe layer): attention, ToMe merge of ``imgme_r`` tokens per frame, MLP.
ClipMe layers: join ``group`` neighbouring clips (class tokens first, temporal embedding added), cross-clip
merge before attention, attention, intra-clip merge after it, MLP. Later layers: attention, intra-clip
merge, MLP. Attention and merges are ``leanops.tome``'s: SDPA with the ``log(size)`` bias, keys averaged over
heads as the metric, ``bipartite_match`` + ``merge_wavg`` with the class tokens protected.
"""
from __future__ import annotations

import torch

from ..tome.layers import merge_r, sdpa_with_keys
from .config import imgme_merges, share_to_r
from .state import TempMeState


def join_clips(state: TempMeState, x: torch.Tensor, group: int, temporal_pos: torch.Tensor | None) -> torch.Tensor:
    """``[V*K, N, C]`` -> ``[V*K/group, group*N, C]``: neighbouring clips of a video side by side, every
    class token moved to the front (frame order kept), ``temporal_pos[j]`` added to the j-th clip's tokens."""
    seqs, n, c = x.shape
    fpc = state.frames_per_clip
    x = x.view(seqs // group, group, n, c)
    if temporal_pos is not None:
        x = x + temporal_pos.view(1, group, 1, c).to(x.dtype)
    size = state.size.view(seqs // group, group, n)
    x = torch.cat([x[:, :, :fpc].reshape(seqs // group, group * fpc, c),
                   x[:, :, fpc:].reshape(seqs // group, group * (n - fpc), c)], dim=1)
    state.size = torch.cat([size[:, :, :fpc].reshape(seqs // group, -1), size[:, :, fpc:].reshape(seqs // group, -1)],
                           dim=1)
    state.frames_per_clip = fpc * group
    return x


def _keys(layer, x: torch.Tensor) -> torch.Tensor:
    """This layer's keys ``[B, H, N, D]`` of ``x`` (the cross-clip merge metric, before attention)."""
    attn = layer.self_attn
    bsz, n, _ = x.shape
    return attn.k_proj(layer.layer_norm1(x)).view(bsz, n, attn.num_heads, attn.head_dim).transpose(1, 2)


def tempme_layer_forward(layer, x: torch.Tensor, state: TempMeState, index: int, temporal_pos=None) -> torch.Tensor:
    config = state.config
    role, level = config.layer_role(index)
    if role == "clipme":
        x = join_clips(state, x, config.frame_groups[level],
                       temporal_pos[level] if temporal_pos is not None else None)
        r = share_to_r(config.cross_clip, x.shape[1], state.frames_per_clip)
        if r:
            x = merge_r(state, x, _keys(layer, x), r, state.frames_per_clip)
    attn = layer.self_attn
    ctx, keys = sdpa_with_keys(layer.layer_norm1(x), attn.q_proj, attn.k_proj, attn.v_proj, attn.num_heads,
                               attn.head_dim, attn.scale, attn.dropout if layer.training else 0.0, state)
    x = x + attn.out_proj(ctx)
    if role == "imgme":
        r, protected = imgme_merges(config.imgme_r, x.shape[1]), 1
    else:
        share = config.intra_clip if role == "clipme" else config.final_intra_clip
        r, protected = share_to_r(share, x.shape[1], state.frames_per_clip), state.frames_per_clip
    x = merge_r(state, x, keys, r, protected)
    x = x + layer.mlp(layer.layer_norm2(x))
    state.trace.append(x.shape[0] * x.shape[1] // state.videos)
    return x

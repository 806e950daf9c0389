"""The baselines TempMe is compared with: per-frame encoding with mean pooling (CLIP4Clip's "meanP"), with all
tokens or with per-frame ToMe at TempMe's token budget (``leanops.tome`` on the vision tower)."""
from __future__ import annotations

import torch
from torch import nn

from .. import tome
from .patch import _projection, vision_tower


def encode_frames(model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """``[B, F, 3, H, W]`` -> ``[B, D]``: every frame through the image path (class token, post-layernorm,
    projection when the model has one), then the mean over frames."""
    if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() != 5:
        raise ValueError(f"pixel_values must be a 5-D tensor [B, F, 3, H, W], got "
                         f"{tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values)}")
    videos, frames = pixel_values.shape[:2]
    pooled = vision_tower(model)(pixel_values=pixel_values.flatten(0, 1)).pooler_output
    proj = _projection(model)
    feats = proj(pooled) if proj is not None else pooled
    return feats.view(videos, frames, -1).mean(1)


def matched_tome_schedule(trace: list[int], num_frames: int) -> list[int]:
    """Per-layer r of per-frame ToMe whose tokens per frame after every layer are TempMe's tokens per video
    divided by the frame count, rounded (ToMe's merges per layer are capped by its bipartite split)."""
    if not trace or trace[0] % num_frames:
        raise ValueError(f"trace must start with a token count divisible by num_frames={num_frames}, got {trace[:1]}")
    per_frame, schedule = trace[0] // num_frames, []
    for total in trace[1:]:
        target = max(1, round(total / num_frames))
        r = max(0, min(per_frame - target, (per_frame - 1) // 2))  # with a class token |A| = floor((n-1)/2)
        schedule.append(r)
        per_frame -= r
    return schedule


def patch_tome_matched(model: nn.Module, trace: list[int], num_frames: int) -> list[int]:
    """Patch the vision tower with per-frame ToMe at TempMe's budget; returns the r schedule used."""
    schedule = matched_tome_schedule(trace, num_frames)
    tome.patch(vision_tower(model), r=schedule)
    return schedule

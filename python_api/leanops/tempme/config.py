"""``TempMeConfig``: where and how much TempMe merges, checked against a model's depth and frame count,
and the token arithmetic it implies (``planned_trace``), computed without running the model."""
from __future__ import annotations

import math
from dataclasses import dataclass

from .._token_layout import effective_r

_EPS = 1e-9  # floor(p * n) with a guard against float error (0.29 * 100 = 28.999999999999996)


@dataclass(frozen=True)
class TempMeConfig:
    """TempMe's ViT-B/32 setting by default (arXiv 2409.01156).

    imgme_r: tokens merged inside each frame after attention in every layer before the first ClipMe layer.
    merge_layers: the ClipMe layers (strictly increasing, below the depth).
    frame_groups: clips joined at each ClipMe layer (2, 2, 3: 12 frames -> 6 -> 3 -> 1 clip).
    cross_clip: share of a joined clip's tokens merged before attention in a ClipMe layer.
    intra_clip: share of a clip's tokens merged after attention in a ClipMe layer.
    final_intra_clip: share merged after attention in every later layer that is not a ClipMe layer.
    temporal_pos: add a learned temporal position embedding per ClipMe level (zeros at start).
    Each merge count is ``floor(share * tokens in the clip)``, class tokens counted, then clamped to what the
    bipartite split allows.
    """

    imgme_r: int = 2
    merge_layers: tuple = (8, 9, 10)
    frame_groups: tuple = (2, 2, 3)
    cross_clip: float = 0.3
    intra_clip: float = 0.1
    final_intra_clip: float = 0.1
    temporal_pos: bool = True

    def __post_init__(self):
        if isinstance(self.imgme_r, bool) or not isinstance(self.imgme_r, int) or self.imgme_r < 0:
            raise ValueError(f"imgme_r must be an int >= 0, got {self.imgme_r!r}")
        for name in ("merge_layers", "frame_groups"):
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)) or any(isinstance(v, bool) or not isinstance(v, int)
                                                           for v in value):
                raise TypeError(f"{name} must be a tuple of ints, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        if len(self.merge_layers) != len(self.frame_groups):
            raise ValueError(f"merge_layers and frame_groups need one entry each per ClipMe level, got "
                             f"{len(self.merge_layers)} and {len(self.frame_groups)}")
        if any(g < 1 for g in self.frame_groups):
            raise ValueError(f"frame_groups must be >= 1 each, got {self.frame_groups}")
        if any(layer < 0 for layer in self.merge_layers) or any(
                b <= a for a, b in zip(self.merge_layers, self.merge_layers[1:])):
            raise ValueError(f"merge_layers must be strictly increasing layer indices >= 0, got {self.merge_layers}")
        for name in ("cross_clip", "intra_clip", "final_intra_clip"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be a proportion in [0, 1), got {value!r}")

    @property
    def frames_per_video_clip(self) -> int:
        """Frames in one clip after the last ClipMe level (the product of the groups)."""
        return math.prod(self.frame_groups)

    def check(self, num_layers: int, num_frames: int) -> None:
        """Clear errors for a depth or frame count this config cannot serve."""
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"num_frames must be a positive int, got {num_frames!r}")
        if self.merge_layers and self.merge_layers[-1] >= num_layers:
            raise ValueError(f"merge_layers {self.merge_layers} go beyond the model's depth ({num_layers} layers, "
                             f"indices 0..{num_layers - 1})")
        if num_frames % self.frames_per_video_clip:
            raise ValueError(f"num_frames={num_frames} is not divisible by the product of frame_groups "
                             f"{self.frame_groups} (= {self.frames_per_video_clip})")

    def layer_role(self, layer: int) -> tuple[str, int]:
        """``("imgme", -1)``, ``("clipme", level)`` or ``("intra", -1)`` for a layer index."""
        if layer in self.merge_layers:
            return "clipme", self.merge_layers.index(layer)
        if not self.merge_layers or layer < self.merge_layers[0]:
            return "imgme", -1
        return "intra", -1


def share_to_r(share: float, n: int, num_protected: int) -> int:
    """Tokens to merge: ``floor(share * n)`` clamped to the bipartite split (A tokens, B non-empty)."""
    r = int(math.floor(share * n + _EPS))
    return effective_r(n, min(r, max(n - num_protected, 0)), num_protected)


def imgme_merges(r: int, n: int) -> int:
    """ImgMe's r clamped to one frame of ``n`` tokens with its class token protected."""
    return effective_r(n, min(r, max(n - 1, 0)), 1)


def planned_trace(config: TempMeConfig, num_layers: int, num_frames: int, tokens_per_frame: int) -> list[int]:
    """Tokens per video at the input and after every layer, by the arithmetic alone (no model run).

    ViT-B/32, 224 px, 12 frames, defaults: 600, 576, ..., 408 (ImgMe r=2 for 8 layers: 50 -> 34 per frame),
    264 (6 clips of 68 -20 cross -4 intra), 168 (3 x (88 -26 -6)), 107 (168 -50 -11), 97 (107 -10)."""
    config.check(num_layers, num_frames)
    clips, frames_per_clip, n = num_frames, 1, tokens_per_frame
    trace = [clips * n]
    for layer in range(num_layers):
        role, level = config.layer_role(layer)
        if role == "imgme":
            n -= imgme_merges(config.imgme_r, n)
        elif role == "clipme":
            group = config.frame_groups[level]
            clips, frames_per_clip, n = clips // group, frames_per_clip * group, n * group
            n -= share_to_r(config.cross_clip, n, frames_per_clip)
            n -= share_to_r(config.intra_clip, n, frames_per_clip)
        else:
            n -= share_to_r(config.final_intra_clip, n, frames_per_clip)
        trace.append(clips * n)
    return trace

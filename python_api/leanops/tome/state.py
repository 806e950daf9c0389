"""Per-forward state shared by the patched layers of one model."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ToMeState:
    r: list[int]
    prop_attn: bool = True
    trace_source: bool = False
    num_protected: int = 1
    ideal: bool = False  # benchmark baseline: drop tokens with no merge cost
    layer: int = 0
    size: torch.Tensor | None = None  # [B, N] float32: tokens merged into each slot (0 = padding)
    slot_map: torch.Tensor | None = None  # [B, N0]: output slot of every input token
    has_padding: bool = False  # set once from the mask: merged sizes are never 0 without padding
    merged: bool = False  # a layer of this forward has merged: sizes may differ from 1 (no device sync)
    tokens_per_layer: list[int] = field(default_factory=list)

    def reset(self) -> None:
        self.layer = 0
        self.size = None
        self.slot_map = None
        self.has_padding = False
        self.merged = False
        self.tokens_per_layer = []

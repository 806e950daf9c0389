"""Per-forward state of a TempMe-patched vision tower: ToMe's state (sizes for proportional attention,
the ``merged`` flag) plus the clip layout and the token trace."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..tome.state import ToMeState
from .config import TempMeConfig


@dataclass
class TempMeState(ToMeState):
    config: TempMeConfig = field(default_factory=TempMeConfig)
    num_frames: int = 1
    videos: int = 0  # videos in the current forward
    frames_per_clip: int = 1  # class tokens at the front of every sequence
    trace: list = field(default_factory=list)  # tokens per video: input, then after every layer

    def start(self, videos: int, size) -> None:
        self.reset()
        self.videos, self.frames_per_clip, self.size = videos, 1, size
        self.trace = [size.shape[0] * size.shape[1] // videos]

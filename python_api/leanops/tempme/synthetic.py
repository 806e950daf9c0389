"""Moving-shapes videos with a known ground truth: a coloured shape moves in a straight line at a constant
speed over a textured background; the caption names the object, colour, motion direction and speed.

Hard negatives: videos whose captions differ only in the direction (4 directions) or only in the speed
(2 speeds). The test set holds every direction and speed of each (shape, colour), so every caption matches
exactly one test video. Start positions are random, so a video's set of frames (ignoring their order) does
not tell left from right: order-free pooling of per-frame features cannot separate direction negatives.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (0.9, 0.1, 0.1), "green": (0.1, 0.8, 0.2), "blue": (0.15, 0.3, 0.95), "yellow": (0.95, 0.85, 0.1)}
DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
SPEEDS = {"slow": 0.022, "fast": 0.05}  # image widths travelled per frame (12 frames: 24% or 55% of the width)
MEAN, STD = 0.5, 0.25  # pixel normalisation


@dataclass(frozen=True)
class VideoSpec:
    shape: str
    colour: str
    direction: str
    speed: str

    @property
    def caption(self) -> str:
        return f"a {self.speed} {self.colour} {self.shape} moving {self.direction}"

    @property
    def image_caption(self) -> str:
        return f"a {self.colour} {self.shape}"


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Muted texture: low-frequency noise plus stripes at a random angle, grey-ish so shapes stand out."""
    coarse = rng.random((3, size // 8 + 2, size // 8 + 2))
    idx = np.linspace(0, coarse.shape[1] - 1.001, size)
    i0 = idx.astype(int)
    frac = idx - i0
    rows = coarse[:, i0] * (1 - frac)[None, :, None] + coarse[:, i0 + 1] * frac[None, :, None]
    noise = rows[:, :, i0] * (1 - frac)[None, None, :] + rows[:, :, i0 + 1] * frac[None, None, :]
    yy, xx = np.mgrid[0:size, 0:size]
    angle, period = rng.uniform(0, np.pi), rng.uniform(3, 8)
    stripes = 0.5 + 0.5 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    return (0.25 + 0.25 * noise + 0.15 * stripes[None]).astype(np.float32)


def _mask(shape: str, cx: float, cy: float, radius: float, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        return dx**2 + dy**2 <= radius**2
    if shape == "square":
        return (np.abs(dx) <= radius * 0.85) & (np.abs(dy) <= radius * 0.85)
    return (dy <= radius * 0.8) & (dy >= -radius) & (np.abs(dx) <= (dy + radius) * 0.6)  # triangle, apex up


def render(spec: VideoSpec, rng: np.random.Generator, frames: int = 12, size: int = 32) -> torch.Tensor:
    """``[frames, 3, size, size]`` normalised video of ``spec``; the whole path stays inside the frame."""
    radius = size * 0.16
    step = SPEEDS[spec.speed] * size
    ux, uy = DIRECTIONS[spec.direction]
    travel = step * (frames - 1)
    lo, hi = radius + 1, size - radius - 1
    # start so that start + u * travel stays within [lo, hi] on both axes
    sx = rng.uniform(lo - min(0, ux) * travel, hi - max(0, ux) * travel)
    sy = rng.uniform(lo - min(0, uy) * travel, hi - max(0, uy) * travel)
    bg = _background(rng, size)
    colour = np.asarray(COLOURS[spec.colour], dtype=np.float32)[:, None, None]
    video = np.empty((frames, 3, size, size), dtype=np.float32)
    for f in range(frames):
        m = _mask(spec.shape, sx + ux * step * f, sy + uy * step * f, radius, size)
        video[f] = np.where(m[None], colour, bg)
    return (torch.from_numpy(video) - MEAN) / STD


def all_specs() -> list[VideoSpec]:
    return [VideoSpec(s, c, d, v) for s in SHAPES for c in COLOURS for d in DIRECTIONS for v in SPEEDS]


def make_videos(specs: list[VideoSpec], seed: int, frames: int = 12, size: int = 32) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.stack([render(spec, rng, frames, size) for spec in specs])


def train_specs(n: int, seed: int) -> list[VideoSpec]:
    rng = np.random.default_rng(seed)
    pool = all_specs()
    return [pool[i] for i in rng.integers(0, len(pool), n)]


class WordTokenizer:
    """Word-level tokenizer over the generator's caption words: ``<bos> words <eos> <pad>...``."""

    def __init__(self, length: int = 8):
        words = sorted({w for spec in all_specs() for w in (spec.caption + " " + spec.image_caption).split()})
        self.vocab = ["<pad>", "<bos>"] + words + ["<eos>"]
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.length = length
        self.pad_id, self.bos_id, self.eos_id = 0, 1, len(self.vocab) - 1

    def __call__(self, captions: list[str]) -> dict:
        ids = torch.full((len(captions), self.length), self.pad_id, dtype=torch.long)
        for row, caption in enumerate(captions):
            tokens = [self.bos_id] + [self.index[w] for w in caption.split()] + [self.eos_id]
            if len(tokens) > self.length:
                raise ValueError(f"caption {caption!r} is longer than {self.length - 2} words")
            ids[row, : len(tokens)] = torch.tensor(tokens)
        return {"input_ids": ids, "attention_mask": (ids != self.pad_id).long()}

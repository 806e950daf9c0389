"""Python-side argument checks: ValueError/TypeError that name the argument."""
from __future__ import annotations

import torch

FEATURE_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def tensor(t, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    return t


def rank(t: torch.Tensor, name: str, dims: int, layout: str) -> None:
    tensor(t, name)
    if t.dim() != dims:
        raise ValueError(f"{name} must be {dims}-D {layout}, got shape {tuple(t.shape)}")


def feature_dtype(t: torch.Tensor, name: str) -> None:
    if t.dtype not in FEATURE_DTYPES:
        raise TypeError(f"{name} must be float32, float64, float16 or bfloat16, got {t.dtype}")


def index_dtype(t: torch.Tensor, name: str) -> None:
    if t.dtype != torch.int64:
        raise TypeError(f"{name} must be int64, got {t.dtype}")


def same_device(t: torch.Tensor, name: str, like: torch.Tensor, like_name: str) -> None:
    if t.device != like.device:
        raise ValueError(f"{name} is on {t.device} but {like_name} is on {like.device}")


def integer(v, name: str, low: int | None = None, high: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if low is not None and v < low:
        raise ValueError(f"{name} must be >= {low}, got {v}")
    if high is not None and v > high:
        raise ValueError(f"{name} must be <= {high}, got {v}")
    return v


def index_range(t: torch.Tensor, name: str, low: int, high: int) -> None:
    """All values in [low, high). Costs a device sync on GPU: skipped for trusted indices."""
    if t.numel() and (int(t.min()) < low or int(t.max()) >= high):
        raise ValueError(f"{name} holds values outside [{low}, {high}): min {int(t.min())}, max {int(t.max())}")

"""Launch and registration helpers shared by every Triton kernel family (no family imports another)."""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from torch.library import custom_op, triton_op, wrap_triton

# On a GPU the ops are triton_ops, which torch.compile traces into. The CPU interpreter cannot be traced
# (it copies tensor data), so there they are opaque custom ops whose fake kernels ops/<family>.py registers.
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
register_op = custom_op if INTERPRETED else triton_op


def launch(kernel, grid, *args, **meta):
    wrap_triton(kernel)[grid](*args, **meta)


def acc_tl_dtype(t: torch.Tensor):
    """Accumulator dtype: float64 for double inputs (gradcheck), else float32."""
    return tl.float64 if t.dtype == torch.float64 else tl.float32


def pow2(v: int, lo: int = 16, hi: int = 1 << 30) -> int:
    """Power-of-two block size for ``v`` elements, clamped to ``[lo, hi]``."""
    return max(lo, min(hi, triton.next_power_of_2(max(int(v), 1))))

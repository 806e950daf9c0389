"""Backend choice shared by all op families.

CPU tensors use the C++ kernel; CUDA tensors use the CUDA kernel when it was built, else Triton
(no GPU measurement has picked a winner yet: see docs/DESIGN.md); ``backend=`` forces one.
"""
from __future__ import annotations

import functools
import os

import torch

from . import _library

BACKENDS = ("reference", "cpp", "triton", "cuda")


@functools.lru_cache(maxsize=None)
def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


def triton_runs_on_cpu() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def choose(tensor: torch.Tensor, backend: str | None) -> str:
    if backend is not None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS} or None, got {backend!r}")
        if backend == "cpp" and (not _library.compiled_available() or tensor.device.type != "cpu"):
            raise ValueError(f"backend='cpp' needs the compiled library and CPU tensors (got {tensor.device})")
        if backend == "cuda" and (not _library.cuda_compiled() or tensor.device.type != "cuda"):
            raise ValueError(f"backend='cuda' needs a CUDA build of leanops and CUDA tensors (got {tensor.device})")
        if backend == "triton":
            if not triton_available():
                raise ValueError("backend='triton' needs the triton package")
            if tensor.device.type == "cpu" and not triton_runs_on_cpu():
                raise ValueError("backend='triton' on CPU tensors needs TRITON_INTERPRET=1 set before import")
        return backend
    if tensor.device.type == "cuda":
        if _library.cuda_compiled():
            return "cuda"
        return "triton" if triton_available() else "reference"
    return "cpp" if _library.compiled_available() else "reference"

"""Tolerant loading of the compiled library (torchao style): importing leanops never fails because
``leanops._C`` is missing or broken; it warns once and the ops fall back to the pure-PyTorch reference."""
from __future__ import annotations

import importlib
import os
import warnings

import torch  # noqa: F401  loads libtorch, which leanops._C links against

_C = None
_ERROR: str | None = None

try:
    if os.environ.get("LEANOPS_DISABLE_COMPILED") == "1":  # e.g. to test the fallback
        raise ImportError("disabled by LEANOPS_DISABLE_COMPILED=1")
    _C = importlib.import_module("leanops._C")  # loading it registers torch.ops.leanops.*
except Exception as exc:  # noqa: BLE001 - any failure means: no compiled backend
    _ERROR = f"{type(exc).__name__}: {exc}"
    if os.environ.get("LEANOPS_QUIET") != "1":
        warnings.warn(
            f"leanops: compiled library not loaded ({_ERROR}); using the pure-PyTorch reference ops",
            RuntimeWarning,
            stacklevel=2,
        )


def compiled_available() -> bool:
    return _C is not None


def cuda_compiled() -> bool:
    return _C is not None and bool(_C.build_info().get("cuda"))


def load_error() -> str | None:
    return _ERROR

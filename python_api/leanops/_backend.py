"""Backend choice shared by all op families.

CPU tensors use the C++ kernel; CUDA tensors use the CUDA kernel when it was built, else Triton
(no GPU measurement has picked a winner yet: see docs/DESIGN.md); ``backend=`` forces one.

Triton is loaded tolerantly (like the compiled library): when ``triton`` is missing, broken, too old, or not
the one the installed torch was built for, leanops still imports, the Triton backend is simply absent, and
``build_info()["triton"]`` says why.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import warnings

import torch

from . import _library

BACKENDS = ("reference", "cpp", "triton", "cuda")
TRITON_FAMILIES = ("merge", "pool", "verify")
# Distributions that provide the ``triton`` module and that a torch wheel may pin (CUDA, nightly, ROCm, XPU).
_TRITON_DISTS = ("triton", "pytorch-triton", "pytorch-triton-rocm", "pytorch-triton-xpu")

_TRITON_ERROR: str | None = None


def _torch_triton_pin() -> str | None:
    """The triton version the installed torch wheel pins (CUDA/ROCm builds do; CPU builds pin none)."""
    try:
        requires = importlib.metadata.requires("torch") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for req in requires:
        match = re.match(r"\s*([A-Za-z0-9_.-]+)\s*\(?\s*==\s*([0-9][^\s;,)]*)", req)
        if match and match.group(1).lower() in _TRITON_DISTS:
            return match.group(2)
    return None


def _triton_problem() -> str | None:
    """Why the Triton backend cannot be used here, or None. Importing the kernel modules registers their ops."""
    if os.environ.get("LEANOPS_DISABLE_TRITON") == "1":
        return "disabled by LEANOPS_DISABLE_TRITON=1"
    try:
        import triton
        import triton.language  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - missing or broken install: no Triton backend
        return f"import triton failed ({type(exc).__name__}: {exc})"
    version = str(getattr(triton, "__version__", ""))
    if not re.match(r"\d+\.\d+", version):
        return f"triton has no usable __version__ ({version!r}); not a complete triton install"
    pin = _torch_triton_pin()
    if pin is not None and version.split(".")[:2] != pin.split(".")[:2]:
        return f"triton {version} does not match the triton {pin} that torch {torch.__version__} was built with"
    if not all(hasattr(torch.library, name) for name in ("triton_op", "wrap_triton")):
        return f"torch {torch.__version__} lacks torch.library.triton_op/wrap_triton"
    try:
        for family in ("_common",) + TRITON_FAMILIES:
            importlib.import_module(f"leanops.triton_kernels.{family}")
    except Exception as exc:  # noqa: BLE001 - e.g. an API this triton lacks
        return f"loading leanops.triton_kernels.{family} failed ({type(exc).__name__}: {exc})"
    return None


_TRITON_CHECKED = False


def triton_available() -> bool:
    """True when every Triton kernel module loaded; else ``triton_error()`` says why (warned once if triton
    is installed but unusable; a missing triton is normal and stays silent). Checked once; later calls read
    module state, which torch.compile folds to a constant (it would trace into a cache wrapper)."""
    global _TRITON_CHECKED, _TRITON_ERROR
    if not _TRITON_CHECKED:
        _TRITON_ERROR = _triton_problem()
        _TRITON_CHECKED = True
        silent = _TRITON_ERROR is None or "No module named 'triton'" in _TRITON_ERROR or \
            _TRITON_ERROR.startswith("disabled")
        if not silent and os.environ.get("LEANOPS_QUIET") != "1":
            warnings.warn(f"leanops: Triton backend not available ({_TRITON_ERROR})", RuntimeWarning, stacklevel=2)
    return _TRITON_ERROR is None


def triton_error() -> str | None:
    """Why the Triton backend is unavailable (None when it is available)."""
    triton_available()
    return _TRITON_ERROR


def triton_version() -> str | None:
    """Version of the triton the backend uses (None when unavailable)."""
    if not triton_available():
        return None
    import triton

    return str(triton.__version__)


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
                raise ValueError(f"backend='triton' is not available: {triton_error()}")
            if tensor.device.type == "cpu" and not triton_runs_on_cpu():
                raise ValueError("backend='triton' on CPU tensors needs TRITON_INTERPRET=1 set before import")
        return backend
    if tensor.device.type == "cuda":
        if _library.cuda_compiled():
            return "cuda"
        return "triton" if triton_available() else "reference"
    return "cpp" if _library.compiled_available() else "reference"

"""``leanops.build_info()``: what this installation can run, and what has been verified on a GPU."""
from __future__ import annotations

import torch

from . import _backend, _library
from ._version import __version__

# CUDA kernels count as tested only after a GPU run has passed their tests (see README).
CUDA_VERIFIED_ON_GPU: dict[str, str] = {}


def build_info() -> dict:
    compiled = _library._C.build_info() if _library.compiled_available() else {}
    backends = ["reference"]
    if compiled:
        backends.append("cpp")
        if compiled.get("cuda"):
            backends.append("cuda")
    if _backend.triton_available():
        backends.append("triton")
        triton = _backend.triton_version()
    else:
        triton = f"unavailable: {_backend.triton_error()}"
    return {
        "version": __version__,
        "torch_version": torch.__version__,
        "torch_version_built": compiled.get("torch_version_built"),
        "backends": backends,
        "cuda_archs": compiled.get("cuda_archs", ""),
        "cuda_kernels_tested_on_gpu": dict(CUDA_VERIFIED_ON_GPU) or "untested: never run on a GPU",
        "threads": compiled.get("threads", torch.get_num_threads()),
        "parallel_backend": compiled.get("parallel_backend", ""),
        "compiled_library_error": _library.load_error(),
        "triton": triton,
    }

"""Test set-up: Triton kernels run on CPU tensors under the interpreter when there is no GPU.

TRITON_INTERPRET must be set before triton is imported (leanops imports it), hence here.
"""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("LEANOPS_QUIET", "1")

from hypothesis import settings  # noqa: E402

# Reproducible runs by default (CI must not turn red on a new random draw); explore with
# LEANOPS_HYPOTHESIS=explore, and pin what it finds as an @example.
settings.register_profile("reproducible", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("LEANOPS_HYPOTHESIS", "reproducible"))

import leanops  # noqa: E402
from leanops import _backend, _library  # noqa: E402


def available_backends():
    """Every backend that can run here, with the device its tensors live on."""
    out = [("reference", "cpu")]
    if _library.compiled_available():
        out.append(("cpp", "cpu"))
    if _backend.triton_available():
        if torch.cuda.is_available():
            out.append(("triton", "cuda"))
        elif _backend.triton_runs_on_cpu():
            out.append(("triton", "cpu"))
    if _library.cuda_compiled() and torch.cuda.is_available():
        out.append(("cuda", "cuda"))
    return out


BACKENDS = available_backends()
KERNEL_BACKENDS = [b for b in BACKENDS if b[0] != "reference"]


def pytest_report_header(config):
    return f"leanops backends under test: {BACKENDS}; build: {leanops.build_info()['backends']}"


@pytest.fixture(params=KERNEL_BACKENDS, ids=[f"{b}-{d}" for b, d in KERNEL_BACKENDS])
def backend(request):
    return request.param

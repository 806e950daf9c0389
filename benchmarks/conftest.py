"""pytest-benchmark suites: anchor and our backends side by side on the same inputs.

LEANOPS_BENCH_QUICK=1 shrinks every case (CI runs them once that way with --benchmark-disable).
"""
import os

import pytest
import torch

QUICK = os.environ.get("LEANOPS_BENCH_QUICK") == "1"
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture
def device():
    return DEVICE

"""bipartite_match + merge_wavg: eager ToMe (anchor) vs leanops backends, ViT-B/16 and video shapes.

pytest-benchmark times each row on its own (group = case); the ratios anchor / provider with their
spread over interleaved repeats come from `leanops bench merge` (leanops.bench.timing).
"""
import pytest
import torch

from leanops.bench.merge import OP_CASES, QUICK_OP_CASES, op_inputs, op_providers
from conftest import DEVICE, QUICK

CASES = QUICK_OP_CASES if QUICK else OP_CASES
DTYPES = [torch.float32] if DEVICE == "cpu" else [torch.float16, torch.bfloat16]
PROVIDERS = list(op_providers(DEVICE))


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0])
def test_merge_step(benchmark, case, dtype, provider):
    name, b, n, c, d, r = case
    benchmark.group = f"merge {name} {str(dtype)[6:]}"
    metric, x, size = op_inputs(b, n, c, d, DEVICE, dtype)
    fn = op_providers(DEVICE)[provider]

    def step():
        out = fn(metric, x, size, r)
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        return out

    out, out_size = benchmark(step)
    assert out.shape == (b, n - min(r, (n - 1) // 2), c)
    assert torch.isfinite(out.float()).all() and out_size.sum().item() == pytest.approx(b * n)

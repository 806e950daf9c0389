"""jagged_attention_pool vs DIN-style padded eager pooling and eager jagged PyTorch (segment ops):
B=1024, H=4, D=32, log-normal lengths (mean ~50, max 1000); forward and forward+backward.
pytest-benchmark times each row on its own; ratios anchor / provider with their spread over interleaved
repeats, and peak memory, come from `leanops bench pool` (leanops.bench.timing)."""
import pytest
import torch

from leanops.bench.pool import FULL, QUICK as QUICK_SHAPE, prepare, providers, step
from conftest import DEVICE, QUICK

SHAPE = QUICK_SHAPE if QUICK else FULL
DTYPE = torch.float32 if DEVICE == "cpu" else torch.float16


@pytest.mark.parametrize("provider", list(providers(DEVICE)))
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
def test_pool(benchmark, mode, provider):
    benchmark.group = f"pool {mode} B={SHAPE['b']} H={SHAPE['h']} D={SHAPE['d']}"
    a = prepare(SHAPE, DEVICE, DTYPE, grad=mode == "fwd+bwd")
    fn = providers(DEVICE)[provider]

    def run():
        out = step(fn, a, mode == "fwd+bwd")
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        return out

    out = benchmark(run)
    assert out.shape == (SHAPE["b"], SHAPE["h"], SHAPE["d"]) and torch.isfinite(out.float()).all()

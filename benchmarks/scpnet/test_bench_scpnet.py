"""SCPNet training step and inference vs the same backbone with a linear head (the SPLC baseline model), the
label side (prompts + GCN) once per step, and the per-image ablation. pytest-benchmark times each row on its
own; ratios with their spread come from `leanops bench scpnet` (leanops.bench.timing)."""
import pytest
import torch

from leanops.bench.scpnet import FULL, QUICK as QUICK_SHAPE, build, providers
from conftest import DEVICE, QUICK

SHAPE = QUICK_SHAPE if QUICK else FULL
_BUILT = build(SHAPE, DEVICE)
_FNS = providers(*_BUILT)


@pytest.mark.parametrize("provider", list(_FNS))
def test_scpnet(benchmark, provider):
    benchmark.group = f"scpnet batch={SHAPE['batch']} image={SHAPE['image']}"

    def run():
        out = _FNS[provider]()
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        return out

    out = benchmark(run)
    assert torch.isfinite(out).all()

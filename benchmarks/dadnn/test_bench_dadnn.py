"""DADNN per-scene heads: the batched pass (scene tiles) and the per-row weight gather against a Python loop
over scenes, 20 and 200 scenes, batch 4096, forward and forward+backward; and one Adam training step of
DADNN against the shared model. pytest-benchmark times each row on its own; the ratios with their spread
come from `leanops bench dadnn` (interleaved repeats, leanops.bench.timing)."""
import pytest
import torch

from conftest import DEVICE, QUICK
from leanops.bench.dadnn import (HEAD_QUICK, HEAD_SHAPE, STEP_ROWS, STEP_ROWS_QUICK, head_inputs, head_providers,
                                 step_models, step_providers)

SHAPE = HEAD_QUICK if QUICK else HEAD_SHAPE


@pytest.mark.parametrize("provider", ["python loop over scenes", "batched (scene tiles)", "per-row weight gather"])
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("n_scenes", SHAPE["scenes"])
def test_heads(benchmark, n_scenes, mode, provider):
    benchmark.group = f"dadnn heads {mode} S={n_scenes} B={SHAPE['rows']}"
    heads, x, scene = head_inputs(SHAPE["rows"], SHAPE["in_dim"], SHAPE["hidden"], n_scenes,
                                  grad=mode == "fwd+bwd", device=DEVICE)
    fn = head_providers(heads, x, scene, mode == "fwd+bwd")[provider]
    out = benchmark(fn)
    assert out.shape == (SHAPE["rows"], 1) and torch.isfinite(out).all()


@pytest.mark.parametrize("model", list(step_models()))
def test_train_step(benchmark, model):
    rows = STEP_ROWS_QUICK if QUICK else STEP_ROWS
    benchmark.group = f"dadnn Adam step batch {rows}"
    fns, _ = step_providers(rows, DEVICE)
    loss = benchmark(fns[model])
    assert torch.isfinite(loss)

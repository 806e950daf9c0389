"""One PYRA merge step (pyra_merge: gates fused into merge_wavg) vs the same formula in eager PyTorch (the
anchor), plain ToMe merge_wavg (ablation) and, forward+backward, pyra_merge with plain autograd through its
row gathers (ablation), at ViT-B/16 and MiniLM shapes, forward and forward+backward;
and end-to-end inference of exported PYRA- vs ToMe-patched MiniLM-shaped BERTs at the "high" schedule.
pytest-benchmark times each row on its own; the ratios with their spread over interleaved repeats come
from `leanops bench pyra` (leanops.bench.timing)."""
import pytest
import torch

from leanops.bench.pyra import (E2E, QUICK_E2E, QUICK_STEP_SHAPES, STEP_SHAPES, e2e_models, run_step, step_inputs,
                                step_providers)
from conftest import DEVICE, QUICK

pytestmark = pytest.mark.skipif(DEVICE != "cpu", reason="leanops bench pyra is CPU-only for now")
SHAPES = QUICK_STEP_SHAPES if QUICK else STEP_SHAPES


CASES = [(mode, p) for mode in ("fwd", "fwd+bwd") for p in step_providers(backward=mode == "fwd+bwd")]


@pytest.mark.parametrize("mode,provider", CASES)
@pytest.mark.parametrize("shape", list(SHAPES))
def test_pyra_merge_step(benchmark, shape, mode, provider):
    s = SHAPES[shape]
    benchmark.group = f"pyra merge step {shape} {mode}"
    a = step_inputs(**s, grad=mode == "fwd+bwd")
    fn = step_providers(backward=mode == "fwd+bwd")[provider]

    def go():
        with torch.set_grad_enabled(mode == "fwd+bwd"):
            return run_step(fn, a, mode == "fwd+bwd")

    out = benchmark(go)
    assert out.shape == (s["b"], s["n"] - s["r"], s["c"]) and torch.isfinite(out).all()


@pytest.mark.parametrize("which", ["ToMe", "PYRA"])
def test_pyra_end_to_end(benchmark, which):
    e2e = QUICK_E2E if QUICK else E2E
    benchmark.group = f"pyra end to end {e2e}"
    tome_model, pyra_model, ids = e2e_models(**e2e)
    model = pyra_model if which == "PYRA" else tome_model

    def go():
        with torch.no_grad():
            return model(input_ids=ids).last_hidden_state

    out = benchmark(go)
    assert out.shape[0] == e2e["batch"] and out.shape[1] < e2e["tokens"]

"""verify_greedy / verify_sampling vs the eager float32 PyTorch code a user writes (leanops.bench.verify:
eager_verify_greedy / eager_verify_sampling, as HF transformers and vLLM do it) at B=16 and 64, S=8,
V=32000 and 128000. pytest-benchmark times each row on its own; ratios anchor / provider with their spread
over interleaved repeats come from `leanops bench verify` (leanops.bench.timing)."""
import pytest
import torch

from leanops.bench.verify import CASES, QUICK_CASES, inputs, providers
from conftest import DEVICE, QUICK

PROVIDERS = providers(DEVICE)


@pytest.mark.parametrize("kind,provider", [(k, p) for k, ps in PROVIDERS.items() for p in ps])
@pytest.mark.parametrize("case", QUICK_CASES if QUICK else CASES, ids=lambda c: f"B{c[0]}-S{c[1]}-V{c[2]}")
def test_verify(benchmark, case, kind, provider):
    benchmark.group = f"verify {kind} B={case[0]} S={case[1]} V={case[2]}"
    a = inputs(*case, device=DEVICE)
    fn = PROVIDERS[kind][provider]

    def run():
        out = fn(a)
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        return out

    accepted, nxt = benchmark(run)
    assert accepted.shape == (case[0],) and bool(((accepted >= 0) & (accepted <= case[1])).all())
    assert bool(((nxt >= 0) & (nxt < case[2])).all())

"""Allocation + VCG for one request (20 ads, 30 organic items, 10 slots, at most 3 ads) with a trained
list-aware click model: the loop of unbatched searches (anchor), the loop of step-batched searches
(ablation) and leanops.blend.vcg with batched re-solves. pytest-benchmark times each row on its own;
ratios with their spread come from `leanops bench blend` (leanops.bench.timing)."""
import pytest
import torch

from leanops.bench.blend import ANCHOR, OURS, PAGE, providers, trained_setup
from conftest import QUICK

MODEL, REQUESTS = trained_setup(n_requests=1, log_requests=20 if QUICK else 120, epochs=1 if QUICK else 2)
PROVIDERS = providers(MODEL, REQUESTS)


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_blend_vcg(benchmark, provider):
    benchmark.group = f"blend allocation + VCG {PAGE}"
    out = benchmark(PROVIDERS[provider](0))
    assert out.slate.shape == (PAGE["n_slots"],)
    assert torch.equal(out.price_per_click, PROVIDERS[OURS](0)().price_per_click)
    assert (out.price_per_click <= REQUESTS.value[0][out.slate].double() + 1e-9).all()  # IR

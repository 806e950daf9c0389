"""PDG decoding (greedy / beam 4, with and without copy, with and without the KV cache) and training steps.
pytest-benchmark times each row on its own; ratios with their spread come from `leanops bench pdg`."""
import pytest

from leanops.bench.pdg import decode_providers, setup, train_providers
from conftest import QUICK

CAT, GENS, SHAPE = setup(QUICK)
DECODE = decode_providers(CAT, GENS, SHAPE)
TRAIN = train_providers(CAT, GENS, SHAPE)


@pytest.mark.parametrize("provider", list(DECODE))
def test_decode(benchmark, provider):
    benchmark.group = f"pdg decode {SHAPE['batch']} items x {SHAPE['max_len']} tokens"
    out = benchmark(DECODE[provider])
    assert len(out) == SHAPE["batch"] and all(len(x) == SHAPE["max_len"] for x in out)


@pytest.mark.parametrize("provider", list(TRAIN))
def test_train_step(benchmark, provider):
    benchmark.group = "pdg train step (32 products)"
    benchmark(TRAIN[provider])

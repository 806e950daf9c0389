"""EM update: numpy vectorised vs the per-unit Python loop (anchor) and the gather+bincount ablation, on
10^6 units x 3 arms (10^5 with LEANOPS_BENCH_QUICK=1); one allocate on the SQLite store. pytest-benchmark
times each row on its own; ratios with their spread come from `leanops bench bandit`."""
import os

import numpy as np
import pytest

from leanops.bandit import em_estimate, em_estimate_loop
from leanops.bench.bandit import CYCLES, FULL, QUICK as QUICK_SHAPE, build_store, em_bincount_gather, logged_units
from conftest import QUICK

SHAPE = QUICK_SHAPE if QUICK else FULL
PROVIDERS = {"per-unit loop": lambda d: em_estimate_loop(*d, cycles=CYCLES),
             "vectorised": lambda d: em_estimate(*d, cycles=CYCLES),
             "gather+bincount": lambda d: em_bincount_gather(*d, cycles=CYCLES)}


@pytest.fixture(scope="module")
def data():
    return logged_units(SHAPE["units"])


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_em_update(benchmark, provider, data):
    benchmark.group = f"EM update {SHAPE['units']} units x 3 arms, {CYCLES} cycles"
    theta, lam = benchmark(PROVIDERS[provider], data)
    np.testing.assert_allclose(theta, em_estimate(*data, cycles=CYCLES)[0], rtol=1e-9)


def test_store_allocate(benchmark, tmp_path):
    benchmark.group = f"store allocate(500), {SHAPE['events']} events"
    ex, now = build_store(os.path.join(tmp_path, "b.db"), SHAPE["events"])
    picks = benchmark(lambda: ex.allocate(500, now=now, seed=0))
    assert len(picks) == 500 and set(picks) <= {"A", "B", "C"}
    ex.close()

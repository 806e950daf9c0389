"""A group-wise contrastive training step vs an MLE step at the same batch of observed pairs (tiny GPT-2,
real chatterbot-corpus batches), and the collation of one batch from the precomputed groups.
pytest-benchmark times each row on its own; the cost ratios with their spread over interleaved repeats
come from `leanops bench contrastive` (leanops.bench.timing)."""
import pytest

from leanops.bench.contrastive import FULL, QUICK as QUICK_CFG, providers, setup
from conftest import DEVICE, QUICK

CFG = QUICK_CFG if QUICK else FULL
_STATE = {}


def _providers():
    if not _STATE:
        s = setup(CFG, DEVICE)
        _STATE["steps"], _STATE["pipeline"] = providers(s, CFG)
    return _STATE


MLE = "MLE step (anchor)"
STEP_NAMES = [MLE] + [name for k in CFG["ks"]
                      for name in (f"contrastive step, K={4 * k}", f"ablation: contexts not shared, K={4 * k}")]


@pytest.mark.parametrize("provider", STEP_NAMES)
def test_training_step(benchmark, provider):
    benchmark.group = f"contrastive training step, batch {CFG['batch']}"
    out = benchmark(_providers()["steps"][provider])
    assert out["nll"] > 0 and (out["alpha"] > 0) == (provider != MLE)


@pytest.mark.parametrize("k", CFG["ks"])
def test_collate(benchmark, k):
    benchmark.group = "contrastive data pipeline"
    batch = benchmark(_providers()["pipeline"][f"collate one batch, K={4 * k}"])
    assert batch["context_ids"].shape[0] == CFG["batch"] * (1 + 4 * k)

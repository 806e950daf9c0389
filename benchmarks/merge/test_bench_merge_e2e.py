"""End to end: a ViT-B/16-sized Hugging Face model, unmerged vs ToMe r=13 vs the ideal (same token
counts, no merge cost). overhead = (ToMe - ideal) / ToMe from the group's rows."""
import pytest
import torch

pytest.importorskip("transformers")
import leanops.tome as tome  # noqa: E402
from leanops.bench.merge import vit_b16  # noqa: E402
from conftest import DEVICE, QUICK  # noqa: E402

DTYPE = torch.float32 if DEVICE == "cpu" else torch.float16
BATCH = 2 if QUICK else (8 if DEVICE == "cpu" else 64)


@pytest.fixture(scope="module")
def model():
    if QUICK:
        return vit_b16(DEVICE, DTYPE, layers=2, hidden=64, heads=4, mlp=128)
    return vit_b16(DEVICE, DTYPE)


@pytest.mark.parametrize("variant", ["no merging", "tome r=13", "ideal r=13"])
def test_vit_b16_forward(benchmark, model, variant):
    benchmark.group = f"ViT-B/16 end to end, batch {BATCH}, {str(DTYPE)[6:]}"
    tome.unpatch(model)
    if variant != "no merging":
        tome.patch(model, r=13, _ideal=variant.startswith("ideal"))
    pixels = torch.randn(BATCH, 3, 224, 224, device=DEVICE, dtype=DTYPE)

    def forward():
        with torch.inference_mode():
            out = model(pixel_values=pixels).last_hidden_state
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        return out

    out = benchmark.pedantic(forward, rounds=1 if QUICK else 3, warmup_rounds=1)
    tome.unpatch(model)
    assert out.shape[0] == BATCH and torch.isfinite(out.float()).all()

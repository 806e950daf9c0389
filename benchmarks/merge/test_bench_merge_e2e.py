"""End to end: a ViT-B/16-sized Hugging Face model, ToMe r=13 against no merging through the same
leanops forward at r=0 (the anchor), the ideal (same forward and token counts as ToMe, tokens dropped by
truncation: no merge cost) and Hugging Face's own unpatched layers (extra row).
pytest-benchmark times each row on its own; the interleaved ratios with their spread, and the merge
overhead ToMe / ideal - 1, come from `leanops bench merge` (leanops.bench.merge.bench_end_to_end)."""
import pytest
import torch

pytest.importorskip("transformers")
import leanops.tome as tome  # noqa: E402
from leanops.bench.merge import vit_b16  # noqa: E402
from conftest import DEVICE, QUICK  # noqa: E402

DTYPE = torch.float32 if DEVICE == "cpu" else torch.float16
BATCH = 2 if QUICK else (8 if DEVICE == "cpu" else 64)
VARIANTS = {"hf unpatched": None, "no merging (leanops r=0)": dict(r=0), "tome r=13": dict(r=13),
            "ideal r=13": dict(r=13, _ideal=True)}


@pytest.fixture(scope="module")
def model():
    if QUICK:
        return vit_b16(DEVICE, DTYPE, layers=2, hidden=64, heads=4, mlp=128)
    return vit_b16(DEVICE, DTYPE)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_vit_b16_forward(benchmark, model, variant):
    benchmark.group = f"ViT-B/16 end to end, batch {BATCH}, {str(DTYPE)[6:]} (anchor: no merging, leanops r=0)"
    tome.unpatch(model)
    if VARIANTS[variant] is not None:
        tome.patch(model, **VARIANTS[variant])
    pixels = torch.randn(BATCH, 3, 224, 224, device=DEVICE, dtype=DTYPE)

    def forward():
        with torch.inference_mode():
            out = model(pixel_values=pixels).last_hidden_state
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        return out

    out = benchmark.pedantic(forward, rounds=1 if QUICK else 5, warmup_rounds=1)
    tokens = tome.tokens_per_layer(model) if VARIANTS[variant] is not None else None
    tome.unpatch(model)
    assert out.shape[0] == BATCH and torch.isfinite(out.float()).all()
    if variant.startswith("no merging"):
        assert out.shape[1] == 197 and set(tokens) == {197}  # r=0: nothing merged

"""TempMe video encoders at ViT-B/32 geometry, 12 frames, 224 px (random weights): unmerged per-frame encoding
(HF image path, the anchor), per-frame ToMe at TempMe's token budget, TempMe, TempMe with cost-free merges.
pytest-benchmark times each row on its own; ratios with their spread over interleaved repeats come from
`leanops bench tempme` (leanops.bench.timing)."""
import pytest
import torch

from leanops.bench.tempme import FRAMES, GEOMETRIES, QUICK_GEOMETRY, _encoders, build
from conftest import DEVICE, QUICK

NAME, GEOMETRY = next(iter((QUICK_GEOMETRY if QUICK else {"ViT-B/32": GEOMETRIES["ViT-B/32"]}).items()))
BUILT = build(GEOMETRY, DEVICE)


@pytest.mark.parametrize("provider", list(BUILT["models"]))
def test_tempme_encoder(benchmark, provider):
    benchmark.group = f"tempme {NAME} {FRAMES} frames"
    model, encoder = BUILT["models"][provider], _encoders()[provider]
    size = GEOMETRY["image_size"]
    video = torch.randn(1 if QUICK else 2, FRAMES, 3, size, size, device=DEVICE)

    def run():
        with torch.inference_mode():
            out = encoder(model, video)
        if DEVICE == "cuda":
            torch.cuda.synchronize()
        return out

    out = benchmark(run)
    assert out.shape == (video.shape[0], GEOMETRY["hidden_size"]) and torch.isfinite(out).all()

"""``leanops demo`` section: TempMe's token trace at ViT-B/32, GFLOPs, speed against per-frame encoding, and a
mini retrieval comparison on generated moving-shapes videos (known ground truth)."""
from __future__ import annotations

import tempfile

import torch

def section(quick: bool) -> None:

    from ..bench.tempme import ANCHOR, IDEAL, TOME, TEMPME, _encoders, build
    from ..bench.timing import ratio, time_providers
    from . import experiment
    from .flops import count_gflops

    print("\n== TempMe: temporal token merging for text-video retrieval (HF CLIP, 12 frames)")
    width = dict(hidden_size=64, intermediate_size=256, num_attention_heads=2) if quick else \
        dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12)
    geometry = dict(patch_size=32, num_hidden_layers=12, image_size=224, **width)
    built = build(geometry)
    print(f"ViT-B/32 geometry (random weights{', width 64' if quick else ''}), default TempMeConfig: tokens per video "
          f"after each layer: {built['trace']}")
    print(f"per-frame ToMe at the same budget: r per layer {built['tome_schedule']}")
    video = torch.randn(1, 12, 3, 224, 224)
    encoders, models = _encoders(), built["models"]
    timings = time_providers({k: (lambda k=k: _run(encoders[k], models[k], video)) for k in models},
                             repeats=3 if quick else 7)
    print(f"{'encoder':30} {'GFLOPs':>8} {'x unmerged (p25-p75)':>22}   (1 video, interleaved repeats, anchor: "
          f"{ANCHOR})")
    for k in (ANCHOR, TOME, TEMPME, IDEAL):
        print(f"{k:30} {count_gflops(encoders[k], models[k], video):8.2f} {str(ratio(timings[ANCHOR], timings[k], ANCHOR)):>22}")
    overrides = dict(train_videos=64, pretrain_steps=20, adapt_steps=10, batch=16) if quick else None
    print("retrieval on generated videos (known ground truth)" + (" - mini run, too short to separate the "
                                                                  "methods; the evidence is python -m "
                                                                  "leanops.tempme.experiment" if quick else ""))
    with tempfile.TemporaryDirectory() as tmp:
        experiment.run_experiment(seeds=1, seed=0, quick=True, out_dir=tmp, overrides=overrides, progress=False)

def _run(encoder, model, video):
    with torch.inference_mode():
        return encoder(model, video)

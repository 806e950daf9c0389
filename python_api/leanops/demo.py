"""``leanops demo``: each method on real or generated data, printing what it kept and what it cost."""
from __future__ import annotations

import time

import torch


def _tome_minilm(quick: bool) -> None:
    from tqdm import tqdm

    from .tome import minilm

    r_values = (0, 4, 8) if quick else (0, 2, 4, 8, 16)
    print("\n== ToMe on all-MiniLM-L6-v2 (real pretrained BERT; sentences from Python stdlib docstrings)")
    with tqdm(total=len(r_values), desc="MiniLM r sweep") as bar:
        res = minilm.fidelity_and_speed(r_values, sentences=32 if quick else 64, repeats=1 if quick else 3,
                                        progress=bar)
    print(f"{res['sentences']} sentences, padded to the longest (<= {res['max_length']} tokens)")
    print(f"{'r':>4} {'tokens out':>11} {'cos mean':>9} {'cos min':>8} {'speed-up':>9}")
    for row in res["rows"]:
        print(f"{row['r']:4d} {row['tokens_out']:11d} {row['cos_mean']:9.4f} {row['cos_min']:8.4f} "
              f"{row['speedup']:8.2f}x")


def _tome_vit(quick: bool) -> None:
    from transformers import ViTConfig, ViTForImageClassification

    from . import tome

    print("\n== ToMe on a random ViT (ViT-S/16-sized, random weights; image batch of noise)")
    cfg = ViTConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
                    image_size=224, patch_size=16, num_labels=10)
    torch.manual_seed(0)
    model = ViTForImageClassification(cfg).eval()
    pixels = torch.randn(4 if quick else 16, 3, 224, 224)

    def timed():
        with torch.inference_mode():
            start = time.perf_counter()
            logits = model(pixel_values=pixels).logits
            return logits, time.perf_counter() - start

    timed()
    base, t_base = timed()
    print(f"{'r':>4} {'tokens/layer (first..last)':>28} {'logit cos':>10} {'speed-up':>9}")
    for r in (4, 8, 13):
        tome.patch(model, r=r)
        timed()
        logits, t = timed()
        kept = tome.tokens_per_layer(model)
        cos = torch.nn.functional.cosine_similarity(logits, base, dim=-1).mean()
        print(f"{r:4d} {f'{kept[0]}..{kept[-1]} (of 197)':>28} {cos:10.4f} {t_base / t:8.2f}x")
        tome.unpatch(model)


def run(quick: bool = False) -> None:
    import leanops

    info = leanops.build_info()
    print(f"leanops {info['version']} on torch {info['torch_version']}; backends: {', '.join(info['backends'])}; "
          f"threads: {info['threads']}")
    _tome_minilm(quick)
    _tome_vit(quick)

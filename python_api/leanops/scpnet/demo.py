"""`leanops demo` section: SCPNet's semantic prior from the real MiniLM, then a short single-positive run of
SPLC vs SCPNet on generated images (known ground truth). Writes no files."""
from __future__ import annotations

import time

import torch


def section(quick: bool, *, n_train: int | None = None, epochs: int | None = None) -> None:
    """n_train / epochs override the sizes (tests run a tiny version)."""
    from . import label_prior, text_embeddings
    from .data import generate, scene_labels
    from .train import mean_average_precision, predict, train_variant

    scenes = ("kitchen", "animals") if quick else ("kitchen", "animals", "street", "sports", "food")
    names = scene_labels(scenes)
    print(f"\n== SCPNet: semantic prior over {len(names)} COCO label names (all-MiniLM-L6-v2 text embeddings)")
    g, _ = label_prior(text_embeddings(names), top_k=4)
    for name in ("fork", "cat", "knife", "dog")[: 2 if quick else 4]:
        i = names.index(name)
        nb = [(names[j], float(g[i, j])) for j in g[i].argsort(descending=True).tolist() if j != i][:4]
        print(f"  {name:6} -> " + ", ".join(f"{n} {w:.3f}" for n, w in nb))
    n_train = n_train or (500 if quick else 2000)
    epochs = epochs or (3 if quick else 6)
    train = generate(n_train, scenes, setting="single", seed=7)
    test = generate(400, scenes, setting="full", seed=8)
    print(f"single positive label per image, {n_train} generated training images (ground truth known), "
          f"{epochs} epochs, test mAP on all labels (one seed: an illustration; evidence: "
          f"python -m leanops.scpnet.experiment)")
    print(f"{'variant':26} {'test mAP':>9} {'train s':>8}")
    for variant in ("assume negative (BCE)", "SPLC", "SCPNet"):
        t0 = time.time()
        model = train_variant(variant, train, seed=0, epochs=epochs)
        print(f"{variant:26} {mean_average_precision(predict(model, test.images), test.labels.numpy()):9.4f} "
              f"{time.time() - t0:8.1f}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    section(quick=True)

"""``leanops demo`` section: a quickly trained APN describing products with and without reviews."""
from __future__ import annotations

import time


def section(quick: bool) -> None:
    import torch

    from .._threads import torch_threads
    from . import SYSTEMS, PieceVocab, build, train
    from .data import generate
    from .metrics import aspect_scores

    print("\n== PDG: product descriptions with adaptive posterior distillation and copying (leanops.pdg) ==")
    with torch_threads(1):
        n_train, epochs = (300, 8) if quick else (1000, 8)
        cat = generate(n_train=n_train, n_valid=4, n_test=8, seed=7)
        vocab = PieceVocab.train(cat.training_texts(), 400)
        torch.manual_seed(0)
        gen = build(vocab, cat.train, SYSTEMS["APN"])
        start = time.perf_counter()
        train(gen, cat.train, epochs=epochs, batch_size=32, lr=3e-3, desc="pdg demo APN")
        print(f"APN (d=64, 2+2 layers) trained on {n_train} generated products (known ground truth) "
              f"in {time.perf_counter() - start:.0f} s; greedy decoding, copying on")
        products = cat.test_reviewed[:3]
        with_reviews = gen.describe(products, use_reviews=True)
        without = gen.describe(products, use_reviews=False)
        for p, a, b in zip(products, with_reviews, without):
            print(f"- {p.title}   (cared aspects: {', '.join(p.aspects)}; brand {'seen' if p.brand_seen else 'unseen'} "
                  f"in training)")
            print(f"    reviews : {' | '.join(p.reviews)}")
            print(f"    with reviews    [aspects {aspect_scores(p, a)['coverage']:.0%}]: {a}")
            print(f"    without reviews [aspects {aspect_scores(p, b)['coverage']:.0%}]: {b}")
        print("(a quick model: the evidence is `python -m leanops.pdg.experiment --quick`)")

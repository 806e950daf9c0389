"""``leanops demo`` section: DADNN against the shared model on generated multi-scene data (known ground
truth), and the batched per-scene heads against a Python loop over scenes."""
from __future__ import annotations

import torch

from ..bench.timing import ratio, time_providers


def section(quick: bool) -> None:
    from ..bench.dadnn import LOOP, BATCHED, head_inputs, head_providers
    from .data import generate
    from .experiment import KT_TEACHER, KT_WEIGHT, per_scene_auc, scene_groups, summary
    from .model import DADNN
    from .train import predict, train

    print("\n== DADNN: one CTR model for many scenes (per-scene heads in one batched pass, knowledge transfer) ==")
    samples, epochs = (8000, 2) if quick else (32000, 4)
    data = generate(samples, n_scenes=20, seed=1000)
    train_set, test = data.split()
    groups = scene_groups(test)
    print(f"generated data with a known ground truth: {samples} rows, 20 scenes with Zipf traffic, "
          f"{len(groups['conflicting'])} scenes conflicting with the common behaviour; {epochs} epochs, seed 0")
    rows = [("Bayes optimal (ceiling)", summary(per_scene_auc(test.bayes_prob, test), test, groups), "-")]
    for name, kwargs, kt in (("shared model (scene id feature)", dict(scene_heads=False), 0.0),
                             ("DADNN-MLP (heads + KT)", {}, KT_WEIGHT)):
        torch.manual_seed(0)
        model = DADNN(20, data.item_category, (data.n_groups,), **kwargs)
        train(model, train_set, epochs=epochs, batch=512, lr=5e-3, kt_weight=kt, kt_teacher=KT_TEACHER)
        rows.append((name, summary(per_scene_auc(predict(model, test), test), test, groups),
                     sum(p.numel() for p in model.parameters())))
    print(f"{'model':34} {'weighted AUC':>12} {'head AUC':>9} {'tail AUC':>9} {'params':>7}")
    for name, s, params in rows:
        print(f"{name:34} {s['weighted']:12.4f} {s['head']:9.4f} {s['tail']:9.4f} {params!s:>7}")
    n_scenes, batch = 200, 1024 if quick else 4096
    heads, x, scene = head_inputs(batch, 32, 16, n_scenes)
    fns = head_providers(heads, x, scene, backward=False)
    timings = time_providers({k: fns[k] for k in (LOOP, BATCHED)}, "cpu", 5 if quick else 15, warmup=1)
    print(f"per-scene heads, {n_scenes} scenes, batch {batch}, forward: {LOOP} {timings[LOOP].median * 1e3:.2f} ms, "
          f"{BATCHED} {timings[BATCHED].median * 1e3:.2f} ms: {ratio(timings[LOOP], timings[BATCHED], LOOP)} "
          f"(anchor: {LOOP}; leanops bench dadnn for the full table)")

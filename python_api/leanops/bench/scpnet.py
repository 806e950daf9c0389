"""SCPNet benchmarks: training step time and inference throughput against the SPLC baseline model (the same
backbone with a linear head: what a user writes without the label graph), and the share of the label side.

The label side (prompts + 3-layer GCN over G) is computed once per step, not per image; the ablation row
"label side per image" recomputes it for each image of the batch, isolating what that choice saves. With a
learnable CoOp context the label side also runs the frozen text encoder every step (full run only)."""
from __future__ import annotations

import json
import os

import torch

from .timing import device_tag, machine, ratio, runner_note, time_providers

FULL = dict(batch=64, image=32, scenes=("kitchen", "animals", "street", "sports", "food"))
QUICK = dict(batch=16, image=32, scenes=("kitchen", "animals"))
ANCHOR_TRAIN = "train step: linear head + SPLC"
ANCHOR_INFER = "inference: linear head"


def build(shape: dict, device: str, learn_context: bool = False):
    """(images, targets, linear-head model, SCPNet, SCPNet-with-learnable-context or None)."""
    from ..scpnet.data import scene_labels
    from ..scpnet.model import LinearHead, SCPNet, SmallCNN

    names = scene_labels(shape["scenes"])
    g = torch.Generator().manual_seed(0)
    images = torch.rand(shape["batch"], 3, shape["image"], shape["image"], generator=g).to(device)
    targets = torch.zeros(shape["batch"], len(names), dtype=torch.long)
    targets[torch.arange(shape["batch"]), torch.randint(0, len(names), (shape["batch"],), generator=g)] = 1
    torch.manual_seed(0)
    linear = LinearHead(SmallCNN(), len(names)).to(device)
    scp = SCPNet(SmallCNN(), names, learn_context=False).to(device)
    coop = SCPNet(SmallCNN(), names, learn_context=True).to(device) if learn_context else None
    return images, targets.to(device), linear, scp, coop


def providers(images, targets, linear, scp, coop=None) -> dict:
    from ..scpnet.losses import FlexThresholds, pessl_loss, splc_loss
    from ..scpnet.train import strong_view, weak_view

    gen = torch.Generator().manual_seed(1)
    flex = FlexThresholds(images.shape[0], targets.shape[1])
    index = torch.arange(images.shape[0])
    opts = {m: torch.optim.Adam([q for q in m.parameters() if q.requires_grad], lr=1e-4)
            for m in (linear, scp, coop) if m is not None}

    def train_step(model, pessl: bool):
        model.train()
        logits = model(weak_view(images, gen))
        loss = splc_loss(logits, targets)
        if pessl:
            weak = torch.sigmoid(logits.detach())
            flex.update(index, weak)
            loss = loss + pessl_loss(model(strong_view(images, gen)), weak, model.S, flex.thresholds())
        opts[model].zero_grad(set_to_none=True)
        loss.backward()
        opts[model].step()
        return loss

    def infer(model):
        model.eval()
        with torch.inference_mode():
            return model(images)

    def label_side_per_image():  # ablation: the label graph recomputed for every image
        scp.eval()
        with torch.inference_mode():
            f = torch.nn.functional.normalize(scp.proj(scp.backbone(images)), dim=-1)
            rows = [scp.log_scale.exp() * f[i] @ torch.nn.functional.normalize(scp.label_embeddings(), dim=-1).T
                    for i in range(f.shape[0])]
            return torch.stack(rows)

    def label_side():
        with torch.inference_mode():
            return scp.label_embeddings()

    def gcn_only():
        with torch.inference_mode():
            return scp.gcn(scp.prompts(), scp.G)

    fns = {ANCHOR_TRAIN: lambda: train_step(linear, False),
           "train step: SCPNet (SPLC)": lambda: train_step(scp, False),
           "train step: SCPNet + PESSL": lambda: train_step(scp, True),
           ANCHOR_INFER: lambda: infer(linear),
           "inference: SCPNet": lambda: infer(scp),
           "inference: SCPNet, label side per image (ablation)": label_side_per_image,
           "label side (prompts + GCN), once per step": label_side,
           "GCN alone (3 layers over G)": gcn_only}
    if coop is not None:
        fns["train step: SCPNet, learnable context (text encoder per step)"] = lambda: train_step(coop, False)
    return fns


def run(device=None, quick=False, out_dir="benchmarks/results", repeats=None):
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    shape = QUICK if quick else FULL
    repeats = repeats or (3 if quick else 11)
    images, targets, linear, scp, coop = build(shape, device, learn_context=not quick)
    fns = providers(images, targets, linear, scp, coop)
    timings = time_providers(fns, device, repeats)
    b = shape["batch"]
    step = timings["train step: SCPNet (SPLC)"]
    rows = []
    for name, t in timings.items():
        anchor = ANCHOR_INFER if name.startswith("inference") else ANCHOR_TRAIN
        row = {"provider": name, **t.to_dict("ms"), "vs_anchor": ratio(timings[anchor], t, anchor).to_dict()}
        if name.startswith("inference"):
            row["images_per_s"] = b / t.median
        rows.append(row)
    gcn_share = ratio(timings["GCN alone (3 layers over G)"], step, "GCN alone").to_dict()
    label_share = ratio(timings["label side (prompts + GCN), once per step"], step, "label side").to_dict()
    tag = device_tag(device) + ("-quick" if quick else "")
    result = {"family": "scpnet", "device": tag, "machine": machine(), "runner": runner_note("scpnet", quick),
              "anchor": [ANCHOR_TRAIN, ANCHOR_INFER], "repeats": repeats, "batch": b, "image": shape["image"],
              "labels": int(targets.shape[1]), "rows": rows,
              "gcn_share_of_scpnet_train_step": gcn_share, "label_side_share_of_scpnet_train_step": label_share}
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"scpnet-{tag}.json")
    with open(path, "w") as fh:
        json.dump(result, fh, indent=1)
    print(f"batch {b} images of {shape['image']}x{shape['image']}, {targets.shape[1]} labels, float32, {device}")
    print(f"{'provider':62} {'median ms':>10} {'p25-p75 ms':>19} {'x anchor (spread)':>20} {'img/s':>8}")
    for r in rows:
        v = r["vs_anchor"]
        print(f"{r['provider']:62} {r['median_ms']:10.3f} {r['p25_ms']:9.3f}-{r['p75_ms']:<9.3f} "
              f"{v['ratio']:9.2f}x ({v['ratio_p25']:.2f}-{v['ratio_p75']:.2f}) {r.get('images_per_s', float('nan')):8.0f}")
    print(f"GCN share of an SCPNet train step: {gcn_share['ratio']:.3%} (p25-p75 {gcn_share['ratio_p25']:.3%}-"
          f"{gcn_share['ratio_p75']:.3%}); label side (prompts + GCN): {label_share['ratio']:.3%} "
          f"(p25-p75 {label_share['ratio_p25']:.3%}-{label_share['ratio_p75']:.3%})")
    print(f"ratio = anchor median / provider median (< 1: slower than the anchor); (spread) = p25-p75 of the "
          f"{repeats} paired per-repeat ratios; anchors: {ANCHOR_TRAIN} / {ANCHOR_INFER}; runner: {result['runner']}")
    print(f"wrote {path}")
    return result

"""Training and evaluation of SCPNet and its baselines on incompletely labelled multi-label images."""
from __future__ import annotations

import numpy as np
import torch

from .data import MultiLabelImages
from .losses import FlexThresholds, assume_negative_bce, pessl_loss, splc_loss
from .model import LinearHead, SCPNet, SmallCNN

# name -> (model kind, loss, uses PESSL, SPLC's pseudo-positive correction); the order is the experiment's table
# order. The rows "w/o correction" isolate SPLC's correction (it runs away with the cosine head, see docs).
VARIANTS = {
    "assume negative (BCE)": ("linear", "bce", False, False),
    "SPLC": ("linear", "splc", False, True),
    "SPLC w/o correction": ("linear", "splc", False, False),
    "SCPNet w/o prior": ("scpnet-identity", "splc", False, True),
    "SCPNet w/o prior, w/o correction": ("scpnet-identity", "splc", False, False),
    "SCPNet w/o PESSL": ("scpnet", "splc", False, True),
    "SCPNet w/o PESSL, w/o correction": ("scpnet", "splc", False, False),
    "SCPNet": ("scpnet", "splc", True, True),
    "SCPNet w/o correction": ("scpnet", "splc", True, False),
    "SCPNet shuffled names": ("scpnet-shuffled", "splc", True, True),
    "fully labelled (ceiling)": ("linear", "full", False, False),
}


def weak_view(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and a shift of up to 2 pixels (wrap-around)."""
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    dy, dx = (int(v) for v in torch.randint(-2, 3, (2,), generator=gen))
    return x.roll((dy, dx), dims=(2, 3))


def strong_view(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The weak view plus per-image brightness/contrast jitter, Gaussian noise and an 8x8 cutout."""
    x = weak_view(x, gen)
    b = x.shape[0]
    scale = 1 + 0.4 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5)
    shift = 0.2 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5)
    x = x * scale + shift + 0.08 * torch.randn(x.shape, generator=gen)
    h, w = x.shape[2:]
    ys = torch.randint(0, h - 7, (b,), generator=gen)
    xs = torch.randint(0, w - 7, (b,), generator=gen)
    rows = torch.arange(h)[None, :, None]
    cols = torch.arange(w)[None, None, :]
    hole = ((rows >= ys[:, None, None]) & (rows < ys[:, None, None] + 8) & (cols >= xs[:, None, None])
            & (cols < xs[:, None, None] + 8))
    return x.masked_fill(hole[:, None], 0.5)


def build_model(kind: str, label_names, seed: int, backbone_dim: int = 64, learn_context: bool = False,
                top_k: int = 8, **scpnet_kwargs):
    torch.manual_seed(seed)
    backbone = SmallCNN(backbone_dim)
    if kind == "linear":
        return LinearHead(backbone, len(label_names))
    names = tuple(label_names)
    if kind == "scpnet-shuffled":  # the prior and the prompts see the names in a random order: no real semantics
        perm = np.random.default_rng(10_000 + seed).permutation(len(names))
        names = tuple(names[i] for i in perm)
    return SCPNet(backbone, names, learn_context=learn_context, use_prior=kind != "scpnet-identity", top_k=top_k,
                  **scpnet_kwargs)


def mean_average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Macro mAP (sklearn average_precision_score) over the classes with at least one positive."""
    from sklearn.metrics import average_precision_score

    has = labels.sum(0) > 0
    return float(average_precision_score(labels[:, has], scores[:, has], average="macro"))


@torch.no_grad()
def predict(model, images: torch.Tensor, batch: int = 256) -> np.ndarray:
    model.eval()
    out = [torch.sigmoid(model(images[i:i + batch])) for i in range(0, images.shape[0], batch)]
    return torch.cat(out).numpy()


def train_variant(variant: str, train: MultiLabelImages, seed: int, epochs: int = 8, batch: int = 64,
                  lr: float = 2e-3, pessl_weight: float = 1.0, pseudo_top_k: int = 3, learn_context: bool = False,
                  top_k: int = 8, progress=None, **scpnet_kwargs):
    """Train one variant; returns the model. The first epoch is a warm-up: SPLC without correction, no PESSL.
    Variants "w/o correction" never correct (SPLC's loss shape without its pseudo-positives)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {tuple(VARIANTS)}, got {variant!r}")
    kind, loss_name, use_pessl, splc_correction = VARIANTS[variant]
    model = build_model(kind, train.label_names, seed, learn_context=learn_context, top_k=top_k, **scpnet_kwargs)
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    n = train.images.shape[0]
    targets = train.labels if loss_name == "full" else (train.observed == 1).long()
    known_neg = train.observed == 0
    flex = FlexThresholds(n, targets.shape[1]) if use_pessl else None
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch):
            idx = order[start:start + batch]
            x, y = train.images[idx], targets[idx]
            if loss_name == "splc":
                logits = model(weak_view(x, gen))
                loss = splc_loss(logits, y, correct=splc_correction and epoch > 0, known_negatives=known_neg[idx])
                if use_pessl and epoch > 0:
                    weak_probs = torch.sigmoid(logits.detach())
                    flex.update(idx, weak_probs)
                    strong_logits = model(strong_view(x, gen))
                    loss = loss + pessl_weight * pessl_loss(strong_logits, weak_probs, model.S, flex.thresholds(),
                                                            top_k=pseudo_top_k)
            else:
                loss = assume_negative_bce(model(weak_view(x, gen)), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if progress is not None:
            progress.update(1)
    return model

"""Click models over whole pages, trained with BCE on logged pages, and their held-out metrics.

- ``ClickModel``: the list-aware model: each slot is a token (item features, the user's features and
  their elementwise product with the item topic, plus a position embedding); a small transformer encoder
  lets every slot attend to the whole page, so a slot's click probability depends on its neighbours.
- ``PerItemModel``: the same token features and position embedding through an MLP, no attention: it
  cannot see the rest of the page (context-free baseline).
- ``PositionOnlyModel``: one logit per (position, is-ad): the page and the user are ignored.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .simulator import Logs, Requests


def slot_tokens(user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Per-slot inputs: item features [S, n, f] (topic first), user [S, k], and user * topic: [S, n, f + 2k]."""
    k = user.shape[-1]
    u = user[:, None, :].expand(-1, items.shape[1], -1)
    return torch.cat([items, u, u * items[..., :k]], -1)


class ClickModel(nn.Module):
    def __init__(self, n_features: int, n_user: int, max_slots: int, d_model: int = 32, heads: int = 2,
                 layers: int = 2):
        super().__init__()
        self.embed = nn.Linear(n_features + 2 * n_user, d_model)
        self.position = nn.Embedding(max_slots, d_model)
        layer = nn.TransformerEncoderLayer(d_model, heads, 2 * d_model, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, 1)

    def forward(self, user, items):
        x = self.embed(slot_tokens(user, items)) + self.position.weight[: items.shape[1]]
        return self.head(self.encoder(x)).squeeze(-1)


class PerItemModel(nn.Module):
    def __init__(self, n_features: int, n_user: int, max_slots: int, hidden: int = 32):
        super().__init__()
        self.embed = nn.Linear(n_features + 2 * n_user, hidden)
        self.position = nn.Embedding(max_slots, hidden)
        self.mlp = nn.Sequential(nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, user, items):
        return self.mlp(self.embed(slot_tokens(user, items)) + self.position.weight[: items.shape[1]]).squeeze(-1)


class PositionOnlyModel(nn.Module):
    def __init__(self, n_features: int, n_user: int, max_slots: int):
        super().__init__()
        self.logit = nn.Parameter(torch.full((max_slots, 2), -1.5))

    @torch.no_grad()
    def fit(self, is_ad_slots: torch.Tensor, clicks: torch.Tensor) -> None:
        """Maximum likelihood in closed form: the log-odds of the empirical click rate per (position, is-ad)."""
        for ad in (0, 1):
            sel = (is_ad_slots.long() == ad).float()
            rate = (clicks * sel).sum(0) / sel.sum(0).clamp(min=1)
            self.logit[: clicks.shape[1], ad] = torch.logit(rate.clamp(1e-4, 1 - 1e-4))

    def forward(self, user, items):
        is_ad = items[..., -1].long()
        return self.logit[torch.arange(items.shape[1]), is_ad]


MODELS = {"list-aware (ClickModel)": ClickModel, "per-item (no context)": PerItemModel,
          "position-only": PositionOnlyModel}


def page_inputs(requests: Requests, request_idx: torch.Tensor, slates: torch.Tensor):
    feats = requests.item_features()
    return requests.user[request_idx], feats[request_idx[:, None], slates]


def train(model: nn.Module, requests: Requests, logs: Logs, epochs: int = 8, batch: int = 256, lr: float = 3e-3,
          generator: torch.Generator | None = None, progress=None) -> nn.Module:
    """Adam on the mean BCE of every logged slot."""
    user, items = page_inputs(requests, logs.request, logs.slates)
    if isinstance(model, PositionOnlyModel):
        model.fit(items[..., -1] > 0.5, logs.clicks)
        return model.eval()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = logs.slates.shape[0]
    steps = epochs * math.ceil(n / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=generator)
        for start in range(0, n, batch):
            idx = perm[start:start + batch]
            loss = nn.functional.binary_cross_entropy_with_logits(model(user[idx], items[idx]), logs.clicks[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if progress is not None:
            progress.update(1)
    model.eval()
    return model


@torch.no_grad()
def predict(model: nn.Module, requests: Requests, request_idx: torch.Tensor, slates: torch.Tensor) -> torch.Tensor:
    user, items = page_inputs(requests, request_idx, slates)
    return torch.sigmoid(model(user, items))


def request_scorer(model: nn.Module, requests: Requests, i: int):
    """``allocate``'s click_model for request i: slates [S, n] -> predicted click probabilities [S, n]."""
    items = requests.item_features()[i]
    user = requests.user[i]

    @torch.no_grad()
    def click_model(slates):
        return torch.sigmoid(model(user.expand(slates.shape[0], -1), items[slates]))

    return click_model


def calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-count bins of the prediction: sum_b n_b/n |mean p - mean y|."""
    order = np.argsort(p)
    err = 0.0
    for chunk in np.array_split(order, bins):
        if len(chunk):
            err += len(chunk) / len(p) * abs(p[chunk].mean() - y[chunk].mean())
    return float(err)


def metrics(p: torch.Tensor, clicks: torch.Tensor) -> dict:
    from sklearn.metrics import log_loss, roc_auc_score

    p = p.double().flatten().clamp(1e-7, 1 - 1e-7).numpy()
    y = clicks.flatten().numpy()
    return {"log_loss": float(log_loss(y, p, labels=[0, 1])), "auc": float(roc_auc_score(y, p)),
            "ece": calibration_error(p, y), "mean_pred_over_mean_click": float(p.mean() / max(y.mean(), 1e-12))}

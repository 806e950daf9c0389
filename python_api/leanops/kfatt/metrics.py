"""Ranking metrics for the CTR experiments: AUC and DIN's GAUC (per-user AUC)."""
from __future__ import annotations

import numpy as np
import torch


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve (rank statistic, ties averaged)."""
    labels = labels.bool()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = torch.argsort(scores)
    ranks = torch.empty_like(scores, dtype=torch.float64)
    sorted_scores = scores[order]
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    # average the ranks of tied scores
    uniq, inverse, counts = torch.unique(sorted_scores, return_inverse=True, return_counts=True)
    if len(uniq) < len(scores):
        sums = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inverse, ranks[order])
        ranks[order] = (sums / counts)[inverse]
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def gauc(scores: torch.Tensor, labels: torch.Tensor, users: torch.Tensor) -> float:
    """GAUC as in DIN's paper: each user's AUC over their own impressions, averaged with weights equal to
    the user's number of impressions; users whose impressions are all clicks or all non-clicks are
    skipped (their AUC is undefined). NaN when no user has both classes."""
    try:
        from sklearn.metrics import roc_auc_score
    except ImportError as exc:  # optional dependency: pip install 'leanops[kfatt]'
        raise ImportError("gauc needs scikit-learn: pip install scikit-learn (or leanops[kfatt])") from exc
    if not scores.shape == labels.shape == users.shape or scores.dim() != 1:
        raise ValueError(f"scores, labels and users must be 1-D of one length, got {tuple(scores.shape)}, "
                         f"{tuple(labels.shape)}, {tuple(users.shape)}")
    s, y, u = scores.double().numpy(), labels.double().numpy(), users.numpy()
    order = np.argsort(u, kind="stable")
    s, y, u = s[order], y[order], u[order]
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    total, weight = 0.0, 0
    for a, b in zip(starts, np.r_[starts[1:], len(u)]):
        if 0 < y[a:b].sum() < b - a:
            total += (b - a) * roc_auc_score(y[a:b], s[a:b])
            weight += b - a
    return total / weight if weight else float("nan")

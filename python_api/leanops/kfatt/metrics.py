"""Ranking metrics for the CTR experiments: AUC and DIN's GAUC (per-user AUC)."""
from __future__ import annotations

import numpy as np
import torch


def _roc_auc_score():
    try:
        from sklearn.metrics import roc_auc_score
    except ImportError as exc:  # optional dependency: pip install 'leanops[kfatt]'
        raise ImportError("leanops.kfatt's AUC metrics need scikit-learn: pip install scikit-learn "
                          "(or leanops[kfatt])") from exc
    return roc_auc_score


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve (scikit-learn's ``roc_auc_score``; tied scores count one half).
    NaN when only one class is present."""
    y = labels.bool().numpy()
    if y.all() or not y.any():
        return float("nan")
    return float(_roc_auc_score()(y, scores.double().numpy()))


def gauc(scores: torch.Tensor, labels: torch.Tensor, users: torch.Tensor) -> float:
    """GAUC as in DIN's paper: each user's AUC over their own impressions, averaged with weights equal to
    the user's number of impressions; users whose impressions are all clicks or all non-clicks are
    skipped (their AUC is undefined). NaN when no user has both classes."""
    roc_auc_score = _roc_auc_score()
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

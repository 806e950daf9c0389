"""The group-wise contrastive loss of Cai et al. (arXiv 2009.07543), exactly as the issue states it.

``g = logp_model - logp_ref`` compares the trained model with a frozen reference on each pair;
``h = sigmoid(g)`` is 0.5 where both agree. The target for h is ``0.5 + s/2``: a pair with matching
score ``s = 1`` should be more likely under the model than the reference (h -> 1), one with ``s = -1``
less likely (h -> 0), and ``s = 0`` asks for nothing: the loss is ``-log(0.5)`` whatever h is.
"""
from __future__ import annotations

import torch

MIN_PROB = 1e-6  # the clamp keeps -log finite when h saturates against its target


def _check_vector(name: str, x) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 1:
        raise ValueError(f"{name} must be 1-D [N] (one value per (context, response) pair), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")


def group_contrastive_loss(logp_model: torch.Tensor, logp_ref: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """``mean(-log(clamp(0.5 + scores * (sigmoid(logp_model - logp_ref) - 0.5), min=1e-6)))``.

    logp_model, logp_ref: [N] sequence log-likelihoods of each response given its context (summed over
    response tokens) under the trained and the reference model; scores: [N] in [-1, 1] (1 for an
    observed pair, calibrated matching scores for sampled pairs). Gradients flow into ``logp_model`` only
    (the reference is a constant)."""
    for name, x in (("logp_model", logp_model), ("logp_ref", logp_ref), ("scores", scores)):
        _check_vector(name, x)
    n = logp_model.shape[0]
    if logp_ref.shape[0] != n or scores.shape[0] != n:
        raise ValueError(f"logp_model, logp_ref and scores must have the same length, got "
                         f"{n}, {logp_ref.shape[0]} and {scores.shape[0]}")
    if n == 0:
        raise ValueError("logp_model is empty: the loss needs at least one (context, response) pair")
    if not torch.isfinite(scores).all() or scores.abs().max() > 1:
        bad = scores[~(torch.isfinite(scores) & (scores.abs() <= 1))][:3].tolist()
        raise ValueError(f"scores must be finite and in [-1, 1], got values such as {bad}")
    h = torch.sigmoid(logp_model - logp_ref.detach())
    target_prob = 0.5 + scores.to(h.dtype) * (h - 0.5)
    return -torch.log(target_prob.clamp(min=MIN_PROB)).mean()

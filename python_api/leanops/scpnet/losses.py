"""SCPNet's losses: SPLC (single-positive loss with pseudo-label correction) and PESSL (the prior-enhanced
self-supervised loss: FlexMatch-style adaptive pseudo-labels plus soft targets from the prior)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_logits_targets(logits, targets, targets_name: str = "targets", allow_unknown: bool = False):
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point torch.Tensor [B, C], got {type(logits).__name__}"
                        + (f" of {logits.dtype}" if isinstance(logits, torch.Tensor) else ""))
    if logits.dim() != 2:
        raise ValueError(f"logits must be [B, C], got shape {tuple(logits.shape)}")
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"{targets_name} must be a torch.Tensor [B, C], got {type(targets).__name__}")
    if targets.shape != logits.shape:
        raise ValueError(f"{targets_name} must have the shape of logits {tuple(logits.shape)}, "
                         f"got {tuple(targets.shape)}")
    allowed = (0, 1, -1) if allow_unknown else (0, 1)
    ok = torch.zeros_like(targets, dtype=torch.bool)
    for v in allowed:
        ok |= targets == v
    if not ok.all():
        bad = targets[~ok].flatten()[:4].tolist()
        raise ValueError(f"{targets_name} must hold only values in {set(allowed)}, found e.g. {bad}")


def splc_loss(logits: torch.Tensor, targets: torch.Tensor, tau: float = 0.6, margin: float = 1.0,
              gamma: float = 2.0, correct: bool = True, known_negatives: torch.Tensor | None = None
              ) -> torch.Tensor:
    """SPLC: p = sigmoid(logits), pm = sigmoid(logits - margin). An element is positive if its target is 1,
    or (correct=True) its target is 0 and p > tau. Positives cost -(1 - pm)^gamma log(pm), the others
    -p^gamma log(1 - p); summed over classes, averaged over the batch.
    known_negatives (partial labels, bool [B, C]): elements annotated negative, never corrected to positive."""
    _check_logits_targets(logits, targets)
    if not 0.0 < tau < 1.0:
        raise ValueError(f"tau must be in (0, 1), got {tau!r}")
    if margin < 0 or gamma < 0:
        raise ValueError(f"margin and gamma must be >= 0, got margin={margin!r}, gamma={gamma!r}")
    t = targets.to(logits.dtype)
    p = torch.sigmoid(logits)
    positive = t > 0.5
    if correct:
        flip = p.detach() > tau
        if known_negatives is not None:
            if known_negatives.shape != logits.shape:
                raise ValueError(f"known_negatives must have the shape of logits {tuple(logits.shape)}, "
                                 f"got {tuple(known_negatives.shape)}")
            flip = flip & ~known_negatives.bool()
        positive = positive | flip
    pm = torch.sigmoid(logits - margin)
    # log-sigmoid forms keep the log finite for large |logits|
    pos_cost = -((1 - pm) ** gamma) * F.logsigmoid(logits - margin)
    neg_cost = -(p ** gamma) * F.logsigmoid(-logits)
    return torch.where(positive, pos_cost, neg_cost).sum(1).mean()


def assume_negative_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The 'assume negative' baseline: every unobserved label is a negative; BCE summed over classes."""
    _check_logits_targets(logits, targets)
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="sum") / logits.shape[0]


def partial_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BCE over the known labels only (targets in {0, 1}, -1 = unknown); summed over classes, batch mean."""
    _check_logits_targets(logits, targets, allow_unknown=True)
    known = targets >= 0
    loss = F.binary_cross_entropy_with_logits(logits, targets.clamp_min(0).to(logits.dtype), reduction="none")
    return (loss * known).sum() / logits.shape[0]


class FlexThresholds:
    """Class-wise adaptive thresholds as in FlexMatch (Zhang et al. 2021), for multi-label pseudo-labels.
    Each unlabelled image remembers which classes it last predicted above `tau`; sigma_c counts the images
    that did so for class c; beta_c = sigma_c / max(max_c sigma_c, images not yet confident on any class);
    the threshold of class c is tau * M(beta_c) with FlexMatch's convex warping M(x) = x / (2 - x)."""

    def __init__(self, num_images: int, num_classes: int, tau: float = 0.7):
        if not 0.0 < tau < 1.0:
            raise ValueError(f"tau must be in (0, 1), got {tau!r}")
        self.tau = tau
        self.confident = torch.zeros(num_images, num_classes, dtype=torch.bool)
        self.seen = torch.zeros(num_images, dtype=torch.bool)

    def update(self, index: torch.Tensor, probs: torch.Tensor) -> None:
        self.confident[index] = probs.detach().cpu() > self.tau
        self.seen[index] = True

    def thresholds(self) -> torch.Tensor:
        sigma = self.confident.sum(0).float()
        unused = float((~self.confident.any(1)).sum())
        beta = sigma / max(float(sigma.max()), unused, 1.0)
        return self.tau * beta / (2 - beta)


def pessl_loss(strong_logits: torch.Tensor, weak_probs: torch.Tensor, s_prior: torch.Tensor,
               thresholds: torch.Tensor, top_k: int = 3, prior_weight: float = 1.0) -> torch.Tensor:
    """PESSL on the strong view. Hard pseudo-labels from the weak view: among the top_k classes of each image,
    those whose weak probability exceeds their class threshold are pseudo-positives (cost -log p_strong);
    only pseudo-positives enter this term, since the unobserved labels already enter SPLC as negatives.
    Soft targets from the prior, r = p_weak S^T (each class's probability averaged over its prior
    neighbourhood), enter a BCE on every element, weighted by prior_weight. Summed over classes, averaged
    over the batch; the weak view's probabilities are constants (no gradient)."""
    if weak_probs.shape != strong_logits.shape:
        raise ValueError(f"weak_probs must have the shape of strong_logits {tuple(strong_logits.shape)}, "
                         f"got {tuple(weak_probs.shape)}")
    c = strong_logits.shape[1]
    if s_prior.shape != (c, c):
        raise ValueError(f"s_prior must be [C, C] = [{c}, {c}], got {tuple(s_prior.shape)}")
    if not 1 <= top_k <= c:
        raise ValueError(f"top_k must be in [1, C] = [1, {c}], got {top_k}")
    weak = weak_probs.detach()
    top = torch.zeros_like(weak, dtype=torch.bool).scatter_(1, weak.topk(top_k, dim=1).indices, True)
    pseudo = top & (weak > thresholds.to(weak.device))
    hard = -(F.logsigmoid(strong_logits) * pseudo).sum(1).mean()
    soft_target = (weak @ s_prior.T).clamp(0, 1)
    soft = F.binary_cross_entropy_with_logits(strong_logits, soft_target, reduction="sum") / strong_logits.shape[0]
    return hard + prior_weight * soft

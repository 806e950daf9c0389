"""Text-video retrieval metrics from a similarity matrix whose diagonal holds the matching pairs."""
from __future__ import annotations

import torch


def ranks(sim: torch.Tensor) -> torch.Tensor:
    """1-based rank of the matching item (column i for row i) in every row, ties counted pessimistically."""
    if not isinstance(sim, torch.Tensor) or sim.dim() != 2 or sim.shape[0] != sim.shape[1] or sim.shape[0] == 0:
        raise ValueError(f"sim must be a non-empty square [N, N] tensor (row i matches column i), got "
                         f"{tuple(sim.shape) if isinstance(sim, torch.Tensor) else type(sim).__name__}")
    if not torch.isfinite(sim).all():
        raise ValueError("sim must be finite")
    true = sim.diagonal()[:, None]
    return (sim >= true).sum(1)  # the match itself counts 1; an equal score ranks above it


def retrieval_metrics(sim: torch.Tensor) -> dict:
    """``sim[text, video]``: R@1/5/10 (%), median and mean rank for text->video and video->text, and R-Sum
    (the sum of the six recalls)."""
    out = {}
    for name, s in (("t2v", sim), ("v2t", sim.t())):
        r = ranks(s).double()
        for k in (1, 5, 10):
            out[f"{name}_R@{k}"] = 100.0 * (r <= k).double().mean().item()
        out[f"{name}_MdR"] = r.quantile(0.5).item()  # the mean of the two middle ranks when N is even
        out[f"{name}_MnR"] = r.mean().item()
    out["R-Sum"] = sum(out[f"{d}_R@{k}"] for d in ("t2v", "v2t") for k in (1, 5, 10))
    return out


def group_r1(sim: torch.Tensor, groups: list) -> float:
    """Text->video R@1 (%) when each text competes only against the videos of its group (hard negatives:
    e.g. the videos differing from it only in direction); ``groups[i]`` is the group key of pair i."""
    if len(groups) != sim.shape[0]:
        raise ValueError(f"groups needs one key per row of sim ({sim.shape[0]}), got {len(groups)}")
    hits = 0
    for i, g in enumerate(groups):
        members = torch.tensor([j for j, h in enumerate(groups) if h == g])
        hits += int(sim[i, members].max() <= sim[i, i] and (sim[i, members] == sim[i, i]).sum() == 1)
    return 100.0 * hits / len(groups)

"""SCPNet's structured semantic prior: label-to-label relations from text embeddings of the label names."""
from __future__ import annotations

import torch


def check_text_emb(text_emb, name: str = "text_emb") -> None:
    if not isinstance(text_emb, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [C, D], got {type(text_emb).__name__}")
    if text_emb.dim() != 2 or text_emb.shape[0] < 2 or text_emb.shape[1] < 1:
        raise ValueError(f"{name} must be [C, D] with C >= 2 labels and D >= 1, got shape {tuple(text_emb.shape)}")
    if not text_emb.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {text_emb.dtype}")
    if not torch.isfinite(text_emb).all():
        raise ValueError(f"{name} holds NaN or infinite values (rows {_bad_rows(~torch.isfinite(text_emb))})")
    zero = text_emb.abs().sum(1) == 0
    if zero.any():
        raise ValueError(f"{name} has all-zero rows (rows {_bad_rows(zero)}): their cosine similarity is undefined")


def _bad_rows(mask: torch.Tensor) -> list[int]:
    rows = mask if mask.dim() == 1 else mask.any(1)
    return rows.nonzero().flatten()[:8].tolist()


def label_prior(text_emb: torch.Tensor, top_k: int, p: float = 0.2, temperature: float = 0.2):
    """(G, S), both [C, C], from label text embeddings [C, D]:
    A = cosine similarity of the rows; per row i keep the top_k largest A[i, j] over j != i (the rest and the
    diagonal 0) -> Ā; G[i, j] = p Ā[i, j] / Σ_j Ā[i, j] (i != j), G[i, i] = 1 - p; S[i] = softmax of
    G[i, j] / temperature over the j with G[i, j] > 0, 0 elsewhere.

    A kept similarity that is <= 0 gets no weight (G must be a non-negative adjacency); a row whose kept
    similarities sum to 0 keeps only its diagonal (G[i, i] = 1 - p)."""
    check_text_emb(text_emb)
    c = text_emb.shape[0]
    if isinstance(top_k, bool) or not isinstance(top_k, int):
        raise TypeError(f"top_k must be an int, got {type(top_k).__name__}")
    if not 1 <= top_k < c:
        raise ValueError(f"top_k must be in [1, C - 1] = [1, {c - 1}] (C = {c} labels), got {top_k}")
    if not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ValueError(f"p must be a float in [0, 1) (the weight moved off the diagonal), got {p!r}")
    if not isinstance(temperature, (int, float)) or not temperature > 0 or temperature == float("inf"):
        raise ValueError(f"temperature must be a finite float > 0, got {temperature!r}")

    unit = torch.nn.functional.normalize(text_emb, dim=1)
    a = unit @ unit.T
    a.fill_diagonal_(float("-inf"))  # j != i
    values, idx = a.topk(top_k, dim=1)
    a_bar = torch.zeros_like(a).scatter_(1, idx, values.clamp_min(0))
    row_sum = a_bar.sum(1, keepdim=True)
    g = torch.where(row_sum > 0, p * a_bar / row_sum.clamp_min(torch.finfo(a.dtype).tiny), torch.zeros_like(a_bar))
    g.diagonal().fill_(1.0 - p)
    logits = (g / temperature).masked_fill(g <= 0, float("-inf"))
    s = torch.softmax(logits, dim=1)  # every row has G[i, i] > 0 when p < 1, so no row is all -inf
    return g, s

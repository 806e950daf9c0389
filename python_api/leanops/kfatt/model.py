"""A small CTR model (embeddings -> behaviour pooling -> MLP) that takes either pooling."""
from __future__ import annotations

import torch
from torch import nn

from ..ops.pool import group_duplicates, jagged_from_padded
from .modules import DINAttentionPooling, KFAttention

POOLINGS = ("din", "din_norm", "kfatt_base", "kfatt_freq")


class CTRModel(nn.Module):
    """forward(candidate[B], history[B, L], lengths[B]) -> click logit [B].

    Candidates are item ids; an item's embedding is its own vector plus its category's
    (``item_category`` maps ids to categories). Behaviours are ids ``item * n_feedback + bucket``: the
    item's embedding plus the feedback bucket's (``n_feedback=1``: plain item ids)."""

    def __init__(self, item_category: torch.Tensor, pooling: str = "kfatt_freq", embed_dim: int = 16,
                 heads: int = 2, mlp=(64, 32), n_feedback: int = 1, attention_scale: float | None = None,
                 scorer: str = "mlp", backend: str | None = None):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.pooling_name = pooling
        self.register_buffer("item_category", item_category.long())
        n_items, n_cats = item_category.shape[0], int(item_category.max()) + 1
        self.item_emb = nn.Embedding(n_items, embed_dim)
        self.cat_emb = nn.Embedding(n_cats, embed_dim)
        if not isinstance(n_feedback, int) or n_feedback < 1:
            raise ValueError(f"n_feedback must be a positive int, got {n_feedback!r}")
        self.n_feedback = n_feedback
        self.feedback_emb = nn.Embedding(n_feedback, embed_dim)
        if pooling.startswith("din"):
            self.pool = DINAttentionPooling(embed_dim, weight_normalization=pooling == "din_norm")
        else:
            self.pool = KFAttention(embed_dim, embed_dim, heads=heads, head_dim=embed_dim, out_dim=embed_dim,
                                    variant=pooling.split("_")[1], scale=attention_scale, scorer=scorer,
                                    backend=backend)
        layers, width = [], 3 * embed_dim
        for size in mlp:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def embed(self, ids):
        return self.item_emb(ids) + self.cat_emb(self.item_category[ids])

    def embed_behaviours(self, ids):
        items = torch.div(ids, self.n_feedback, rounding_mode="floor")
        return self.embed(items) + self.feedback_emb(ids - items * self.n_feedback)

    def forward(self, candidate, history, lengths):
        query = self.embed(candidate)
        if self.pooling_name.startswith("din"):
            pooled = self.pool(query, self.embed_behaviours(history), lengths)
        else:
            ids, offsets = jagged_from_padded(history, lengths)
            counts = None
            if self.pooling_name == "kfatt_freq":  # one entry per distinct behaviour, with its count
                first, counts, offsets = group_duplicates(ids, offsets)
                ids = ids[first]
            pooled = self.pool(query, self.embed_behaviours(ids), offsets, counts)
        return self.mlp(torch.cat([query, pooled, query * pooled], dim=-1)).squeeze(-1)

"""DADNN (arXiv 2011.11938): one CTR model for many scenes.

Features -> a shared bottom (an MLP, or an MMoE with one gate per scene) -> one small MLP head per scene,
each row routed to its scene's head in one batched pass (``heads.SceneHeads``). The user's behaviour
sequence is pooled on the jagged layout by KFAtt (``leanops.kfatt.KFAttention``, the pool op) or DIN.
Knowledge transfer (``kt_loss``): every head also predicts the other scenes' rows and is pulled towards
a teacher (the row's own scene head, or the ensemble of heads), detached.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..kfatt.modules import DINAttentionPooling, KFAttention
from .heads import SceneGroups, SceneHeads, SceneLinear, check_scene_ids

BOTTOMS = ("mlp", "mmoe")
POOLINGS = ("kfatt", "din")
KT_TEACHERS = ("own", "ensemble")


def mlp(widths) -> nn.Sequential:
    """Linear + ReLU after every layer (a bottom's output is a ReLU representation)."""
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


class MMoEBottom(nn.Module):
    """Multi-gate mixture of experts: E expert MLPs (stacked, one batched pass) and one softmax gate per
    scene; scene s's representation of a row is ``sum_e gate_s(x)_e * expert_e(x)``."""

    def __init__(self, in_dim: int, n_scenes: int, n_experts: int, hidden):
        super().__init__()
        if not isinstance(n_experts, int) or n_experts < 1:
            raise ValueError(f"n_experts must be an int >= 1 for bottom='mmoe', got {n_experts!r}")
        widths = [in_dim, *hidden]
        self.experts = nn.ModuleList(SceneLinear(n_experts, a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.gate = SceneLinear(n_scenes, in_dim, n_experts)
        self.out_dim = widths[-1]

    def expert_outputs(self, x):  # [E, B, d]
        h = x
        for layer in self.experts:
            h = torch.relu(layer.all_scenes(h))
        return h

    def forward(self, x, groups: SceneGroups):
        gate = torch.softmax(groups.unpad(self.gate.tiled(groups.pad(x), groups)), dim=-1)  # [B, E]
        return torch.einsum("be,ebd->bd", gate, self.expert_outputs(x))

    def all_scenes(self, x):
        """[S, B, d]: every scene's gate mixture of the experts for every row."""
        gate = torch.softmax(self.gate.all_scenes(x), dim=-1)  # [S, B, E]
        return torch.einsum("sbe,ebd->sbd", gate, self.expert_outputs(x))


class DADNN(nn.Module):
    """forward(scene[B], user[B, F], item[B], history[T], offsets[B+1], all_heads=False)
    -> logit[B] (the row's own scene head), or (logit[B], all_logits[B, S]) with ``all_heads=True``.

    ``user``: categorical user/context fields (sizes ``user_field_sizes``); ``item``: candidate item ids,
    embedded as item vector + category vector (``item_category[n_items]``);
    ``history``: the behaviour item ids of all rows, jagged with CSR ``offsets``.
    ``scene_heads=False`` gives the shared-model baseline (one head for every scene; the scene id is then
    only a feature, ``scene_feature``)."""

    def __init__(self, n_scenes: int, item_category: torch.Tensor, user_field_sizes=(), bottom: str = "mlp",
                 embed_dim: int = 8, pooling: str = "kfatt", bottom_hidden=(64, 32), n_experts: int = 4,
                 expert_hidden=(64, 32), head_hidden=(16,), scene_heads: bool = True, scene_feature: bool = True,
                 tile: int | None = None, validate: bool = True):
        super().__init__()
        if isinstance(n_scenes, bool) or not isinstance(n_scenes, int) or n_scenes < 1:
            raise ValueError(f"n_scenes must be an int >= 1, got {n_scenes!r}")
        if bottom not in BOTTOMS:
            raise ValueError(f"bottom must be one of {BOTTOMS}, got {bottom!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if not isinstance(item_category, torch.Tensor) or item_category.dim() != 1 or item_category.numel() == 0:
            raise ValueError("item_category must be a non-empty 1-D tensor mapping item ids to categories")
        if any(not isinstance(n, int) or n < 1 for n in user_field_sizes):
            raise ValueError(f"user_field_sizes must be positive ints, got {tuple(user_field_sizes)!r}")
        self.n_scenes, self.n_heads = n_scenes, n_scenes if scene_heads else 1
        self.bottom_kind, self.pooling_kind, self.tile, self.validate = bottom, pooling, tile, validate
        self.n_items = item_category.shape[0]
        self.register_buffer("item_category", item_category.long())
        n_cats = int(item_category.max()) + 1
        # an item is its own vector plus its category's (nn.EmbeddingBag's CPU backward was ~5x slower here)
        self.item_emb = nn.Embedding(self.n_items, embed_dim)
        self.category_emb = nn.Embedding(n_cats, embed_dim)
        self.user_field_sizes = tuple(user_field_sizes)
        field_start = torch.tensor([0, *user_field_sizes[:-1]], dtype=torch.long).cumsum(0)
        self.register_buffer("field_start", field_start[: len(user_field_sizes)])
        self.user_emb = nn.Embedding(max(1, sum(user_field_sizes)), embed_dim)
        self.scene_emb = nn.Embedding(n_scenes, embed_dim) if scene_feature else None
        if pooling == "kfatt":
            self.pool = KFAttention(embed_dim, embed_dim, heads=2, head_dim=embed_dim, out_dim=embed_dim)
        else:
            self.pool = DINAttentionPooling(embed_dim, hidden=(16,))
        in_dim = embed_dim * (3 + len(user_field_sizes) + (1 if scene_feature else 0))
        if bottom == "mlp":
            self.bottom = mlp([in_dim, *bottom_hidden])
            rep_dim = bottom_hidden[-1] if bottom_hidden else in_dim
        else:
            self.bottom = MMoEBottom(in_dim, self.n_heads, n_experts, expert_hidden)
            rep_dim = self.bottom.out_dim
        self.heads = SceneHeads(self.n_heads, rep_dim, head_hidden)

    # ------------------------------------------------------------------ features
    def embed_items(self, items):
        return self.item_emb(items) + self.category_emb(self.item_category[items])

    def check_inputs(self, scene, user, item, history, offsets):
        for name, t in (("user", user), ("item", item), ("history", history), ("offsets", offsets)):
            if not isinstance(t, torch.Tensor) or t.dtype not in (torch.int64, torch.int32):
                raise TypeError(f"{name} must be an int64 tensor of ids, got "
                                f"{t.dtype if isinstance(t, torch.Tensor) else type(t).__name__}")
        if item.dim() != 1:
            raise ValueError(f"item must be 1-D [B], got shape {tuple(item.shape)}")
        rows = item.shape[0]
        check_scene_ids(scene, self.n_scenes, rows)
        if user.dim() != 2 or user.shape != (rows, len(self.user_field_sizes)):
            raise ValueError(f"user must be [B={rows}, F={len(self.user_field_sizes)}], got {tuple(user.shape)}")
        if offsets.dim() != 1 or offsets.shape[0] != rows + 1:
            raise ValueError(f"offsets must be [B+1={rows + 1}], got {tuple(offsets.shape)}")
        if history.dim() != 1 or int(offsets[0]) != 0 or int(offsets[-1]) != history.shape[0] \
                or bool((offsets[1:] < offsets[:-1]).any()):
            raise ValueError("offsets must rise from 0 to len(history) (CSR offsets of the jagged history)")
        for name, t, n in (("item", item, self.n_items), ("history", history, self.n_items)):
            if t.numel() and (int(t.min()) < 0 or int(t.max()) >= n):
                raise ValueError(f"{name} ids must be in [0, {n}), got [{int(t.min())}, {int(t.max())}]")
        if user.numel():
            sizes = torch.tensor(self.user_field_sizes, device=user.device)
            if bool(((user < 0) | (user >= sizes)).any()):
                raise ValueError(f"user field ids must be in [0, size) per field, sizes {self.user_field_sizes}")

    def features(self, scene, user, item, history, offsets):
        query = self.embed_items(item)
        keys = self.embed_items(history)
        if self.pooling_kind == "kfatt":
            pooled = self.pool(query, keys, offsets)
        else:  # DIN pools a padded layout
            lengths = offsets[1:] - offsets[:-1]
            width = int(lengths.max()) if lengths.numel() else 0
            mask = torch.arange(width, device=keys.device)[None, :] < lengths[:, None]
            padded = keys.new_zeros(lengths.shape[0], width, keys.shape[1]).masked_scatter(mask[..., None], keys)
            pooled = self.pool(query, padded, lengths)
        parts = [self.user_emb(user + self.field_start).flatten(1)] if self.user_field_sizes else []
        if self.scene_emb is not None:
            parts.append(self.scene_emb(scene))
        return torch.cat([*parts, query, pooled, query * pooled], dim=-1)

    # ------------------------------------------------------------------ forward
    def forward(self, scene, user, item, history, offsets, all_heads: bool = False):
        if self.validate:
            self.check_inputs(scene, user, item, history, offsets)
        x = self.features(scene.long(), user.long(), item.long(), history.long(), offsets.long())
        head_id = scene.long() if self.n_heads > 1 else torch.zeros_like(scene, dtype=torch.long)
        groups = SceneGroups(head_id, self.n_heads, self.tile, validate=False)  # checked above
        rep = self.bottom(x, groups) if self.bottom_kind == "mmoe" else self.bottom(x)
        logit = self.heads(rep, groups).squeeze(-1)
        if not all_heads:
            return logit
        # knowledge transfer trains the heads (and the MMoE gates), not the shared representation: detached
        if self.bottom_kind == "mmoe":
            gate_in = x.detach()
            gate = torch.softmax(self.bottom.gate.all_scenes(gate_in), dim=-1)
            reps = torch.einsum("sbe,ebd->sbd", gate, self.bottom.expert_outputs(gate_in).detach())
        else:
            reps = rep.detach()
        return logit, self.heads.all_scenes(reps).squeeze(-1).transpose(0, 1)


def kt_loss(all_logits: torch.Tensor, logit: torch.Tensor, scene: torch.Tensor, teacher: str = "ensemble") -> torch.Tensor:
    """Distillation between heads: mean over rows b and heads t != scene_b of BCE(sigmoid(all[b, t]), q_b),
    q_b the teacher, detached: the row's own head (``'own'``) or the mean of every head (``'ensemble'``).
    0 with one head."""
    if teacher not in KT_TEACHERS:
        raise ValueError(f"kt_teacher must be one of {KT_TEACHERS}, got {teacher!r}")
    rows, heads = all_logits.shape
    if heads < 2 or rows == 0:
        return all_logits.sum() * 0.0
    q = torch.sigmoid(logit if teacher == "own" else all_logits).detach()
    if teacher == "ensemble":
        q = q.mean(dim=1)
    per = F.binary_cross_entropy_with_logits(all_logits, q[:, None].expand_as(all_logits), reduction="none")
    others = torch.ones_like(per).scatter_(1, scene.long()[:, None], 0.0)
    return (per * others).sum() / (rows * (heads - 1))


def dadnn_loss(out, label: torch.Tensor, scene: torch.Tensor, kt_weight: float = 0.0, kt_teacher: str = "ensemble"):
    """``out``: the model's output (``logit`` or ``(logit, all_logits)``). Returns (total, main, kt)."""
    logit, all_logits = out if isinstance(out, tuple) else (out, None)
    if not isinstance(label, torch.Tensor) or label.shape != logit.shape:
        raise ValueError(f"label must be a tensor of shape {tuple(logit.shape)}, got "
                         f"{tuple(label.shape) if isinstance(label, torch.Tensor) else type(label).__name__}")
    main = F.binary_cross_entropy_with_logits(logit, label.to(logit.dtype))
    if all_logits is None or kt_weight == 0:
        return main, main, main.detach() * 0.0
    kt = kt_loss(all_logits, logit, scene, kt_teacher)
    return main + kt_weight * kt, main, kt

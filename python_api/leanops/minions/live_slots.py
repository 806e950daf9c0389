"""Live slots: how a batched KV cache holds rows that advance by different amounts.

Each row's sequence lives in a model's KV cache as the *live* slots of that row (``live[B, L]``, bool).
A round appends the same number of slots to every row (a block, real tokens first and padding after);
what a row does not keep is masked out, not removed. Position ids count a row's live tokens
(``count[B]``), so holes do not shift positions. These helpers are shared by every runner that keeps a
cache (``runner.HFRunner``, ``lean_gpt2.LeanGPT2Runner``) and by the engine that builds the blocks.
"""
from __future__ import annotations

import torch


def keep_prefix(live: torch.Tensor, count: torch.Tensor, n_keep: torch.Tensor):
    """Keep the first ``n_keep[b]`` live tokens of each row -> ``(live, count, used)``, ``used`` being one past
    the last slot still live in any row (slots after it can be dropped)."""
    live = live & (live.long().cumsum(1) <= n_keep[:, None])
    alive = live.any(0).nonzero()
    return live, torch.minimum(count, n_keep), int(alive[-1]) + 1 if alive.numel() else 0


def compaction_order(live: torch.Tensor, count: torch.Tensor):
    """``(order, live)``: the slots that bring each row's live slots to the front, in order, and the live
    mask after the move."""
    length = int(count.max())
    order = torch.sort((~live).to(torch.int8), dim=1, stable=True).indices[:, :length]
    return order, torch.arange(length, device=live.device)[None, :] < count[:, None]


def ragged_block(seqs: list[torch.Tensor], pad: int = 0):
    """Right-pad 1-D token tensors into ``(tokens[B, t], valid[B, t])``; ``t`` >= 1."""
    t = max(1, max(s.shape[0] for s in seqs))
    device = seqs[0].device
    tokens = torch.full((len(seqs), t), pad, dtype=torch.long, device=device)
    valid = torch.zeros(len(seqs), t, dtype=torch.bool, device=device)
    for b, s in enumerate(seqs):
        tokens[b, : s.shape[0]] = s
        valid[b, : s.shape[0]] = True
    return tokens, valid


def position_limit(model) -> int | None:
    """The model's position-table size (``n_positions`` / ``max_position_embeddings``), or None."""
    cfg = getattr(model, "config", None)
    return getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)

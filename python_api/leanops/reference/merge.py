"""Pure-PyTorch reference for the merge family: the specification every backend is tested against.

Token layout (DESIGN.md): tokens ``0..P-1`` are protected (never merged, kept first). The rest split
by the parity of their original index: A = even indices >= P, B = odd indices >= P. Every A token
finds its most cosine-similar B token; the ``r`` A tokens with the best such match merge into it.
All indices returned here are *original* token indices (0..N-1), int64.
"""
from __future__ import annotations

import torch

from .._token_layout import effective_r, layout, split_sizes  # noqa: F401  (re-exported)


def a_b_indices(n: int, protected: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.arange(protected, n, device=device)
    return idx[idx % 2 == 0], idx[idx % 2 == 1]


def bipartite_match(metric: torch.Tensor, r: int, protected: int = 1):
    """ToMe bipartite soft matching. Returns ``(src_idx[B,r], dst_idx[B,r], unm_idx[B,Na-r])``.

    Similarities are computed in float32 (float64 for double input).
    ``src_idx`` lists the merged A tokens by descending match score (ties: lower index first),
    ``dst_idx`` the B token each merges into, ``unm_idx`` the unmerged A tokens in ascending order.
    """
    bsz, n, _ = metric.shape
    r = effective_r(n, r, protected)
    a_idx, b_idx = a_b_indices(n, protected, metric.device)
    metric = metric.to(torch.float64 if metric.dtype == torch.float64 else torch.float32)  # similarities in fp32
    metric = metric / metric.norm(dim=-1, keepdim=True)
    scores = metric[:, a_idx] @ metric[:, b_idx].transpose(-1, -2)  # [B, Na, Nb]
    if b_idx.numel() == 0:
        node_max = metric.new_full((bsz, a_idx.numel()), float("-inf"))
        node_arg = torch.zeros(bsz, a_idx.numel(), dtype=torch.long, device=metric.device)
    else:
        node_max, node_arg = scores.max(dim=-1)  # max returns the first (lowest) index on ties
    order = torch.sort(node_max, dim=-1, descending=True, stable=True).indices  # lower index wins ties
    src_local = order[:, :r]
    unm_local = order[:, r:].sort(dim=-1).values
    src_idx = a_idx[src_local]
    dst_idx = b_idx[node_arg.gather(1, src_local)] if r > 0 else src_idx.clone()
    unm_idx = a_idx[unm_local]
    return src_idx, dst_idx, unm_idx


def slot_of_b(b_orig: torch.Tensor, n_unm: int, protected: int, n: int) -> torch.Tensor:
    """Output slot of a B token given its original index."""
    return protected + n_unm + (b_orig - layout(n, protected)[3]) // 2


def merge_wavg(x, size, src_idx, dst_idx, unm_idx, protected: int = 1, channel_gate=None, token_gate=None):
    """Size-weighted average merge. Output order: protected, unmerged A, all B (original order).

    ``size`` is float32 ``[B,N]`` (None: all ones). With PYRA gates, each merged-in token becomes
    ``src * (1 + channel_gate * token_gate)`` first. Sums run in float32 (float64 for double inputs);
    slots whose total size is 0 (padding) come out as zeros.
    """
    bsz, n, c = x.shape
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    size = x.new_ones(bsz, n, dtype=torch.float32) if size is None else size
    _, b_idx = a_b_indices(n, protected, x.device)
    xa = x.to(acc)
    src = xa.gather(1, src_idx[..., None].expand(-1, -1, c))
    if channel_gate is not None and token_gate is not None:
        src = src * (1 + channel_gate.to(acc) * token_gate.to(acc))
    src_w = size.gather(1, src_idx).to(acc)
    dst_pos = (dst_idx - layout(n, protected)[3]) // 2  # position within B

    b_num = (xa * size.to(acc).unsqueeze(-1))[:, b_idx]
    b_num = b_num.scatter_add(1, dst_pos[..., None].expand(-1, -1, c), src * src_w.unsqueeze(-1))
    b_den = size[:, b_idx].to(acc).scatter_add(1, dst_pos, src_w)
    b_x = torch.where(b_den.unsqueeze(-1) > 0, b_num / b_den.clamp_min(1e-30).unsqueeze(-1), 0.0)

    keep = torch.cat([torch.arange(protected, device=x.device).expand(bsz, -1), unm_idx], dim=1)
    kept_x = x.gather(1, keep[..., None].expand(-1, -1, c))
    x_out = torch.cat([kept_x, b_x.to(x.dtype)], dim=1)
    size_out = torch.cat([size.gather(1, keep), b_den.to(size.dtype)], dim=1)
    return x_out, size_out


def merge_slot_map(src_idx, dst_idx, unm_idx, protected: int, n: int):
    """Source tracing as an index map: ``slot_map[b, i]`` is the output slot holding input token i."""
    bsz = src_idx.shape[0]
    device = src_idx.device
    n_unm = unm_idx.shape[1]
    slot = torch.empty(bsz, n, dtype=torch.long, device=device)
    slot[:, :protected] = torch.arange(protected, device=device)
    _, b_idx = a_b_indices(n, protected, device)
    slot[:, b_idx] = slot_of_b(b_idx, n_unm, protected, n).to(device)
    slot.scatter_(1, unm_idx, (protected + torch.arange(n_unm, device=device)).expand(bsz, -1))
    slot.scatter_(1, src_idx, slot_of_b(dst_idx, n_unm, protected, n).to(device))
    return slot


def unmerge(x_merged: torch.Tensor, slot_map: torch.Tensor) -> torch.Tensor:
    """Back to the original N tokens: every token takes the value of the slot it went into."""
    return x_merged.gather(1, slot_map[..., None].expand(-1, -1, x_merged.shape[-1]))


def compose_slot_maps(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Slot map of two merges in a row (tokens -> slots after ``first`` -> slots after ``second``)."""
    return second.gather(1, first)


def tome_anchor_merge(metric, x, size, r, class_token=True):
    """The eager ToMe algorithm as the paper describes it (the benchmark anchor), unfused.

    Alternate tokens form the two sets, cosine similarity picks each first-set token's best
    partner, the ``r`` strongest edges merge by size-weighted average. Returns ``(x, size)``.
    """
    n_keep = 1 if class_token else 0
    t = metric.shape[1]
    r = min(r, (t - n_keep) // 2)
    unit = metric / metric.norm(dim=-1, keepdim=True)
    sim = unit[:, 0::2] @ unit[:, 1::2].transpose(1, 2)
    if class_token:
        sim[:, 0, :] = float("-inf")  # the class token never merges
    best_sim, best_partner = sim.max(dim=2)
    ranked = best_sim.argsort(dim=1, descending=True)
    merged_rows, kept_rows = ranked[:, :r], ranked[:, r:].sort(dim=1).values
    partner = best_partner.gather(1, merged_rows)

    def sum_merge(t_in):
        ch = t_in.shape[-1]
        evens, odds = t_in[:, 0::2], t_in[:, 1::2]
        kept = evens.gather(1, kept_rows[..., None].expand(-1, -1, ch))
        moved = evens.gather(1, merged_rows[..., None].expand(-1, -1, ch))
        odds = odds.scatter_reduce(1, partner[..., None].expand(-1, -1, ch), moved, reduce="sum")
        return torch.cat([kept, odds], dim=1)

    if size is None:
        size = torch.ones_like(x[..., :1])
    weighted = sum_merge(x * size)
    size = sum_merge(size)
    return weighted / size, size

"""Pure-PyTorch reference for the merge family: the specification every backend is tested against.

Token layout (DESIGN.md): tokens ``0..P-1`` are protected (``P = num_protected``: never merged, kept
first). The rest split by the parity of their original index: A = even indices >= P, B = odd indices
>= P. Every A token finds its most cosine-similar B token; the ``r`` A tokens with the best such match
merge into it. All indices returned here are *original* token indices (0..N-1), int64.

Order of scores (one total order, every backend): NaN above every number (as ``torch.sort``); ties,
NaN with NaN included, go to the lower index. A metric row holding a NaN or an infinity, or all
zeros, has a NaN unit vector and so a NaN similarity with every token.

``r' = 0`` (r = 0, or clamped to 0) is the identity: nothing moves, ``merge_wavg`` returns ``x`` in its
original order and ``merge_slot_map`` the identity map.
"""
from __future__ import annotations

import torch

from .._token_layout import a_b_indices, effective_r, layout, split_sizes  # noqa: F401  (re-exported)


def _acc_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def bipartite_match(metric: torch.Tensor, r: int, num_protected: int = 1):
    """ToMe bipartite soft matching. Returns ``(src_idx[B,r'], dst_idx[B,r'], unm_idx[B,Na-r'])``.

    Similarities are computed in float32 (float64 for double input) from unit vectors ``m / ||m||``.
    ``dst`` of an A token is its best B token (lowest index on ties; a NaN similarity beats every
    number). ``src_idx`` lists the ``r'`` merged A tokens by descending best score (ties: lower index
    first), ``dst_idx`` their B tokens, ``unm_idx`` the unmerged A tokens in ascending order.
    """
    bsz, n, _ = metric.shape
    r = effective_r(n, r, num_protected)
    a_idx, b_idx = a_b_indices(n, num_protected, metric.device)
    if r == 0:  # identity: no similarity needed
        empty = torch.zeros(bsz, 0, dtype=torch.long, device=metric.device)
        return empty, empty.clone(), a_idx.expand(bsz, -1).clone()
    unit = metric.to(_acc_dtype(metric))
    unit = unit / unit.norm(dim=-1, keepdim=True)  # no epsilon: a zero row gives NaN
    scores = unit[:, a_idx] @ unit[:, b_idx].transpose(-1, -2)  # [B, Na, Nb]
    # The total order: cosines lie in [-1, 1], so NaN -> +inf puts NaN above every number and keeps
    # NaN == NaN a tie; max and stable sort then give the first index among equals.
    key = torch.nan_to_num(scores, nan=float("inf"))
    best, best_b = key.max(dim=-1)
    order = torch.sort(best, dim=-1, descending=True, stable=True).indices
    src_local = order[:, :r]
    unm_local = order[:, r:].sort(dim=-1).values
    return a_idx[src_local], b_idx[best_b.gather(1, src_local)], a_idx[unm_local]


def slot_of_b(b_orig: torch.Tensor, n_unm: int, num_protected: int, n: int) -> torch.Tensor:
    """Output slot of a B token given its original index (when r' > 0)."""
    return num_protected + n_unm + (b_orig - layout(n, num_protected)[3]) // 2


def merge_wavg(x, size, src_idx, dst_idx, unm_idx, num_protected: int = 1, channel_gate=None, token_gate=None):
    """Size-weighted average merge. Output order: protected, unmerged A, all B (original order).

    ``size`` is float32 ``[B,N]`` (None: all ones). With PYRA gates, each merged-in token becomes
    ``src * (1 + channel_gate * token_gate)`` first. Sums run in float32 (float64 for double inputs);
    slots whose total size is 0 (padding) come out as zeros. NaN and infinities follow IEEE arithmetic.
    With nothing merged (``src_idx`` empty) the result is ``(x, size)`` unchanged, in original order.
    """
    bsz, n, c = x.shape
    acc = _acc_dtype(x)
    size = x.new_ones(bsz, n, dtype=torch.float32) if size is None else size
    if src_idx.shape[1] == 0:
        return x.clone(), size.clone()
    _, b_idx = a_b_indices(n, num_protected, x.device)
    xa = x.to(acc)
    src = xa.gather(1, src_idx[..., None].expand(-1, -1, c))
    if channel_gate is not None and token_gate is not None:
        src = src * (1 + channel_gate.to(acc) * token_gate.to(acc))
    src_w = size.gather(1, src_idx).to(acc)
    dst_pos = (dst_idx - layout(n, num_protected)[3]) // 2  # position within B

    b_num = (xa * size.to(acc).unsqueeze(-1))[:, b_idx]
    b_num = b_num.scatter_add(1, dst_pos[..., None].expand(-1, -1, c), src * src_w.unsqueeze(-1))
    b_den = size[:, b_idx].to(acc).scatter_add(1, dst_pos, src_w)
    b_x = torch.where(b_den.unsqueeze(-1) > 0, b_num / b_den.clamp_min(1e-30).unsqueeze(-1), 0.0)

    keep = torch.cat([torch.arange(num_protected, device=x.device).expand(bsz, -1), unm_idx], dim=1)
    kept_x = x.gather(1, keep[..., None].expand(-1, -1, c))
    x_out = torch.cat([kept_x, b_x.to(x.dtype)], dim=1)
    size_out = torch.cat([size.gather(1, keep), b_den.to(size.dtype)], dim=1)
    return x_out, size_out


def merge_slot_map(src_idx, dst_idx, unm_idx, num_protected: int, n: int):
    """Source tracing as an index map: ``slot_map[b, i]`` is the output slot holding input token i."""
    bsz = src_idx.shape[0]
    device = src_idx.device
    if src_idx.shape[1] == 0:  # nothing merged: the identity
        return torch.arange(n, device=device).expand(bsz, n).clone()
    n_unm = unm_idx.shape[1]
    slot = torch.empty(bsz, n, dtype=torch.long, device=device)
    slot[:, :num_protected] = torch.arange(num_protected, device=device)
    _, b_idx = a_b_indices(n, num_protected, device)
    slot[:, b_idx] = slot_of_b(b_idx, n_unm, num_protected, n)
    slot.scatter_(1, unm_idx, (num_protected + torch.arange(n_unm, device=device)).expand(bsz, -1))
    slot.scatter_(1, src_idx, slot_of_b(dst_idx, n_unm, num_protected, n))
    return slot


def unmerge(x_merged: torch.Tensor, slot_map: torch.Tensor) -> torch.Tensor:
    """Back to the original N tokens: every token takes the value of the slot it went into."""
    return x_merged.gather(1, slot_map[..., None].expand(-1, -1, x_merged.shape[-1]))


def compose_slot_maps(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Slot map of two merges in a row (tokens -> slots after ``first`` -> slots after ``second``)."""
    return second.gather(1, first)


def tome_anchor_merge(metric, x, size, r, class_token=True):
    """ToMe's published algorithm (Bolya et al., ICLR 2023, Sec. 3), written eagerly: the anchor.

    Written from the paper's description, not from ToMe's code. Steps: ``r`` is capped at half the
    mergeable tokens and ``r <= 0`` returns the input untouched; tokens alternate into sets A (even
    positions) and B (odd); cosine similarity of every A to every B (a class token, position 0, gets
    -inf so it never merges); each A token's best B edge; the ``r`` strongest edges (sorted by a plain,
    non-stable descending argsort) merge by size-weighted average into their B token; the output is the
    unmerged A tokens followed by all of B. The unmerged A tokens stay in score order; only with a
    class token are they sorted back into position order (so the class token comes first).
    ``size`` is ``[B, N, 1]`` or None (ones). Returns ``(x, size)``.
    """
    if size is None:
        size = torch.ones_like(x[..., :1])
    n_keep = 1 if class_token else 0
    t = metric.shape[1]
    r = min(r, (t - n_keep) // 2)
    if r <= 0:
        return x, size
    unit = metric / metric.norm(dim=-1, keepdim=True)
    sim = unit[:, 0::2] @ unit[:, 1::2].transpose(1, 2)
    if class_token:
        sim[:, 0, :] = float("-inf")
    best_sim, best_partner = sim.max(dim=2)
    ranked = best_sim.argsort(dim=1, descending=True)
    merged_rows, kept_rows = ranked[:, :r], ranked[:, r:]
    if class_token:
        kept_rows = kept_rows.sort(dim=1).values
    partner = best_partner.gather(1, merged_rows)

    def sum_merge(t_in):
        ch = t_in.shape[-1]
        evens, odds = t_in[:, 0::2], t_in[:, 1::2]
        kept = evens.gather(1, kept_rows[..., None].expand(-1, -1, ch))
        moved = evens.gather(1, merged_rows[..., None].expand(-1, -1, ch))
        odds = odds.scatter_reduce(1, partner[..., None].expand(-1, -1, ch), moved, reduce="sum")
        return torch.cat([kept, odds], dim=1)

    weighted = sum_merge(x * size)
    size = sum_merge(size)
    return weighted / size, size

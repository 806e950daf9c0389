"""The merge family's token layout (DESIGN.md), shared by the reference, the op wrappers and the kernels.

Tokens ``0..P-1`` are protected (never merged, kept first; ``P = num_protected``); the rest split by the
parity of their original index: A = even indices >= P, B = odd indices >= P.
"""
from __future__ import annotations

import torch


def split_sizes(n: int, num_protected: int) -> tuple[int, int]:
    """Number of A (even index >= P) and B (odd index >= P) tokens."""
    rest = max(n - num_protected, 0)
    n_first, n_second = (rest + 1) // 2, rest // 2
    return (n_first, n_second) if num_protected % 2 == 0 else (n_second, n_first)


def layout(n: int, num_protected: int) -> tuple[int, int, int, int]:
    """``(|A|, |B|, first A index, first B index)`` of the token layout."""
    na, nb = split_sizes(n, num_protected)
    first_a = num_protected if num_protected % 2 == 0 else num_protected + 1
    first_b = num_protected + 1 if num_protected % 2 == 0 else num_protected
    return na, nb, first_a, first_b


def effective_r(n: int, r: int, num_protected: int) -> int:
    """``r`` clamped to what A can give (zero when there is no B token to merge into)."""
    na, nb = split_sizes(n, num_protected)
    return min(r, na) if nb > 0 else 0


def a_b_indices(n: int, num_protected: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Original indices of the A tokens and of the B tokens, ascending."""
    _, _, first_a, first_b = layout(n, num_protected)
    return (torch.arange(min(first_a, n), n, 2, device=device), torch.arange(min(first_b, n), n, 2, device=device))

"""leanops: fused C++/CUDA/Triton kernels for token merging, speculative verification and attention pooling.

Ops are ``leanops.<op>`` (argument checks, backend choice) and ``torch.ops.leanops.<op>`` (raw).
"""
from __future__ import annotations

from ._version import __version__
from ._requirements import check_torch

check_torch()  # before anything touches torch.library: an old torch gets a clear ImportError, not an AttributeError

from . import _library  # noqa: E402
from .ops import (bipartite_match, compose_slot_maps, group_duplicates, jagged_attention_pool,  # noqa: E402
                  jagged_from_padded, lengths_to_offsets, majority_vote, merge_slot_map, merge_wavg, unmerge,
                  verify_greedy, verify_greedy_ragged, verify_sampling)
from ._build_info import build_info  # noqa: E402

__all__ = [
    "__version__",
    "build_info",
    "bipartite_match",
    "merge_wavg",
    "merge_slot_map",
    "unmerge",
    "compose_slot_maps",
    "jagged_attention_pool",
    "jagged_from_padded",
    "group_duplicates",
    "lengths_to_offsets",
    "majority_vote",
    "verify_greedy",
    "verify_greedy_ragged",
    "verify_sampling",
]

"""Public ops per family: argument checks, backend choice, fake and autograd registration."""
from .merge import bipartite_match, compose_slot_maps, merge_slot_map, merge_wavg, unmerge
from .pool import group_duplicates, jagged_attention_pool, jagged_from_padded, lengths_to_offsets
from .verify import majority_vote, verify_greedy, verify_greedy_ragged, verify_sampling

__all__ = ["bipartite_match", "merge_wavg", "merge_slot_map", "unmerge", "compose_slot_maps",
           "jagged_attention_pool", "jagged_from_padded", "group_duplicates", "lengths_to_offsets",
           "majority_vote", "verify_greedy", "verify_greedy_ragged", "verify_sampling"]

"""ToMe (token merging) for Hugging Face ViT / CLIP vision / BERT encoders, on leanops merge ops."""
from .patch import mean_pool, patch, slot_map, token_sizes, tokens_per_layer, unpatch
from .schedule import r_schedule

__all__ = ["patch", "unpatch", "r_schedule", "token_sizes", "slot_map", "tokens_per_layer", "mean_pool"]

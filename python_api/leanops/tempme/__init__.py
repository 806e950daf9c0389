"""TempMe (temporal token merging, arXiv 2409.01156) for Hugging Face CLIP video encoders, on leanops merge ops."""
from .config import TempMeConfig, planned_trace
from .patch import encode_video, patch, tokens_per_layer, unpatch, vision_tower

__all__ = ["TempMeConfig", "patch", "unpatch", "encode_video", "tokens_per_layer", "planned_trace", "vision_tower"]

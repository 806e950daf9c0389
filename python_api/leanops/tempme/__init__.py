"""TempMe (temporal token merging, arXiv 2409.01156) for Hugging Face CLIP video encoders, on leanops merge ops."""
from .baselines import encode_frames, matched_tome_schedule
from .config import TempMeConfig, planned_trace
from .flops import count_gflops, flops
from .folder import FrameFolderDataset
from .lora import add_lora
from .metrics import retrieval_metrics
from .patch import encode_video, patch, tokens_per_layer, unpatch, vision_tower
from .train import evaluate, info_nce, train

__all__ = ["TempMeConfig", "patch", "unpatch", "encode_video", "tokens_per_layer", "planned_trace", "vision_tower",
           "flops", "count_gflops", "encode_frames", "matched_tome_schedule", "add_lora", "train", "evaluate",
           "info_nce", "retrieval_metrics", "FrameFolderDataset"]

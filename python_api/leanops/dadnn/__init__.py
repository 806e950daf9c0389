"""DADNN (arXiv 2011.11938): one CTR model for many scenes with a shared bottom, per-scene heads run in one
batched pass, and knowledge transfer between heads; trainable with PyTorch DDP."""
from .data import SceneData, generate
from .heads import SceneGroups, SceneHeads, SceneLinear
from .model import DADNN, MMoEBottom, dadnn_loss, kt_loss
from .train import global_batches, predict, rank_batches, train

__all__ = ["DADNN", "MMoEBottom", "SceneHeads", "SceneLinear", "SceneGroups", "dadnn_loss", "kt_loss", "generate",
           "SceneData", "train", "predict", "rank_batches", "global_batches"]

"""KFAtt (Kalman filtering attention) for user-behaviour modelling, and the DIN baseline."""
from .data import CTRData, generate
from .model import POOLINGS, CTRModel
from .modules import DINAttentionPooling, KFAttention
from .train import auc, experiment, predict, summarise, train_model

__all__ = ["KFAttention", "DINAttentionPooling", "CTRModel", "POOLINGS", "generate", "CTRData", "train_model",
           "predict", "auc", "experiment", "summarise"]

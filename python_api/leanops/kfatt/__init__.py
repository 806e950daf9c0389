"""KFAtt (Kalman filtering attention) for user-behaviour modelling, and the DIN baseline."""
from .data import CTRData, generate
from .din_data import generate_din
from .metrics import auc, gauc
from .model import POOLINGS, CTRModel
from .modules import DINAttentionPooling, KFAttention
from .train import experiment, predict, summarise, train_model

__all__ = ["KFAttention", "DINAttentionPooling", "CTRModel", "POOLINGS", "generate", "generate_din", "CTRData",
           "train_model", "predict", "auc", "gauc", "experiment", "summarise"]

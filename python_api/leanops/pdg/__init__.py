"""Product description generation with adaptive posterior distillation and a copy mechanism (arXiv 2103.01594)."""
from .copy import copy_distribution, copy_log_distribution, copy_nll, scatter_attention
from . import data
from .data import Catalogue, Product
from .decode import beam_search
from .features import Batch, encode, field_ids
from .metrics import evaluate
from .model import APN, APNConfig
from .train import SYSTEMS, Generator, System, build, train
from .vocab import PieceVocab

__all__ = ["copy_distribution", "copy_log_distribution", "copy_nll", "scatter_attention", "APN", "APNConfig",
           "PieceVocab", "Batch", "encode", "field_ids", "beam_search", "data", "Catalogue", "Product",
           "evaluate", "SYSTEMS", "System", "Generator", "build", "train"]

"""Group-wise contrastive learning for dialogue generation (Cai et al., arXiv 2009.07543)."""
from .data import Pair, encode_pairs, load_pairs, split_by_conversation, train_tokenizer
from .logprob import sequence_logprob
from .loss import group_contrastive_loss
from .matching import Calibration, HashedBagOfWords, MiniLMEmbedder, TextEmbeddings, calibrate
from .pipeline import GroupCollator, GroupDataset, group_loader
from .sampling import Groups, sample_groups
from .trainer import Trainer, check_reference, frozen_copy

__all__ = ["group_contrastive_loss", "sequence_logprob", "Trainer", "frozen_copy", "check_reference",
           "Pair", "load_pairs", "split_by_conversation", "train_tokenizer", "encode_pairs",
           "MiniLMEmbedder", "HashedBagOfWords", "TextEmbeddings", "Calibration", "calibrate", "Groups", "sample_groups",
           "GroupDataset", "GroupCollator", "group_loader"]

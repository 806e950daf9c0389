"""Group-wise contrastive learning for dialogue generation (Cai et al., arXiv 2009.07543)."""
from .logprob import sequence_logprob
from .loss import group_contrastive_loss

__all__ = ["group_contrastive_loss", "sequence_logprob"]

"""Pure-PyTorch references: the specification of every op."""
from . import merge, pool

__all__ = ["merge", "pool"]

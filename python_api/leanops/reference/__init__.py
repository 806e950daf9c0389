"""Pure-PyTorch references: the specification of every op."""
from . import merge

__all__ = ["merge"]

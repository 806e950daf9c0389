"""Pure-PyTorch references: the specification of every op."""
from . import merge, pool, verify

__all__ = ["merge", "pool", "verify"]

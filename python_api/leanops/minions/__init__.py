"""Minions: majority-voted, adaptive, pipelined speculative decoding with several small draft models."""
from .engine import Minions
from .stats import MinionsStats

__all__ = ["Minions", "MinionsStats"]

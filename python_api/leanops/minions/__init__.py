"""Minions: majority-voted speculative decoding with several small draft models (first version)."""
from .engine import Minions, MinionsStats

__all__ = ["Minions", "MinionsStats"]

"""What the engine needs from a model runner (``runner.HFRunner``, ``runner.CallableRunner``,
``lean_gpt2.LeanGPT2Runner``): the engine is written against this protocol, not the classes."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Runner(Protocol):
    """A causal LM over a batch of rows that advance by different amounts (see ``live_slots``)."""

    count: torch.Tensor  # [B] long: tokens of each row the runner holds (its cache, or its row copy)

    def feed(self, tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Append ``tokens[B, t]`` (``valid[B, t]`` marks real tokens, a prefix of each row) and return their
        logits ``[B, t, V]``; logits at padding are meaningless."""
        ...

    def keep(self, n_keep: torch.Tensor) -> None:
        """Keep the first ``n_keep[b]`` tokens of each row (``n_keep <= count``); the rest is forgotten."""
        ...

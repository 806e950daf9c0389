"""PYRA's gate (arXiv 2403.09192): how the tokens about to be merged are modulated, per merging layer."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def gate_values(pre_norm, channel_gate_weight, token_gate_weight, norm_weight, norm_bias, eps):
    """``(W_c [B, 1, C], W_t [B, r, 1])`` from ``S + D`` (``[B, r, C]``, before the layer norm): the gate
    formula as a function of its parameters, so that ``pyra_merge`` can differentiate it on its own."""
    p = F.layer_norm(pre_norm, pre_norm.shape[-1:], norm_weight, norm_bias, eps)
    weight = channel_gate_weight.t().expand(p.shape[0], 1, -1)  # batched [1, r] @ [r, C]: one bmm
    channel = 2 * torch.sigmoid(torch.bmm(weight, p))
    token = 2 * torch.sigmoid(torch.matmul(p, token_gate_weight.t())) - 1  # [B, r, C] @ [C, 1]
    return channel, token


class PYRAGate(nn.Module):
    """Channel and token gates of one merging layer that merges ``r`` tokens of width ``dim``.

    Given the size-weighted sources ``S`` and their destinations ``D`` (``[B, r, C]``), with
    ``P = norm(S + D)``:
    ``W_c = 2 * sigmoid(channel_gate_weight^T @ P)`` (``[B, 1, C]``) and
    ``W_t = 2 * sigmoid(P @ token_gate_weight^T) - 1`` (``[B, r, 1]``); the merged sources are
    ``S + S * W_c * W_t``. ``token_gate_weight`` starts at zero, so ``W_t = 0`` and the layer starts as ToMe.
    """

    def __init__(self, dim: int, r: int):
        super().__init__()
        for name, v in (("dim", dim), ("r", r)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        self.dim, self.r = dim, r
        self.channel_gate_weight = nn.Parameter(torch.empty(r, 1))
        self.token_gate_weight = nn.Parameter(torch.zeros(1, dim))
        self.norm = nn.LayerNorm(dim)
        nn.init.kaiming_uniform_(self.channel_gate_weight, a=math.sqrt(5))  # nn.Linear's default init

    def check(self, source: torch.Tensor, what: str = "source") -> None:
        """Raise if ``source`` ([B, r, C]) does not fit the gate's r and dim."""
        if source.dim() != 3:
            raise ValueError(f"{what} must be [B, r, C], got shape {tuple(source.shape)}")
        if source.shape[2] != self.dim:
            raise ValueError(f"gate was built for dim={self.dim}, but the tokens have C={source.shape[2]} channels")
        if source.shape[1] != self.r:
            raise ValueError(f"gate was built for r={self.r}, but this merge step merges r={source.shape[1]} tokens")

    def forward(self, source: torch.Tensor, dest: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W_c [B, 1, C], W_t [B, r, 1])`` from the size-weighted sources and destinations."""
        self.check(source)
        if dest.shape != source.shape:
            raise ValueError(f"dest must have source's shape {tuple(source.shape)}, got {tuple(dest.shape)}")
        return gate_values(source + dest, self.channel_gate_weight, self.token_gate_weight, self.norm.weight,
                           self.norm.bias, self.norm.eps)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, r={self.r}"

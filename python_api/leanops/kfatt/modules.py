"""KFAtt (Kalman filtering attention, Liu et al., NeurIPS 2020) and the DIN baseline, as nn.Modules.

KFAtt reads attention pooling as a MAP estimate of the user's interest in the query: each behaviour is
an observation with precision ``1/sigma_t^2 = exp(q.k_t)``, and a query-dependent global prior (mean and
variance from a small MLP on the query) is one more observation, so a query with no relevant history
falls back on the prior. KFAtt-freq groups repeated behaviours and gives a group of n the weight
``1/(sigma^2 + sigma'^2/n)``, which grows with n but never beyond one behaviour's ``1/sigma^2``.
Both reduce to ``jagged_attention_pool`` (prior entry; logit ``s - softplus(s + log sigma'^2 - log n)``).
"""
from __future__ import annotations

import torch
from torch import nn

from ..ops.pool import jagged_attention_pool


class LocalActivationUnit(nn.Module):
    """DIN's local activation unit: ``MLP([q, k, q - k, q * k]) -> [..., out]`` (one score per output)."""

    def __init__(self, embed_dim: int, hidden=(80, 40), out: int = 1, activation: str = "sigmoid"):
        super().__init__()
        act = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "prelu": nn.PReLU}[activation]
        layers, width = [], 4 * embed_dim
        for size in hidden:
            layers += [nn.Linear(width, size), act()]
            width = size
        layers.append(nn.Linear(width, out))
        self.mlp = nn.Sequential(*layers)

    def forward(self, q, k):
        return self.mlp(torch.cat([q, k, q - k, q * k], dim=-1))


class KFAttention(nn.Module):
    """Multi-head KFAtt pooling of jagged behaviours.

    forward(query[B, Dq], keys[T, Dk], offsets[B+1], counts[T] | None) -> [B, out_dim]
    ``counts`` (KFAtt-freq): how often each (grouped) behaviour occurred; see ``leanops.group_duplicates``.
    """

    def __init__(self, query_dim: int, key_dim: int, heads: int = 2, head_dim: int = 16, value_dim: int | None = None,
                 out_dim: int | None = None, variant: str = "base", prior_hidden: int = 32,
                 scale: float | None = None, scorer: str = "dot", scorer_hidden=(80, 40),
                 backend: str | None = None):
        super().__init__()
        if variant not in ("base", "freq"):
            raise ValueError(f"variant must be 'base' or 'freq', got {variant!r}")
        if scorer not in ("dot", "mlp"):
            raise ValueError(f"scorer must be 'dot' or 'mlp', got {scorer!r}")
        if scorer == "mlp" and query_dim != key_dim:
            raise ValueError(f"scorer='mlp' needs query_dim == key_dim, got {query_dim} and {key_dim}")
        for name, v in (("heads", heads), ("head_dim", head_dim), ("query_dim", query_dim), ("key_dim", key_dim)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.heads, self.head_dim = heads, head_dim
        self.value_dim = value_dim or head_dim
        self.variant, self.backend = variant, backend
        self.scale = head_dim ** -0.5 if scale is None else float(scale)  # logit = scale * q.k
        self.scorer = scorer
        if scorer == "dot":
            self.q_proj = nn.Linear(query_dim, heads * head_dim)
            self.k_proj = nn.Linear(key_dim, heads * head_dim)
        else:  # DIN's local activation unit gives each head's logit (log precision) of a behaviour
            self.unit = LocalActivationUnit(key_dim, scorer_hidden, out=heads)
        self.v_proj = nn.Linear(key_dim, heads * self.value_dim)
        # global prior from the query: per head a logit (= -log sigma_0^2) and a mean value
        self.prior = nn.Sequential(nn.Linear(query_dim, prior_hidden), nn.ReLU(),
                                   nn.Linear(prior_hidden, heads * (1 + self.value_dim)))
        if variant == "freq":
            self.log_obs_var = nn.Parameter(torch.zeros(heads))  # log sigma'^2 per head
        self.out = nn.Linear(heads * self.value_dim, out_dim or key_dim)

    def forward(self, query, keys, offsets, counts=None):
        bsz, t = query.shape[0], keys.shape[0]
        h, d, dv = self.heads, self.head_dim, self.value_dim
        bias = None
        if self.scorer == "dot":
            q = self.q_proj(query).view(bsz, h, d)
            k = self.k_proj(keys).view(t, h, d)
        else:  # the unit's logits enter as the op's bias; q.k is a zero placeholder
            row = torch.repeat_interleave(torch.arange(bsz, device=query.device), offsets[1:] - offsets[:-1],
                                          output_size=t)
            bias = self.unit(query[row], keys).contiguous()
            q, k = query.new_zeros(bsz, h, 1), keys.new_zeros(t, h, 1)
        v = self.v_proj(keys).view(t, h, dv)
        prior = self.prior(query).view(bsz, h, 1 + dv)
        prior_logit, prior_value = prior[..., 0].contiguous(), prior[..., 1:].contiguous()
        freq_c = None
        if self.variant == "freq":
            n = counts.to(q.dtype) if counts is not None else torch.ones(t, dtype=q.dtype, device=q.device)
            if counts is not None and tuple(counts.shape) != (t,):
                raise ValueError(f"counts must be [T] = [{t}], got {tuple(counts.shape)}")
            freq_c = (self.log_obs_var[None, :] - torch.log(n)[:, None]).contiguous()
        out, _ = jagged_attention_pool(q.contiguous(), k.contiguous(), v.contiguous(), offsets, self.scale,
                                       bias, freq_c, prior_logit, prior_value, backend=self.backend, validate=False)
        return self.out(out.reshape(bsz, h * dv))


class DINAttentionPooling(nn.Module):
    """DIN's local activation unit over padded behaviours (as DeepCTR-Torch's AttentionSequencePoolingLayer).

    score_t = MLP([q, k_t, q - k_t, q * k_t]); output = sum_t w_t k_t with w = score masked to 0 on
    padding (``weight_normalization=False``, DIN's default) or softmax(score) over the real behaviours.
    forward(query[B, E], keys[B, L, E], lengths[B]) -> [B, E]
    """

    def __init__(self, embed_dim: int, hidden=(80, 40), activation: str = "sigmoid", weight_normalization: bool = False):
        super().__init__()
        self.unit = LocalActivationUnit(embed_dim, hidden, out=1, activation=activation)
        self.weight_normalization = weight_normalization

    def forward(self, query, keys, lengths):
        bsz, length, _ = keys.shape
        q = query[:, None, :].expand(-1, length, -1)
        score = self.unit(q, keys).squeeze(-1)  # [B, L]
        mask = torch.arange(length, device=keys.device)[None, :] < lengths[:, None]
        if self.weight_normalization:
            score = torch.softmax(score.masked_fill(~mask, -(2.0 ** 32) + 1), dim=-1)
        score = score * mask
        return torch.einsum("bl,ble->be", score, keys)

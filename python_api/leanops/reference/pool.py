"""Pure-PyTorch reference for the pool family (KFAtt, DIN): the specification of ``jagged_attention_pool``.

Row b owns behaviours ``offsets[b]..offsets[b+1]`` of the jagged ``k[T,H,D]``/``v[T,H,Dv]``. Per head:
    s_t  = scale * q_b . k_t + bias_t
    s_t <- s_t - softplus(s_t + freq_c_t)          (KFAtt-freq, when freq_c is given)
and, with a prior, one more entry of logit ``prior_logit_b`` and value ``prior_value_b`` (KFAtt's
query-dependent global prior). ``out_b`` is the softmax-weighted sum of the values, ``lse_b`` the
log-sum-exp of all the row's logits (prior included). A row with no entry gives ``out = 0`` and
``lse = -inf``; with a prior and no behaviour, ``out = prior_value`` and ``lse = prior_logit``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def behaviour_logits(q, k, offsets, scale, bias=None, freq_c=None):
    """``[T, H]`` logits of every behaviour against its row's query."""
    lengths = offsets[1:] - offsets[:-1]
    row_of = torch.repeat_interleave(torch.arange(q.shape[0], device=q.device), lengths)
    s = scale * (q[row_of] * k).sum(-1)
    if bias is not None:
        s = s + bias
    if freq_c is not None:
        s = s - F.softplus(s + freq_c)
    return s, row_of


def jagged_attention_pool(q, k, v, offsets, scale, bias=None, freq_c=None, prior_logit=None, prior_value=None):
    """Returns ``(out[B,H,Dv], lse[B,H])``; computed in float32 (float64 for double) and cast back."""
    acc = torch.float64 if q.dtype == torch.float64 else torch.float32
    qa, ka, va = q.to(acc), k.to(acc), v.to(acc)
    bsz, heads, _ = q.shape
    s, row_of = behaviour_logits(qa, ka, offsets, scale, None if bias is None else bias.to(acc),
                                 None if freq_c is None else freq_c.to(acc))
    idx = row_of[:, None].expand(-1, heads)
    row_max = torch.full((bsz, heads), float("-inf"), dtype=acc, device=q.device)
    row_max = row_max.scatter_reduce(0, idx, s, reduce="amax")
    if prior_logit is not None:
        row_max = torch.maximum(row_max, prior_logit.to(acc))
    safe_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    e = torch.exp(s - safe_max[row_of])
    den = torch.zeros(bsz, heads, dtype=acc, device=q.device).index_add(0, row_of, e)
    num = torch.zeros(bsz, heads, va.shape[-1], dtype=acc, device=q.device).index_add(0, row_of, e[..., None] * va)
    if prior_logit is not None:
        e0 = torch.exp(prior_logit.to(acc) - safe_max)
        den = den + e0
        num = num + e0[..., None] * prior_value.to(acc)
    out = torch.where(den[..., None] > 0, num / den.clamp_min(1e-300)[..., None], torch.zeros_like(num))
    lse = torch.where(den > 0, safe_max + torch.log(den.clamp_min(1e-300)), torch.full_like(den, float("-inf")))
    return out.to(q.dtype), lse.to(torch.float32 if acc == torch.float32 else acc)


def padded_attention_pool(q, k_padded, v_padded, lengths, scale, bias=None, freq_c=None, prior_logit=None,
                          prior_value=None):
    """The same pooling on padded ``[B, L, H, D]`` tensors (masking by ``lengths``): the padded anchor."""
    bsz, length = k_padded.shape[:2]
    s = scale * torch.einsum("bhd,blhd->blh", q, k_padded)
    if bias is not None:
        s = s + bias
    if freq_c is not None:
        s = s - F.softplus(s + freq_c)
    mask = torch.arange(length, device=q.device)[None, :] < lengths[:, None]
    s = s.masked_fill(~mask[..., None], float("-inf"))
    vals = v_padded
    if prior_logit is not None:
        s = torch.cat([s, prior_logit[:, None]], dim=1)
        vals = torch.cat([v_padded, prior_value[:, None]], dim=1)
    lse = torch.logsumexp(s, dim=1)
    w = torch.nan_to_num(torch.exp(s - lse[:, None]), nan=0.0)
    return torch.einsum("blh,blhd->bhd", w, vals), lse

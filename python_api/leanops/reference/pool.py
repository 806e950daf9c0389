"""Pure-PyTorch reference for the pool family (KFAtt, DIN): the specification of ``jagged_attention_pool``.

Row b owns behaviours ``offsets[b]..offsets[b+1]`` of the jagged ``k[T,H,D]``/``v[T,H,Dv]``. Per head:
    s_t  = scale * q_b . k_t + bias_t
    s_t <- s_t - softplus(s_t + freq_c_t)          (KFAtt-freq, when freq_c is given)
and, with a prior, one more entry of logit ``prior_logit_b`` and value ``prior_value_b`` (KFAtt's
query-dependent global prior). ``out_b`` is the softmax-weighted sum of the values, ``lse_b`` the
log-sum-exp of all the row's logits (prior included).

Non-finite numbers (the contract every backend follows, per (row, head)):
- a logit of -inf masks its entry: it takes no part and its value is never read (a NaN there is ignored);
- a row whose logits are all -inf (or that has no entry) is empty: ``out = 0``, ``lse = -inf``; with a
  prior and no unmasked behaviour, ``out = prior_value`` and ``lse = prior_logit``;
- a logit of NaN or +inf makes the row's ``out`` (every channel) and ``lse`` NaN, as ``torch.softmax`` does;
- a NaN/±inf value of an unmasked entry reaches ``out`` through its weight (IEEE arithmetic: ``out`` is
  non-finite in that channel; whether NaN or ±inf is not specified where weights underflow).
Gradients follow from the same arithmetic: a masked entry gets zero gradient (its ``dv``, ``dbias``,
``dfreq_c`` are 0), a NaN row gives NaN gradients for its unmasked entries, its query and its prior.
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
    neg_inf = float("-inf")
    qa, ka, va = q.to(acc), k.to(acc), v.to(acc)
    bsz, heads, _ = q.shape
    s, row_of = behaviour_logits(qa, ka, offsets, scale, None if bias is None else bias.to(acc),
                                 None if freq_c is None else freq_c.to(acc))
    masked = s == neg_inf
    # The shift only keeps exp() in range and cancels out: no gradient through it. A NaN or +inf logit
    # makes it NaN or +inf, so s - shift is NaN for that row and NaN propagates to out and lse.
    idx = row_of[:, None].expand(-1, heads)
    row_max = torch.full((bsz, heads), neg_inf, dtype=acc, device=q.device)
    row_max = row_max.scatter_reduce(0, idx, s.detach(), reduce="amax")  # propagates NaN
    if prior_logit is not None:
        pl = prior_logit.to(acc)
        row_max = torch.maximum(row_max, pl.detach())  # propagates NaN
    shift = torch.where(row_max == neg_inf, torch.zeros_like(row_max), row_max)
    # exp of 0 at masked entries, then the where: the gradient of a masked entry is exactly 0 (exp's backward
    # multiplies by its output, which would be exp(-inf - NaN) = NaN in a NaN row)
    e = torch.where(masked, torch.zeros_like(s), torch.exp(torch.where(masked, torch.zeros_like(s), s - shift[row_of])))
    va = torch.where(masked[..., None], torch.zeros_like(va), va)  # a masked entry's value is never read
    den = torch.zeros(bsz, heads, dtype=acc, device=q.device).index_add(0, row_of, e)
    num = torch.zeros(bsz, heads, va.shape[-1], dtype=acc, device=q.device).index_add(0, row_of, e[..., None] * va)
    if prior_logit is not None:
        prior_masked = pl == neg_inf
        e0 = torch.where(prior_masked, torch.zeros_like(pl),
                         torch.exp(torch.where(prior_masked, torch.zeros_like(pl), pl - shift)))
        pv = torch.where(prior_masked[..., None], torch.zeros_like(num), prior_value.to(acc))
        den = den + e0
        num = num + e0[..., None] * pv
    # den is >= 1 (the largest weight is exp(0)) or NaN, and 0 only when every entry is masked
    empty = den == 0
    safe_den = torch.where(empty, torch.ones_like(den), den)
    out = torch.where(empty[..., None], torch.zeros_like(num), num / safe_den[..., None])
    lse = torch.where(empty, torch.full_like(den, neg_inf), shift + torch.log(safe_den))
    return out.to(q.dtype), lse


def segment_attention_pool(q, k, v, offsets, scale, bias=None, freq_c=None, prior_logit=None, prior_value=None):
    """The benchmarks' eager jagged anchor: the same pooling with segment ops as a user would write it in
    float32 eager PyTorch (no masking rules; finite inputs only). Not the specification: that is
    ``jagged_attention_pool`` above, whose NaN/inf handling costs about 1.35x this at the README shape."""
    bsz, heads, _ = q.shape
    s, row_of = behaviour_logits(q, k, offsets, scale, bias, freq_c)
    idx = row_of[:, None].expand(-1, heads)
    row_max = torch.full((bsz, heads), float("-inf"), dtype=s.dtype, device=q.device)
    row_max = row_max.scatter_reduce(0, idx, s, reduce="amax")
    if prior_logit is not None:
        row_max = torch.maximum(row_max, prior_logit)
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    e = torch.exp(s - row_max[row_of])
    den = torch.zeros(bsz, heads, dtype=s.dtype, device=q.device).index_add(0, row_of, e)
    num = torch.zeros(bsz, heads, v.shape[-1], dtype=v.dtype, device=q.device).index_add(0, row_of, e[..., None] * v)
    if prior_logit is not None:
        e0 = torch.exp(prior_logit - row_max)
        den = den + e0
        num = num + e0[..., None] * prior_value
    out = num / den.clamp_min(torch.finfo(den.dtype).tiny)[..., None]
    return out, row_max + torch.log(den)


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

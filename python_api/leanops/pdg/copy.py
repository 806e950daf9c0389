"""The copy mechanism of a pointer-generator decoder (See et al. 2017; arXiv 2103.01594 uses it to copy
brand names and attribute values from the product's title and attributes).

``P(w) = p_gen * [p_vocab, 0...0](w) + (1 - p_gen) * sum_{s: src_ext_ids[s] = w} attn[s]`` over the
extended vocabulary ``V + n_ext`` (ids ``V..V+n_ext-1`` are the example's out-of-vocabulary source words).
``copy_distribution`` is that formula in probability space; ``copy_log_distribution`` is the same mixture
as a log-sum-exp of the two log terms (what beam search adds up), and ``copy_nll`` is the training loss,
the negative log of the mixture at the target ids, computed without ever forming ``log 0`` on a path
that carries a gradient.
"""
from __future__ import annotations

import torch

_TINY = torch.finfo(torch.float32).tiny


def _check(p_vocab, attn, src_ext_ids, p_gen, n_ext, log_space: bool):
    if not all(isinstance(t, torch.Tensor) for t in (p_vocab, attn, src_ext_ids, p_gen)):
        raise TypeError("p_vocab, attn, src_ext_ids and p_gen must be torch.Tensors")
    if isinstance(n_ext, bool) or not isinstance(n_ext, int) or n_ext < 0:
        raise ValueError(f"n_ext must be an int >= 0, got {n_ext!r}")
    if p_vocab.dim() != 3:
        raise ValueError(f"p_vocab must be [B, T, V], got shape {tuple(p_vocab.shape)}")
    b, t, v = p_vocab.shape
    if attn.dim() != 3 or attn.shape[:2] != (b, t):
        raise ValueError(f"attn must be [B, T, S] = [{b}, {t}, S], got shape {tuple(attn.shape)}")
    s = attn.shape[2]
    if src_ext_ids.shape != (b, s):
        raise ValueError(f"src_ext_ids must be [B, S] = [{b}, {s}], got shape {tuple(src_ext_ids.shape)}")
    if src_ext_ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"src_ext_ids must be int64 or int32, got {src_ext_ids.dtype}")
    if p_gen.shape != (b, t, 1):
        raise ValueError(f"p_gen must be [B, T, 1] = [{b}, {t}, 1], got shape {tuple(p_gen.shape)}")
    if not p_vocab.is_floating_point() or not attn.is_floating_point() or not p_gen.is_floating_point():
        raise TypeError("p_vocab, attn and p_gen must be floating point")
    if src_ext_ids.numel() and (int(src_ext_ids.min()) < 0 or int(src_ext_ids.max()) >= v + n_ext):
        raise ValueError(f"src_ext_ids must lie in [0, V + n_ext) = [0, {v + n_ext}), got values in "
                         f"[{int(src_ext_ids.min())}, {int(src_ext_ids.max())}]")
    if not log_space and p_gen.numel() and (bool(torch.isnan(p_gen).any()) or float(p_gen.min()) < 0
                                            or float(p_gen.max()) > 1):
        raise ValueError("p_gen must lie in [0, 1] (a probability), got values outside it or NaN")
    if log_space and p_gen.numel() and (bool(torch.isnan(p_gen).any()) or float(p_gen.max()) > 0):
        raise ValueError("log_p_gen must be <= 0 (the log of a probability), got a larger value or NaN")


def scatter_attention(attn: torch.Tensor, src_ext_ids: torch.Tensor, size: int) -> torch.Tensor:
    """``[B, T, S]`` attention -> ``[B, T, size]``: each source position's weight added at its token id."""
    index = src_ext_ids.long()[:, None, :].expand_as(attn)
    return attn.new_zeros(*attn.shape[:2], size).scatter_add_(2, index, attn)


def copy_distribution(p_vocab: torch.Tensor, attn: torch.Tensor, src_ext_ids: torch.Tensor, p_gen: torch.Tensor,
                      n_ext: int) -> torch.Tensor:
    """``p_gen * [p_vocab, 0...0] + (1 - p_gen) * scatter_add(attn over src_ext_ids)`` -> ``[B, T, V + n_ext]``.

    p_vocab ``[B, T, V]``, attn ``[B, T, S]``, src_ext_ids ``[B, S]`` (ids in ``[0, V + n_ext)``), p_gen
    ``[B, T, 1]`` in [0, 1]. Rows of p_vocab and attn that sum to 1 give rows that sum to 1."""
    _check(p_vocab, attn, src_ext_ids, p_gen, n_ext, log_space=False)
    v = p_vocab.shape[2]
    generated = torch.nn.functional.pad(p_vocab, (0, n_ext))
    return p_gen * generated + (1 - p_gen) * scatter_attention(attn, src_ext_ids, v + n_ext)


def copy_log_distribution(log_p_vocab: torch.Tensor, attn: torch.Tensor, src_ext_ids: torch.Tensor,
                          log_p_gen: torch.Tensor, n_ext: int, log_1m_p_gen: torch.Tensor | None = None
                          ) -> torch.Tensor:
    """``log copy_distribution`` as ``logaddexp(log p_gen + log [p_vocab, 0], log(1-p_gen) + log scatter(attn))``.

    Takes ``log_p_vocab`` (e.g. ``log_softmax`` of the logits: no underflow of small vocabulary
    probabilities) and ``log_p_gen`` (``logsigmoid`` of the gate logit; pass ``log_1m_p_gen =
    logsigmoid(-logit)`` too so that ``log(1 - p_gen)`` keeps its precision as ``p_gen -> 1``). Ids with
    probability 0 get ``-inf``. For decoding; train with ``copy_nll``."""
    _check(log_p_vocab, attn, src_ext_ids, log_p_gen, n_ext, log_space=True)
    if log_1m_p_gen is None:
        log_1m_p_gen = torch.log1p(-log_p_gen.exp())
    v = log_p_vocab.shape[2]
    generated = torch.nn.functional.pad(log_p_vocab, (0, n_ext), value=float("-inf"))
    copied = scatter_attention(attn, src_ext_ids, v + n_ext).log()
    return torch.logaddexp(log_p_gen + generated, log_1m_p_gen + copied)


def copy_nll(log_p_vocab: torch.Tensor, attn: torch.Tensor, src_ext_ids: torch.Tensor, log_p_gen: torch.Tensor,
             log_1m_p_gen: torch.Tensor, target_ext_ids: torch.Tensor) -> torch.Tensor:
    """``-log P(target)`` of the copy mixture, ``[B, T]``, with gradients that stay finite.

    Only the target's two terms are formed: ``log p_gen + log p_vocab[y]`` (``-inf`` when ``y >= V``) and
    ``log(1-p_gen) + log(sum of attn at source positions holding y)`` (``-inf`` when y is not in the
    source). A term that is ``-inf`` is dropped by a ``where`` rather than differentiated through."""
    v = log_p_vocab.shape[2]
    y = target_ext_ids.long()
    in_vocab = y < v
    gen = log_p_gen.squeeze(-1) + log_p_vocab.gather(2, y.clamp(max=v - 1)[..., None]).squeeze(-1)
    mass = (attn * (src_ext_ids.long()[:, None, :] == y[..., None])).sum(-1)
    in_source = mass > 0
    cop = log_1m_p_gen.squeeze(-1) + mass.clamp_min(_TINY).log()
    both = torch.logaddexp(torch.where(in_vocab, gen, cop), torch.where(in_source, cop, gen))
    log_p = torch.where(in_vocab & in_source, both, torch.where(in_vocab, gen, cop))
    return -log_p

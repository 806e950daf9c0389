"""Greedy and beam-search decoding with the incremental key/value cache.

Beam search keeps ``beam_size`` hypotheses per item, scores them by summed log probability, and ranks
finished ones by ``score / lp(len)`` with GNMT's length penalty ``lp = ((5 + len) / 6) ** length_penalty``.
``no_repeat_ngram=n`` forbids any token that would repeat an n-gram already in the hypothesis (0: off).
A copied out-of-vocabulary word (extended id) is fed back to the decoder as ``[UNK]``.
"""
from __future__ import annotations

import torch


def _blocked(hyps: list, n: int) -> list:
    """For each hypothesis (list of ids), the ids that would complete an n-gram it already holds."""
    out = []
    for h in hyps:
        if n <= 0 or len(h) < n - 1:
            out.append(())
            continue
        prefix = tuple(h[len(h) - n + 1:]) if n > 1 else ()
        out.append(tuple(h[i + n - 1] for i in range(len(h) - n + 1) if tuple(h[i:i + n - 1]) == prefix))
    return out


def _expand(state, batch_src_ext, k):
    """Repeat every per-item tensor of the encoder state ``k`` times (item-major) for beam search."""
    rep = lambda t: t.repeat_interleave(k, 0) if isinstance(t, torch.Tensor) and t.dim() > 0 else t  # noqa: E731
    return {key: rep(v) for key, v in state.items()}, batch_src_ext.repeat_interleave(k, 0)


@torch.no_grad()
def beam_search(model, batch, beam_size: int = 1, max_len: int = 64, length_penalty: float = 0.6,
             no_repeat_ngram: int = 0, use_cache: bool = True) -> list:
    """Decode every item of ``batch``; returns lists of extended ids (without [BOS]/[EOS])."""
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"beam_size must be an int >= 1, got {beam_size!r}")
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be an int >= 1, got {max_len!r}")
    if no_repeat_ngram < 0:
        raise ValueError(f"no_repeat_ngram must be >= 0 (0 = off), got {no_repeat_ngram}")
    was_training = model.training
    model.eval()
    try:
        return _beam(model, batch, beam_size, max_len, length_penalty, no_repeat_ngram, use_cache)
    finally:
        model.train(was_training)


def _beam(model, batch, k, max_len, alpha, ngram, use_cache):
    c = model.config
    v, unk, bos, eos = c.vocab_size, c.unk_id, c.bos_id, c.eos_id
    b = batch.src.shape[0]
    state, src_ext = _expand(model.encode(batch), batch.src_ext, k)
    mem_kv = model.memory_kv(state)
    n = b * k
    caches = [dict() for _ in model.decoder] if use_cache else None
    tokens = torch.full((n, 1), bos, dtype=torch.long)
    hyps = [[] for _ in range(n)]
    scores = torch.zeros(b, k)
    scores[:, 1:] = float("-inf")  # all beams start identical: keep one
    done = torch.zeros(n, dtype=torch.bool)
    for step in range(max_len):
        if use_cache:
            out = model.decode_step(state, tokens[:, -1:], mem_kv, caches, start=step)
        else:
            out = model.decode_step(state, tokens, mem_kv)
        logp = model.next_log_probs(out, src_ext, batch.n_ext).clone()
        width = logp.shape[1]
        for i, ids in enumerate(_blocked(hyps, ngram)):
            if ids:
                logp[i, list(ids)] = float("-inf")
        logp[done] = float("-inf")
        logp[done, eos] = 0.0  # a finished hypothesis stays as it is, at no cost
        total = (scores.view(n, 1) + logp).view(b, k * width)
        scores, flat = total.topk(k, dim=1)
        origin = (flat // width) + torch.arange(b)[:, None] * k
        origin, chosen = origin.view(-1), (flat % width).view(-1)
        hyps = [hyps[o] + ([] if done[o] else [int(c)]) for o, c in zip(origin.tolist(), chosen.tolist())]
        done = done[origin] | (chosen == eos)
        feed = torch.where(chosen >= v, torch.full_like(chosen, unk), chosen)
        tokens = torch.cat([tokens[origin], feed[:, None]], 1)
        if use_cache:
            for c in caches:
                c["k"], c["v"] = c["k"][origin], c["v"][origin]
        if bool(done.all()):
            break
    lengths = torch.tensor([len(h) for h in hyps], dtype=torch.float).view(b, k)
    normed = scores / ((5 + lengths) / 6) ** alpha
    best = normed.argmax(1)
    return [[t for t in hyps[i * k + int(best[i])] if t != eos] for i in range(b)]

"""Pure-PyTorch reference for the verify family (Minions): the specification of its ops.

Tie rules: argmax takes the lowest token id (NaN above every number, as ``torch.argmax``); the vote prefers
the child holding the lowest draft index. NaN/inf in sampling: see ``verify_sampling``.
"""
from __future__ import annotations

import torch


def majority_vote(drafts: torch.Tensor, draft_len: torch.Tensor, weights: torch.Tensor):
    """Weighted vote over whole drafts on their prefix tree.

    Descend from the root; at each node the children are the next tokens of the drafts still on the
    path, plus "stop here" for drafts that end at this node; each child weighs the sum of the weights of
    its drafts; take the heaviest (ties: the child holding the lowest draft index). The path ends at a
    "stop", so the result is one real draft: ``winner`` (lowest index among the drafts that end there),
    ``candidate`` (its tokens, zero-padded to S) and ``candidate_len``.
    """
    bsz, k, s = drafts.shape
    w = weights.expand(bsz, k) if weights.dim() == 1 else weights
    winner = torch.zeros(bsz, dtype=torch.long, device=drafts.device)
    for b in range(bsz):
        alive = list(range(k))
        depth = 0
        while True:
            children: dict = {}  # token (or None for stop) -> [weight, lowest draft index]
            for i in alive:
                key = None if int(draft_len[b, i]) == depth else int(drafts[b, i, depth])
                entry = children.setdefault(key, [0.0, i])
                entry[0] += float(w[b, i])
                entry[1] = min(entry[1], i)
            best = max(children.items(), key=lambda kv: (kv[1][0], -kv[1][1]))[0]
            if best is None:
                winner[b] = min(i for i in alive if int(draft_len[b, i]) == depth)
                break
            alive = [i for i in alive if int(draft_len[b, i]) > depth and int(drafts[b, i, depth]) == best]
            depth += 1
    candidate_len = draft_len.gather(1, winner[:, None]).squeeze(1)
    candidate = drafts[torch.arange(bsz, device=drafts.device), winner].clone()
    pos = torch.arange(s, device=drafts.device)[None, :]
    candidate = torch.where(pos < candidate_len[:, None], candidate, torch.zeros_like(candidate))
    return winner, candidate, candidate_len


def verify_greedy(candidate: torch.Tensor, candidate_len: torch.Tensor, target_logits: torch.Tensor):
    """Greedy verification: ``accepted`` = leading candidate tokens equal to the target's argmax;
    ``next_token`` = the target's argmax after them (the correction, or the bonus token)."""
    s = candidate.shape[1]
    target = target_logits.argmax(dim=-1)  # [B, S+1]; first maximum on ties
    pos = torch.arange(s, device=candidate.device)[None, :]
    match = (candidate == target[:, :s]) & (pos < candidate_len[:, None])
    accepted = torch.cumprod(match.long(), dim=1).sum(dim=1)
    next_token = target.gather(1, accepted[:, None]).squeeze(1)
    return accepted, next_token


def verify_greedy_ragged(candidates: torch.Tensor, offsets: torch.Tensor, target_logits: torch.Tensor):
    """Ragged form: row b's draft is ``candidates[offsets[b]:offsets[b+1]]`` and its logits are the
    ``len_b + 1`` rows ``target_logits[offsets[b] + b : offsets[b+1] + b + 1]`` (T + B rows in all)."""
    bsz = offsets.shape[0] - 1
    accepted = torch.zeros(bsz, dtype=torch.long, device=candidates.device)
    next_token = torch.zeros(bsz, dtype=torch.long, device=candidates.device)
    for b in range(bsz):
        lo, hi = int(offsets[b]), int(offsets[b + 1])
        cand = candidates[lo:hi][None]
        logits = target_logits[lo + b: hi + b + 1][None]
        a, t = verify_greedy(cand, torch.tensor([hi - lo], device=candidates.device), logits)
        accepted[b], next_token[b] = a[0], t[0]
    return accepted, next_token


def _sample_from(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF sample of one token per row with the given uniforms: the first token whose cumulative
    probability exceeds ``u * total`` (so never a token of zero mass); the last token with mass if rounding
    leaves none (kernels whose sums round differently)."""
    cdf = probs.cumsum(dim=-1)
    threshold = u[:, None] * cdf[:, -1:]
    idx = (cdf <= threshold).sum(dim=-1)
    v = probs.shape[-1]
    last = torch.where(probs > 0, torch.arange(v, device=probs.device), -1).amax(dim=-1)
    return torch.where(idx < v, idx, last)


def verify_sampling(candidate, candidate_len, draft_probs, target_logits, temperature: float, uniforms):
    """Speculative sampling with recursive rejection (lossless: the output tokens follow the target).

    ``z = target_logits / temperature`` and ``p = exp(z - logsumexp(z))`` in float64, ``q = draft_probs``.
    Positions are taken in order. A position has no distribution when a ``z`` there is NaN or +inf or every
    ``z`` is -inf (-inf alone is a masked token, e.g. outside the top-p nucleus); reaching one ends the row
    with ``next_token = -1`` (the op wrapper raises on it). Position i < len is accepted if
    ``uniforms[:, i] * q(x_i) <= p(x_i)``; at the first rejection the next token is drawn from
    ``normalise(max(0, p - q))`` with the uniform ``uniforms[:, S]`` (from ``p`` if that is all zero); if all
    are accepted it is drawn from ``p`` at position ``len`` (the bonus token) with the same uniform.
    """
    bsz, s = candidate.shape
    z = target_logits.double() / temperature
    defined = ~(z.isnan() | z.isposinf()).any(-1) & (z > float("-inf")).any(-1)  # [B, S+1]
    z = torch.where(defined[..., None], z, 0.0)  # keep undefined positions out of the arithmetic
    p = torch.exp(z - torch.logsumexp(z, dim=-1, keepdim=True))
    q = draft_probs.double()
    pos = torch.arange(s, device=candidate.device)[None, :]
    p_x = p[:, :s].gather(2, candidate[..., None]).squeeze(-1)
    q_x = q.gather(2, candidate[..., None]).squeeze(-1)
    ok = defined[:, :s] & (uniforms[:, :s].double() * q_x <= p_x) & (pos < candidate_len[:, None])
    accepted = torch.cumprod(ok.long(), dim=1).sum(dim=1)
    rows = torch.arange(bsz, device=candidate.device)
    p_at = p[rows, accepted]
    rejected = accepted < candidate_len
    q_at = torch.zeros_like(p_at)
    if s > 0:  # after a rejection at i, subtract the draft's q at i
        q_at = torch.where(rejected[:, None], q[rows, accepted.clamp_max(s - 1)], q_at)
    residual = (p_at - q_at).clamp_min(0)
    residual = torch.where(residual.sum(-1, keepdim=True) > 0, residual, p_at)  # p == q: nothing to correct
    next_token = _sample_from(residual, uniforms[:, s].double())
    next_token = torch.where(defined[rows, accepted], next_token, -1)
    return accepted, next_token

"""Public verify ops (Minions): checks, backend choice, fake registration. Outputs are integer
decisions, so there is no autograd."""
from __future__ import annotations

import math

import torch

from .. import _backend, _checks, _library
from ..reference import verify as ref

__all__ = ["majority_vote", "verify_greedy", "verify_greedy_ragged", "verify_sampling"]


def _dispatch(name, tensor, backend, *args):
    which = _backend.choose(tensor, backend)
    if which == "reference":
        return getattr(ref, name)(*args)
    if which == "triton":
        return getattr(torch.ops.leanops, name + "_triton")(*args)
    return getattr(torch.ops.leanops, name)(*args)


def _check_verify(candidate, candidate_len, target_logits, validate):
    _checks.rank(candidate, "candidate", 2, "[B, S]")
    _checks.index_dtype(candidate, "candidate")
    _checks.rank(candidate_len, "candidate_len", 1, "[B]")
    _checks.index_dtype(candidate_len, "candidate_len")
    _checks.rank(target_logits, "target_logits", 3, "[B, S+1, V]")
    _checks.feature_dtype(target_logits, "target_logits")
    bsz, s = candidate.shape
    if candidate_len.shape[0] != bsz:
        raise ValueError(f"candidate_len must be [B] = [{bsz}], got {tuple(candidate_len.shape)}")
    if target_logits.shape[:2] != (bsz, s + 1) or target_logits.shape[2] < 1:
        raise ValueError(f"target_logits must be [B, S+1, V] = [{bsz}, {s + 1}, V>=1], got {tuple(target_logits.shape)}")
    for name, t in (("candidate_len", candidate_len), ("target_logits", target_logits)):
        _checks.same_device(t, name, candidate, "candidate")
    if validate and bsz:
        _checks.index_range(candidate_len, "candidate_len", 0, s + 1)
        pos = torch.arange(s, device=candidate.device)[None, :]
        live = candidate[pos < candidate_len[:, None]]
        _checks.index_range(live, "candidate", 0, target_logits.shape[2])


def _check_weights(weights, name: str) -> None:
    if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
        bad = weights[~torch.isfinite(weights) | (weights < 0)]
        raise ValueError(f"{name} must be finite and >= 0, got {bad[:4].tolist()}")


def majority_vote(drafts, draft_len, weights, *, backend: str | None = None, validate: bool = True):
    """Weighted vote on the prefix tree of K drafts -> ``(winner[B], candidate[B,S], candidate_len[B])``.

    ``validate`` checks the values (``draft_len`` in [0, S], draft tokens >= 0, weights finite and >= 0);
    shapes, dtypes and devices are always checked."""
    _checks.rank(drafts, "drafts", 3, "[B, K, S]")
    _checks.index_dtype(drafts, "drafts")
    _checks.rank(draft_len, "draft_len", 2, "[B, K]")
    _checks.index_dtype(draft_len, "draft_len")
    _checks.tensor(weights, "weights")
    bsz, k, s = drafts.shape
    if k < 1:
        raise ValueError("drafts must hold K >= 1 drafts per row")
    if tuple(draft_len.shape) != (bsz, k):
        raise ValueError(f"draft_len must be [B, K] = [{bsz}, {k}], got {tuple(draft_len.shape)}")
    if not weights.is_floating_point():
        raise TypeError(f"weights must be a floating tensor, got {weights.dtype}")
    if tuple(weights.shape) not in ((k,), (bsz, k)):
        raise ValueError(f"weights must be [K] or [B, K] with K = {k}, got {tuple(weights.shape)}")
    for name, t in (("draft_len", draft_len), ("weights", weights)):
        _checks.same_device(t, name, drafts, "drafts")
    if validate:
        _checks.index_range(draft_len, "draft_len", 0, s + 1)
        live = drafts[torch.arange(s, device=drafts.device) < draft_len[..., None]]
        if live.numel() and int(live.min()) < 0:  # -1 is no token: the kernels' stop is a flag of its own
            raise ValueError(f"drafts must hold tokens >= 0 within draft_len, got {int(live.min())}")
        _check_weights(weights, "weights")
    return _dispatch("majority_vote", drafts, backend, drafts, draft_len, weights)


def verify_greedy(candidate, candidate_len, target_logits, *, backend: str | None = None, validate: bool = True):
    """Greedy verification -> ``(accepted[B], next_token[B])``: the target's own argmax choices (first
    maximum, NaN above every number, as ``torch.argmax``)."""
    _check_verify(candidate, candidate_len, target_logits, validate)
    return _dispatch("verify_greedy", candidate, backend, candidate, candidate_len, target_logits)


def verify_greedy_ragged(candidates, offsets, target_logits, *, backend: str | None = None, validate: bool = True):
    """Ragged greedy verification: row b's draft is ``candidates[offsets[b]:offsets[b+1]]``;
    ``target_logits`` is ``[T + B, V]`` (each row's ``len_b + 1`` logits rows in turn)."""
    _checks.rank(candidates, "candidates", 1, "[T]")
    _checks.index_dtype(candidates, "candidates")
    _checks.rank(offsets, "offsets", 1, "[B+1]")
    _checks.index_dtype(offsets, "offsets")
    _checks.rank(target_logits, "target_logits", 2, "[T + B, V]")
    _checks.feature_dtype(target_logits, "target_logits")
    if offsets.shape[0] < 1:
        raise ValueError("offsets must be [B+1] with B >= 0, got shape (0,)")
    bsz, t = offsets.shape[0] - 1, candidates.shape[0]
    if target_logits.shape[0] != t + bsz or target_logits.shape[1] < 1:
        raise ValueError(f"target_logits must be [T + B, V] = [{t + bsz}, V>=1], got {tuple(target_logits.shape)}")
    for name, x in (("offsets", offsets), ("target_logits", target_logits)):
        _checks.same_device(x, name, candidates, "candidates")
    if validate:
        if int(offsets[0]) != 0 or int(offsets[-1]) != t or bool((offsets[1:] < offsets[:-1]).any()):
            raise ValueError(f"offsets must start at 0, be non-decreasing and end at T = {t}, "
                             f"got {offsets[:8].tolist()}{'...' if bsz >= 8 else ''}")
        _checks.index_range(candidates, "candidates", 0, target_logits.shape[1])
    return _dispatch("verify_greedy_ragged", candidates, backend, candidates, offsets, target_logits)


def _check_probs(values, where: str) -> None:
    bad = ~((values >= 0) & (values <= 1))  # NaN fails both
    if bool(bad.any()):
        raise ValueError(f"draft_probs must be probabilities in [0, 1]; {where} holds {values[bad][:4].tolist()}")


def verify_sampling(candidate, candidate_len, draft_probs, target_logits, temperature: float = 1.0, generator=None,
                    *, uniforms=None, backend: str | None = None, validate: bool = True):
    """Lossless speculative sampling (recursive rejection) -> ``(accepted[B], next_token[B])``.

    The randomness is ``uniforms[B, S+1]`` in [0, 1) (drawn here from ``generator`` unless given), so every
    backend makes the same decisions from the same draws. ``validate`` checks the values: candidate tokens
    and lengths, the uniforms, the draft probabilities the accept tests and the residual read, and that
    every position the decision reached has a distribution (NaN, +inf or an all -inf row there is an error
    naming ``target_logits``; without ``validate`` such a row gets ``next_token = -1``).
    """
    _check_verify(candidate, candidate_len, target_logits, validate)
    bsz, s = candidate.shape
    _checks.tensor(draft_probs, "draft_probs")
    if tuple(draft_probs.shape) != (bsz, s, target_logits.shape[2]):
        raise ValueError(f"draft_probs must be [B, S, V] = [{bsz}, {s}, {target_logits.shape[2]}], "
                         f"got {tuple(draft_probs.shape)}")
    _checks.feature_dtype(draft_probs, "draft_probs")
    _checks.same_device(draft_probs, "draft_probs", candidate, "candidate")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < math.inf:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if uniforms is None:
        uniforms = torch.rand(bsz, s + 1, generator=generator, device=candidate.device if generator is None
                              else generator.device)
        uniforms = uniforms.to(candidate.device)
    else:
        _checks.tensor(uniforms, "uniforms")
        if tuple(uniforms.shape) != (bsz, s + 1):
            raise ValueError(f"uniforms must be [B, S+1] = [{bsz}, {s + 1}], got {tuple(uniforms.shape)}")
        if not uniforms.is_floating_point():
            raise TypeError(f"uniforms must be a floating tensor, got {uniforms.dtype}")
        _checks.same_device(uniforms, "uniforms", candidate, "candidate")
        if validate and uniforms.numel() and not bool(((uniforms >= 0) & (uniforms < 1)).all()):
            raise ValueError(f"uniforms must lie in [0, 1), got min {float(uniforms.min())}, "
                             f"max {float(uniforms.max())}")
    if validate and bsz and s:  # q(x_i) at every candidate token the accept tests may read
        live = torch.arange(s, device=candidate.device)[None, :] < candidate_len[:, None]
        tokens = candidate.clamp(0, draft_probs.shape[2] - 1)  # padding past candidate_len may be anything
        _check_probs(draft_probs.gather(2, tokens[..., None]).squeeze(-1)[live], "q(candidate token)")
    accepted, next_token = _dispatch("verify_sampling", candidate, backend, candidate, candidate_len, draft_probs,
                                     target_logits, float(temperature), uniforms)
    if validate and bsz:
        if bool((next_token < 0).any()):
            b = int((next_token < 0).nonzero()[0, 0])
            raise ValueError(f"target_logits[{b}, {int(accepted[b])}] has no distribution at temperature "
                             f"{temperature}: it holds NaN or +inf, or every logit is -inf")
        rejected = (accepted < candidate_len).nonzero().squeeze(1)
        if rejected.numel():  # the residual max(0, p - q) read the whole q row of each rejection
            _check_probs(draft_probs[rejected, accepted[rejected]], "the row of a rejection")
    return accepted, next_token


def _register_fakes(suffix: str) -> None:
    """Fakes return fresh contiguous int64 tensors, as every kernel does."""
    @torch.library.register_fake(f"leanops::majority_vote{suffix}")
    def _(drafts, draft_len, weights):
        bsz, _k, s = drafts.shape
        return drafts.new_empty(bsz), drafts.new_empty(bsz, s), drafts.new_empty(bsz)

    for op in ("verify_greedy", "verify_sampling"):
        @torch.library.register_fake(f"leanops::{op}{suffix}")
        def _(candidate, *rest):
            return candidate.new_empty(candidate.shape[0]), candidate.new_empty(candidate.shape[0])

    @torch.library.register_fake(f"leanops::verify_greedy_ragged{suffix}")
    def _(candidates, offsets, target_logits):
        bsz = offsets.shape[0] - 1
        return candidates.new_empty(bsz), candidates.new_empty(bsz)


if _library.compiled_available():
    _register_fakes("")
if _backend.triton_available():
    from ..triton_kernels import verify as _triton_verify

    from ..triton_kernels._common import INTERPRETED

    if INTERPRETED:
        _register_fakes("_triton")

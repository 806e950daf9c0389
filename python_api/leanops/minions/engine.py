"""Minions: speculative decoding with several small draft models (SSMs) and a weighted majority vote.

Each round every SSM drafts ``gamma`` tokens greedily from its own KV cache; ``majority_vote`` picks one
real draft on the drafts' prefix tree; the LLM scores it in one forward pass and ``verify_greedy`` keeps
the prefix it agrees with plus its own next token; every cache is cropped back to what was kept. SSM vote
weights follow their drafts' acceptance (multiplicative, bounded); ``gamma`` adapts to the measured cost
per accepted token. Greedy output equals the LLM's own greedy decoding.

Sampling is lossless by choosing the drafting SSM *before* it samples (the one with the highest vote
weight, a choice that does not depend on this round's randomness) and verifying its draft with
``verify_sampling`` (rejection sampling against the LLM's temperature/top-p distribution).

This first version covers batch size 1; batch > 1 and pipelined drafting are not built yet (they
raise NotImplementedError).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from ..ops.verify import majority_vote, verify_greedy, verify_sampling


@dataclass
class MinionsStats:
    llm_passes: int = 0
    new_tokens: int = 0
    rounds: int = 0
    chosen_lengths: list = field(default_factory=list)
    accepted_per_ssm: list = field(default_factory=list)
    drafted_per_ssm: list = field(default_factory=list)
    weights: list = field(default_factory=list)
    draft_seconds: float = 0.0
    verify_seconds: float = 0.0

    @property
    def tokens_per_pass(self) -> float:
        return self.new_tokens / max(self.llm_passes, 1)

    def acceptance(self) -> list:
        return [a / max(d, 1) for a, d in zip(self.accepted_per_ssm, self.drafted_per_ssm)]


class _CachedModel:
    """A Hugging Face causal LM (or a callable ids -> logits) with its KV cache and consumed length."""

    def __init__(self, model):
        self.model = model
        self.cache = None
        self.length = 0  # tokens in the cache
        self.hf = hasattr(model, "config") and hasattr(model, "forward")

    def logits(self, prefix: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """Logits for the positions of ``new``, which follows ``prefix`` (already in the cache)."""
        if not self.hf:  # plain callable: full recompute over the whole sequence
            out = self.model(torch.cat([prefix, new], dim=1))
            self.length = prefix.shape[1] + new.shape[1]
            return out[:, -new.shape[1]:]
        out = self.model(input_ids=new, past_key_values=self.cache, use_cache=True)
        self.cache = out.past_key_values
        self.length += new.shape[1]
        return out.logits

    def sync(self, prefix: torch.Tensor) -> None:
        """Make the cache hold exactly ``prefix`` (it holds a correct prefix of it already)."""
        self.crop(prefix.shape[1])
        if self.hf and self.length < prefix.shape[1]:
            self.logits(prefix[:, : self.length], prefix[:, self.length:])

    def crop(self, keep: int) -> None:
        if self.hf and self.cache is not None and self.length > keep:
            self.cache.crop(keep - self.length)
        self.length = min(self.length, keep)


def _nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability reaches top_p (-inf elsewhere)."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    drop = probs.cumsum(-1) - probs >= top_p  # tokens after the nucleus is already full
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)


def _kept_tokens(llm, n, cand, accepted, nxt, eos_token_id, room):
    """Tokens this round adds: the accepted draft prefix and the LLM's next token, cut at EOS and at
    ``room``. The LLM cache keeps the ``n`` prior tokens and the accepted ones; the rest is dropped."""
    llm.crop(n + accepted)
    new = torch.cat([cand[:, :accepted], nxt[:, None]], dim=1)
    if eos_token_id is not None:
        hits = (new[0] == eos_token_id).nonzero()
        if hits.numel():
            new = new[:, : int(hits[0]) + 1]
    return new[:, :room]


class Minions:
    def __init__(self, llm, ssms, weights=None, min_gamma: int = 1, max_gamma: int = 8, gamma: int = 4,
                 adaptive: bool = True, weight_lr: float = 0.5, weight_bounds=(0.1, 10.0), pipeline: bool = False,
                 backend: str | None = None):
        if not ssms:
            raise ValueError("ssms must hold at least one draft model")
        if pipeline:
            raise NotImplementedError("pipelined drafting is not built yet")
        if not 1 <= min_gamma <= gamma <= max_gamma:
            raise ValueError(f"need 1 <= min_gamma <= gamma <= max_gamma, got {min_gamma}, {gamma}, {max_gamma}")
        self.llm, self.ssms = llm, list(ssms)
        vocab = self._vocab(llm)
        for i, ssm in enumerate(self.ssms):
            v = self._vocab(ssm)
            if vocab is not None and v is not None and v != vocab:
                raise ValueError(f"ssms[{i}] has vocabulary size {v}, the LLM {vocab}: they must share a vocabulary")
        k = len(self.ssms)
        self.weights = torch.ones(k, dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        if self.weights.shape != (k,) or bool((self.weights <= 0).any()):
            raise ValueError(f"weights must be {k} positive numbers")
        self.min_gamma, self.max_gamma, self.gamma, self.adaptive = min_gamma, max_gamma, gamma, adaptive
        self.weight_lr, self.weight_bounds, self.backend = weight_lr, weight_bounds, backend
        self.stats = MinionsStats()

    @staticmethod
    def _vocab(model):
        cfg = getattr(model, "config", None)
        return getattr(cfg, "vocab_size", None)

    def _check(self, input_ids, max_new_tokens, do_sample, temperature, top_p):
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            raise ValueError("input_ids must be a 2-D tensor [B, T]")
        if input_ids.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"input_ids must hold integer token ids, got {input_ids.dtype}")
        if input_ids.shape[0] != 1:
            raise NotImplementedError("batch size > 1 is not built yet (this version decodes one sequence)")
        if input_ids.shape[1] < 1:
            raise ValueError("input_ids must hold at least one token")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        limit = getattr(getattr(self.llm, "config", None), "n_positions", None) or \
            getattr(getattr(self.llm, "config", None), "max_position_embeddings", None)
        if limit is not None and input_ids.shape[1] + max_new_tokens + self.max_gamma > limit:
            raise ValueError(f"prompt ({input_ids.shape[1]}) + max_new_tokens ({max_new_tokens}) + max_gamma "
                             f"({self.max_gamma}) exceeds the LLM's {limit} positions")

    @torch.no_grad()
    def generate(self, input_ids, attention_mask=None, max_new_tokens: int = 32, do_sample: bool = False,
                 temperature: float = 1.0, top_p: float = 1.0, eos_token_id=None, generator=None):
        self._check(input_ids, max_new_tokens, do_sample, temperature, top_p)
        ids = input_ids.long()
        llm = _CachedModel(self.llm)
        ssms = [_CachedModel(m) for m in self.ssms]
        k = len(ssms)
        stats = self.stats = MinionsStats(accepted_per_ssm=[0] * k, drafted_per_ssm=[0] * k)
        if do_sample:
            return self._generate_sampling(ids, llm, ssms, stats, max_new_tokens, temperature, top_p, eos_token_id,
                                           generator)
        produced = 0
        while produced < max_new_tokens:
            gamma = min(self.gamma, max_new_tokens - produced)
            n = ids.shape[1]
            t0 = time.perf_counter()
            drafts = torch.zeros(1, k, gamma, dtype=torch.long)
            for i, m in enumerate(ssms):
                m.sync(ids[:, :-1])
                ctx, tok = ids[:, :-1], ids[:, -1:]
                for j in range(gamma):
                    nxt = m.logits(ctx, tok)[:, -1].argmax(-1, keepdim=True)
                    drafts[0, i, j] = nxt[0, 0]
                    ctx, tok = torch.cat([ctx, tok], dim=1), nxt
                m.crop(n)  # keep the prompt-and-output prefix, drop this SSM's own draft
            t1 = time.perf_counter()
            lens = torch.full((1, k), gamma, dtype=torch.long)
            _, cand, cand_len = majority_vote(drafts, lens, self.weights.float(), backend=self.backend)
            llm.sync(ids[:, :-1])
            logits = llm.logits(ids[:, :-1], torch.cat([ids[:, -1:], cand], dim=1))
            accepted, nxt = verify_greedy(cand, cand_len, logits, backend=self.backend)
            t2 = time.perf_counter()
            new = _kept_tokens(llm, n, cand, int(accepted[0]), nxt, eos_token_id, max_new_tokens - produced)
            ids = torch.cat([ids, new], dim=1)
            produced += new.shape[1]
            self._update(stats, drafts, new[0], gamma, t1 - t0, t2 - t1)
            if eos_token_id is not None and int(ids[0, -1]) == eos_token_id:
                break
        return ids

    def _generate_sampling(self, ids, llm, ssms, stats, max_new_tokens, temperature, top_p, eos_token_id, generator):
        produced = 0
        while produced < max_new_tokens:
            gamma = min(self.gamma, max_new_tokens - produced)
            n = ids.shape[1]
            chosen = int(torch.argmax(self.weights))  # fixed before any of this round's draws: lossless
            m = ssms[chosen]
            t0 = time.perf_counter()
            m.sync(ids[:, :-1])
            ctx, tok = ids[:, :-1], ids[:, -1:]
            cand = torch.zeros(1, gamma, dtype=torch.long)
            q_rows = []
            for j in range(gamma):
                q = torch.softmax(_nucleus(m.logits(ctx, tok)[:, -1].float() / temperature, top_p), dim=-1)
                nxt = torch.multinomial(q, 1, generator=generator)
                cand[0, j] = nxt[0, 0]
                q_rows.append(q)
                ctx, tok = torch.cat([ctx, tok], dim=1), nxt
            m.crop(n)
            t1 = time.perf_counter()
            llm.sync(ids[:, :-1])
            logits = llm.logits(ids[:, :-1], torch.cat([ids[:, -1:], cand], dim=1))[0].float()
            target = _nucleus(logits / temperature, top_p)[None]
            draft_probs = torch.stack(q_rows, dim=1)
            accepted, nxt = verify_sampling(cand, torch.tensor([gamma]), draft_probs, target, 1.0, generator,
                                            backend=self.backend)
            t2 = time.perf_counter()
            new = _kept_tokens(llm, n, cand, int(accepted[0]), nxt, eos_token_id, max_new_tokens - produced)
            ids = torch.cat([ids, new], dim=1)
            produced += new.shape[1]
            drafts = torch.full((1, len(ssms), gamma), -1, dtype=torch.long)
            drafts[0, chosen] = cand[0]  # only the chosen SSM drafted: only it is scored this round
            self._update(stats, drafts, new[0], gamma, t1 - t0, t2 - t1, only=chosen)
            if eos_token_id is not None and int(ids[0, -1]) == eos_token_id:
                break
        return ids

    def _update(self, stats, drafts, kept, gamma, t_draft, t_verify, only=None):
        """Stats, vote weights from each SSM's own acceptance, and the next speculation length."""
        stats.rounds += 1
        stats.llm_passes += 1
        stats.new_tokens += kept.shape[0]
        stats.chosen_lengths.append(gamma)
        stats.draft_seconds += t_draft
        stats.verify_seconds += t_verify
        k = drafts.shape[1]
        own = []
        for i in range(k):  # how far SSM i's own draft agrees with what the LLM kept
            agree = 0
            while agree < min(gamma, kept.shape[0]) and int(drafts[0, i, agree]) == int(kept[agree]):
                agree += 1
            own.append(agree)
        rates = torch.tensor([o / gamma for o in own], dtype=torch.float64)
        scored = range(k) if only is None else [only]
        for i in scored:
            stats.accepted_per_ssm[i] += own[i]
            stats.drafted_per_ssm[i] += gamma
        lo, hi = self.weight_bounds
        if only is None:
            self.weights = (self.weights * torch.exp(self.weight_lr * (rates - rates.mean()))).clamp(lo, hi)
        else:  # one drafter: move its weight by its acceptance against an even chance
            self.weights[only] = float((self.weights[only] * math.exp(self.weight_lr * (rates[only] - 0.5))).clamp(lo, hi))
        stats.weights = self.weights.tolist()
        if self.adaptive:
            self.gamma = self._next_gamma(stats)

    def _next_gamma(self, stats) -> int:
        """Pick gamma maximising expected accepted tokens per second under a running cost model
        (verify cost per pass and draft cost per token from measured time), with hysteresis."""
        rounds = max(stats.rounds, 1)
        alpha = min(max(sum(stats.accepted_per_ssm) / max(sum(stats.drafted_per_ssm), 1), 0.01), 0.99)
        draft_per_token = stats.draft_seconds / max(sum(stats.chosen_lengths), 1)
        verify_per_pass = stats.verify_seconds / rounds

        def rate(g):
            expected = (1 - alpha ** (g + 1)) / (1 - alpha)
            return expected / (verify_per_pass + g * draft_per_token + 1e-9)

        best = max(range(self.min_gamma, self.max_gamma + 1), key=rate)
        return best if rate(best) > 1.05 * rate(self.gamma) else self.gamma

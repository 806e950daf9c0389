"""Minions: speculative decoding with several small draft models (SSMs) and a weighted majority vote.

A round: every SSM drafts ``gamma`` tokens per row from its own KV cache; ``majority_vote`` picks one real
draft per row on the drafts' prefix tree; the LLM scores it in one forward pass and ``verify_greedy``
keeps the prefix it agrees with plus its own next token. Rows keep different numbers of tokens: each
model's cache masks what a row did not keep (see ``runner.py``). Vote weights are tempered ratios of the
SSMs' measured acceptance (``policy.VoteWeights``); per round the cost-aware controller (``controller.py``)
picks the drafter set (one SSM, the vote of all, or none) and ``gamma`` from measured costs and acceptance;
this module carries the decisions out. Each ``generate`` call starts from fresh decisions unless
``carry_state=True`` (then ``reset_state()`` starts over). Greedy output equals the LLM's own greedy decoding up to
floating point (see docs/DESIGN.md: exact where the LLM's top-2 logits are further apart than the rounding
difference between a block pass and single-token steps).

Sampling is lossless by choosing the drafting SSM *before* it samples (the one with the highest vote
weight, a choice that does not look at this round's draws) and verifying its draft with
``verify_sampling`` (recursive rejection against the LLM's temperature/top-p distribution).

Pipeline: while the LLM verifies round t (on a side CUDA stream on GPU), the SSMs, in a worker thread,
extend round t's candidate, guess the LLM's next token (their argmax) and draft round t+1 behind it. Where the
LLM keeps the whole candidate and its next token is the guess, round t+1 starts verifying at once.

Every model pass runs under ``torch.inference_mode()``, on the calling thread (``generate``) and on the
drafting thread (grad mode is per thread).
"""
from __future__ import annotations

import contextlib
import time
import weakref
from concurrent.futures import ThreadPoolExecutor

import torch

from ..ops.verify import majority_vote, verify_greedy, verify_sampling
from .live_slots import position_limit, ragged_block
from .controller import Controller
from .policy import LengthPolicy, OverlapPolicy, VoteWeights
from .runner import make_runner
from .runner_protocol import Runner
from .sampling import Picker, nucleus
from .stats import MinionsStats


def _agreement(fed: torch.Tensor, kept: torch.Tensor) -> int:
    """Length of the common prefix of two 1-D token tensors."""
    n = min(fed.shape[0], kept.shape[0])
    differ = (fed[:n] != kept[:n]).nonzero()
    return int(differ[0]) if differ.numel() else n


class Minions:
    def __init__(self, llm, ssms, weights=None, min_gamma: int = 0, max_gamma: int = 8, gamma: int = 4,
                 adaptive: bool = True, select_drafters: bool = True, vote_temperature: float = 1.0,
                 weight_floor: float = 0.2, pipeline: bool = False, hysteresis: float = 1.05,
                 lean_drafters: bool = True, lean_llm: bool = False, recheck_every: int = 16,
                 packed_weights: bool = True, carry_state: bool = False, score_every: int = 4,
                 backend: str | None = None):
        if not isinstance(ssms, (list, tuple)) or not ssms:
            raise ValueError("ssms must be a non-empty list of draft models")
        if not 0 <= min_gamma <= gamma <= max_gamma or max_gamma < 1:
            raise ValueError(f"need 0 <= min_gamma <= gamma <= max_gamma and max_gamma >= 1, got {min_gamma}, "
                             f"{gamma}, {max_gamma}")
        if not vote_temperature > 0 or not 0 < weight_floor <= 1:
            raise ValueError(f"need vote_temperature > 0 and 0 < weight_floor <= 1, got {vote_temperature}, "
                             f"{weight_floor}")
        self.llm, self.ssms = llm, list(ssms)
        vocab = self._vocab(llm)
        for i, ssm in enumerate(self.ssms):
            v = self._vocab(ssm)
            if vocab is not None and v is not None and v != vocab:
                raise ValueError(f"ssms[{i}] has vocabulary size {v}, the LLM {vocab}: they must share a vocabulary")
        k = len(self.ssms)
        initial = torch.ones(k, dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        if initial.shape != (k,) or bool((initial <= 0).any()):
            raise ValueError(f"weights must be {k} positive numbers")
        self.adaptive, self.select_drafters, self.carry_state = adaptive, select_drafters, carry_state
        if pipeline not in (False, True, "auto"):
            raise ValueError(f"pipeline must be False, True (always overlap) or 'auto' (overlap where it "
                             f"measures faster), got {pipeline!r}")
        self.pipeline, self.backend, self.lean_drafters, self.lean_llm = pipeline, backend, lean_drafters, lean_llm
        if recheck_every < 1:
            raise ValueError(f"need recheck_every >= 1, got {recheck_every}")
        if isinstance(score_every, bool) or not isinstance(score_every, int) or score_every < 0:
            raise ValueError(f"score_every must be an int >= 0 (0: never), got {score_every!r}")
        self.score_every = score_every  # greedy: SSMs sitting out are fed and scored every this many rounds
        self._settings = dict(k=k, initial=initial, temperature=vote_temperature, floor=weight_floor,
                              lengths=(min_gamma, max_gamma, gamma), hysteresis=hysteresis, recheck=recheck_every)
        self.packed_weights = packed_weights  # lean runners on CPU: oneDNN-prepacked weights
        self.llm_passes_total = 0  # across generate() calls (a counter, not a decision)
        self.stats = MinionsStats()
        self._pool = None
        self.reset_state()

    def reset_state(self) -> None:
        """Forget what earlier calls measured: acceptance and vote weights, costs, length, the pipeline
        choice. ``generate`` calls this itself unless the engine was made with ``carry_state=True``."""
        st = self._settings
        self.vote = VoteWeights(st["k"], st["initial"], st["temperature"], st["floor"])
        self.length = LengthPolicy(*st["lengths"], st["hysteresis"], st["recheck"])
        self.control = Controller(st["k"], self.vote, self.length, self.adaptive, self.select_drafters,
                                  st["hysteresis"], st["recheck"])
        self.overlap = OverlapPolicy(st["hysteresis"])
        self.rounds_total = 0  # paces the rechecks

    @property
    def weights(self) -> torch.Tensor:
        """The SSMs' current vote weights ``[K]`` (float64)."""
        return self.vote.values

    @property
    def gamma(self) -> int:
        """The current speculation length."""
        return self.length.gamma

    @staticmethod
    def _vocab(model):
        return getattr(getattr(model, "config", None), "vocab_size", None)

    # ---- input checks: all before any model runs ----
    def _check(self, input_ids, attention_mask, max_new_tokens, temperature, top_p, generator=None):
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            raise ValueError("input_ids must be a 2-D tensor [B, T]")
        if input_ids.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"input_ids must hold integer token ids, got {input_ids.dtype}")
        if input_ids.shape[0] < 1 or input_ids.shape[1] < 1:
            raise ValueError(f"input_ids must be [B >= 1, T >= 1], got {tuple(input_ids.shape)}")
        if attention_mask is not None:
            if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != input_ids.shape:
                raise ValueError(f"attention_mask must be a tensor shaped like input_ids {tuple(input_ids.shape)}")
            if bool((attention_mask.sum(1) < 1).any()):
                raise ValueError("attention_mask must keep at least one token in every row")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
        if isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
        if generator is not None and torch.device(generator.device).type != input_ids.device.type:
            raise ValueError(f"generator is on {generator.device}, input_ids on {input_ids.device}: the engine "
                             f"draws on the models' device, so the generator must live there too")
        vocab = self._vocab(self.llm)
        if vocab is not None and (bool((input_ids < 0).any()) or bool((input_ids >= vocab).any())):
            raise ValueError(f"input_ids must lie in [0, {vocab}) (the LLM's vocabulary)")
        longest = int(input_ids.shape[1] if attention_mask is None else attention_mask.sum(1).max())
        for name, model in [("the LLM", self.llm)] + [(f"ssms[{i}]", m) for i, m in enumerate(self.ssms)]:
            limit = position_limit(model)
            if limit is not None and longest + max_new_tokens + self.length.max_gamma + 1 > limit:
                raise ValueError(f"prompt ({longest}) + max_new_tokens ({max_new_tokens}) + max_gamma + 1 "
                                 f"({self.length.max_gamma + 1}) exceeds {name}'s {limit} positions")

    def generate(self, input_ids, attention_mask=None, max_new_tokens: int = 32, do_sample: bool = False,
                 temperature: float = 1.0, top_p: float = 1.0, eos_token_id=None, pad_token_id=None, generator=None):
        """Decode like ``model.generate``: returns ``[B, T + new]`` ids, the prompt as given (left padding
        kept) followed by each row's new tokens, rows that stopped early padded with ``pad_token_id``."""
        self._check(input_ids, attention_mask, max_new_tokens, temperature, top_p, generator)
        if not self.carry_state:
            self.reset_state()
        start = time.perf_counter()
        bsz, device = input_ids.shape[0], input_ids.device
        ids = input_ids.long()
        mask = torch.ones_like(ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        eos = [] if eos_token_id is None else [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
        pad = pad_token_id if pad_token_id is not None else (eos[0] if eos else 0)
        with torch.inference_mode():  # no autograd bookkeeping in any pass (the drafting thread enters its own)
            run = _Run(self, [ids[b][mask[b]] for b in range(bsz)], device, max_new_tokens, eos,
                       Picker(do_sample, temperature, top_p, generator), do_sample, temperature, top_p, generator)
            run.loop()
        self.stats.wall_seconds = time.perf_counter() - start
        new = [s[p:] for s, p in zip(run.seqs, run.prompt_len)]
        width = max(n.shape[0] for n in new)
        # built outside inference mode: an ordinary tensor the caller may edit in place, as HF's generate returns
        out = torch.full((bsz, width), pad, dtype=torch.long, device=device)
        for b, n in enumerate(new):
            out[b, : n.shape[0]] = n
        return torch.cat([ids, out], dim=1)

    def _worker(self) -> ThreadPoolExecutor:
        """The drafting thread, kept across rounds and generate() calls while overlapping (a fresh thread
        warms up its own OpenMP team on its first pass)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="minions-draft")
            self._pool_finalizer = weakref.finalize(self, self._pool.shutdown, wait=False)
        return self._pool

    def _drop_worker(self) -> None:
        """Let the thread go while not overlapping: on CPU, once a second thread has run an OpenMP region,
        the main thread's passes stay slower for as long as that thread lives (measured: a 6-token pass of
        the demo LLM 6.5 ms before, 10.3 ms after, 6.4 ms once the thread has exited; GNU OpenMP)."""
        if self._pool is not None:
            self._pool_finalizer()
            self._pool = None


class _Run:
    """One ``generate`` call: row sequences, the models' runners and the round loop."""

    def __init__(self, engine: Minions, prompts, device, max_new, eos, pick, do_sample, temperature, top_p, generator):
        self.e, self.device, self.max_new, self.eos, self.pick = engine, device, max_new, eos, pick
        self.do_sample, self.temperature, self.top_p, self.generator = do_sample, temperature, top_p, generator
        self.seqs = list(prompts)
        self.prompt_len = [p.shape[0] for p in prompts]
        bsz, k = len(prompts), len(engine.ssms)
        self.bsz, self.k = bsz, k
        packed = engine.packed_weights
        self.llm = make_runner(engine.llm, bsz, device, lean=engine.lean_llm, packed=packed)
        self.ssms = [make_runner(m, bsz, device, lean=engine.lean_drafters, packed=packed) for m in engine.ssms]
        self.active = torch.ones(bsz, dtype=torch.bool)
        self.pre = [None] * k  # pipelined drafts ready for the next round, per SSM
        self.drafted_last = [True] * k  # whether each SSM drafted last round (the first round's tail is the prompt)
        self.stats = engine.stats = MinionsStats(accepted_per_ssm=[0] * k, drafted_per_ssm=[0] * k,
                                                 weights=engine.weights.tolist(), all_drafted_agree=[0] * k)
        on_gpu = torch.device(device).type == "cuda"
        self.stream = torch.cuda.Stream(device=device) if (engine.pipeline and on_gpu) else None

    def produced(self, b) -> int:
        return self.seqs[b].shape[0] - self.prompt_len[b]

    def loop(self):
        while bool(self.active.any()):
            hidden = self.stats.pipelined_drafts / max(self.stats.rounds, 1)
            drafters, gamma = self.e.control.plan(self.e.rounds_total, self.do_sample, hidden)
            # a plain step (gamma 0) drafts nothing, so there is nothing to overlap
            overlap = bool(self.e.pipeline) and gamma > 0 and (self.e.pipeline is True or self.e.overlap.choose())
            pool = self.e._worker() if overlap else self.e._drop_worker()
            start, width = time.perf_counter(), 1 + gamma
            self.round(pool, list(drafters) if gamma > 0 else [], gamma)
            self.stats.overlapped_rounds += int(overlap)
            if self.e.pipeline:
                self.e.overlap.record(overlap, time.perf_counter() - start, width)

    # ---- drafting ----
    def draft(self, runner: Runner, seqs, n_tokens, first_greedy=False, score=False):
        """Feed each active row's missing tail of ``seqs`` and draft ``n_tokens`` -> (tokens, probs).
        ``score``: also count, over the generated tokens of the tail, where the SSM's argmax given the
        tokens before would have been the token the LLM kept (``self.last_catch_up_agreement``)."""
        active = self.active.to(self.device)
        starts = runner.count.tolist()
        catch = [s[int(c):] if a else s[:0] for s, c, a in zip(seqs, starts, self.active.tolist())]
        tokens, valid = ragged_block(catch)
        t0 = time.perf_counter()
        logits = runner.feed(tokens, valid)
        t_catch = time.perf_counter() - t0
        if score:
            self.last_catch_up_agreement = self.catch_up_agreement(logits, catch, starts)
        last = logits[torch.arange(self.bsz, device=self.device), (valid.sum(1) - 1).clamp_min(0)]
        out, probs = [], []
        t_steps = 0.0
        for j in range(n_tokens):
            tok, q = (last.argmax(-1), None) if (first_greedy and j == 0) else self.pick(last)
            out.append(tok)
            probs.append(q)
            if j + 1 < n_tokens:
                t0 = time.perf_counter()
                last = runner.feed(tok[:, None], active[:, None])[:, 0]
                t_steps += time.perf_counter() - t0
        # the drafting cost of a drafter used every round: a catch-up as wide as a round keeps (<= gamma + 1)
        # counts, a longer one (it sat out rounds) does not, else sitting out would make it look slow
        steady = tokens.shape[1] <= n_tokens + 1
        self.last_draft_cost = (t_steps + (t_catch if steady else 0.0), n_tokens - (0 if steady else 1))
        q = torch.stack(probs[1 if first_greedy else 0:], 1) if self.do_sample and n_tokens > int(first_greedy) else None
        return torch.stack(out, 1), q

    def catch_up_agreement(self, logits, catch, starts):
        """``(agreements, disagreements)`` over the rows' tails: at each tail position whose next token is a
        generated one, whether the SSM's argmax is that token. For greedy drafting this is the per-token
        acceptance the SSM would have had on those rounds (its draft equals the kept tokens up to its first
        miss), measured from a feed it needed anyway: an SSM that sat out rounds is scored on all of them."""
        agree = total = 0
        for b, tail in enumerate(catch):
            n = tail.shape[0]
            if n < 2:
                continue
            pred = logits[b, : n - 1].argmax(-1)
            generated = torch.arange(1, n, device=tail.device) + int(starts[b]) >= self.prompt_len[b]
            hits = (pred == tail[1:].to(pred.device)) & generated.to(pred.device)
            agree += int(hits.sum())
            total += int(generated.sum())
        return agree, total - agree

    # ---- one round ----
    def round(self, pool, drafters, gamma):
        """One round: ``drafters`` (SSM indices; empty for a plain step) draft ``gamma`` tokens per row."""
        e, stats, bsz = self.e, self.stats, self.bsz
        room = torch.tensor([self.max_new - self.produced(b) for b in range(bsz)])
        dlen = torch.where(self.active, room.clamp_max(gamma), 0)
        g = int(dlen.max())
        t0 = time.perf_counter()
        drafts = torch.full((bsz, self.k, g), -1, dtype=torch.long, device=self.device)
        draft_probs = None
        used_pre = False
        drafters = drafters if g > 0 else []  # gamma 0: a plain LLM step, no drafting
        for i in range(self.k):
            pre = self.pre[i]
            if i in drafters and pre is not None and pre[0].shape[1] >= g:
                drafts[:, i], q = pre[0][:, :g], (pre[1][:, :g] if pre[1] is not None else None)
                used_pre = True
            else:
                if pre is not None:  # its cache runs ahead of the rows: cut it back
                    self.ssms[i].keep(torch.tensor([s.shape[0] - 1 for s in self.seqs], device=self.device))
                if i not in drafters:
                    continue
                score = not self.do_sample and not self.drafted_last[i]  # sat out: its tail covers those rounds
                drafts[:, i], q = self.draft(self.ssms[i], self.seqs, g, score=score)
                e.control.record_draft(i, *self.last_draft_cost)
                if score:
                    e.vote.record_agreement(i, *self.last_catch_up_agreement)
            draft_probs = q
        self.pre = [None] * self.k
        self.drafted_last = [i in drafters for i in range(self.k)]
        stats.pipelined_drafts += int(used_pre)
        draft_len = dlen.to(self.device)[:, None].expand(bsz, self.k).contiguous()
        benched = [i for i in range(self.k) if i not in drafters]
        if benched:
            draft_len[:, benched] = 0  # benched SSMs do not vote
        voted = len(drafters) > 1 and not self.do_sample
        t_vote = time.perf_counter()
        if voted:
            _, cand, cand_len = majority_vote(drafts, draft_len, e.weights.float().to(self.device), backend=e.backend)
        else:  # one drafter (sampling always): its own draft, no vote to pay for
            cand, cand_len = drafts[:, drafters[0] if drafters else 0].contiguous(), dlen.to(self.device)
        t_vote = time.perf_counter() - t_vote
        # drawn on the models' device (with the caller's generator, which _check keeps on that device)
        uniforms = (torch.rand(bsz, g + 1, generator=self.generator, device=self.device)
                    if self.do_sample else None)
        t1 = time.perf_counter()
        n_before = [s.shape[0] for s in self.seqs]
        if pool is None:
            accepted, nxt, width, t_verify = self.verify(cand, cand_len, draft_probs, uniforms)
            guesses = None
        else:
            job = pool.submit(self.predraft, drafters, drafts, cand, cand_len)  # the next round beside the LLM pass
            accepted, nxt, width, t_verify = self.verify(cand, cand_len, draft_probs, uniforms)
            guesses = job.result()
        t_draft = time.perf_counter() - t0 - t_verify if pool is not None else t1 - t0
        if pool is None or e.pipeline is True:  # an overlapped pass shares the cores: not the pass's own cost
            e.length.verify.record(width, t_verify)
        live = self.active.clone()
        kept = self.accept(cand, accepted, nxt)
        live = live.to(accepted.device)
        cand_accepted = int(accepted[live].sum())
        cand_rejections = int((accepted[live] < cand_len[live]).sum())
        self.stats.cand_accepted += cand_accepted
        self.stats.cand_rejections += cand_rejections
        if voted:
            e.control.record_vote(t_vote, cand_accepted, cand_rejections)
        self.sync_caches(drafts, cand, cand_len, guesses, kept, n_before)
        self.account(drafters, drafts, dlen, kept, g, t_draft, t_verify, voted, cand)
        if e.score_every and not self.do_sample and e.rounds_total % e.score_every == 0:
            for i in range(self.k):
                if i not in drafters and self.pre[i] is None:
                    self.score_benched(i)

    def score_benched(self, i):
        """Feed SSM ``i``, which sits out, the rows' tokens it has not seen (all but each row's last, as its
        cache always lacks that one) and score it teacher-forced on them: its acceptance stays current while
        it does not draft, for one wide pass of a small model (the catch-up it would need anyway to draft)."""
        runner = self.ssms[i]
        starts = runner.count.tolist()
        unseen = [s[int(c):] if a else s[:0] for s, c, a in zip(self.seqs, starts, self.active.tolist())]
        if max(u.shape[0] for u in unseen) < 2:
            return
        # fed without each row's last token, so every fed position's next token is known: scored on `unseen`
        tokens, valid = ragged_block([u[:-1] for u in unseen])
        logits = runner.feed(tokens, valid)
        self.e.vote.record_agreement(i, *self.catch_up_agreement(logits, unseen, starts))
        self.drafted_last[i] = False  # the rest of what it missed is scored at its next catch-up

    def verify(self, cand, cand_len, draft_probs, uniforms):
        """One LLM pass over each row's missing tail plus its candidate; the verify op decides.
        Returns ``(accepted, next_token, block width, seconds)``."""
        t0 = time.perf_counter()
        ctx = contextlib.nullcontext()
        if self.stream is not None:  # the side stream starts after the work queued so far on the current one
            main = torch.cuda.current_stream(self.device)
            self.stream.wait_stream(main)
            for t in (cand, cand_len, draft_probs, uniforms):  # made on the main stream, read on the side one
                if t is not None:
                    t.record_stream(self.stream)
            ctx = torch.cuda.stream(self.stream)
        with ctx:
            e, bsz, g = self.e, self.bsz, cand.shape[1]
            rows = [torch.cat([s[int(c):], cand[b, : int(n)]]) if a else s[:0]
                    for b, (s, c, n, a) in enumerate(zip(self.seqs, self.llm.count.tolist(), cand_len.tolist(),
                                                         self.active.tolist()))]
            tokens, valid = ragged_block(rows)
            logits = self.llm.feed(tokens, valid)
            start = (valid.sum(1) - 1 - cand_len).clamp_min(0)  # logits position of the last known token
            pos = (start[:, None] + torch.arange(g + 1, device=self.device)).clamp_max(tokens.shape[1] - 1)
            target = logits.gather(1, pos[..., None].expand(-1, -1, logits.shape[-1]))
            if not self.do_sample:
                accepted, nxt = verify_greedy(cand, cand_len, target, backend=e.backend)
            else:
                target = target.float() / self.temperature
                if self.top_p < 1.0:  # the nucleus only where verify_sampling reads: active rows, 1 + cand_len
                    need = self.active.to(self.device)[:, None] & (
                        torch.arange(g + 1, device=self.device)[None, :] <= cand_len[:, None])
                    target[need] = nucleus(target[need], self.top_p)  # the rest is never read
                if draft_probs is None:  # a plain step (gamma 0): nothing drafted
                    draft_probs = target.new_zeros(bsz, 0, target.shape[-1])
                accepted, nxt = verify_sampling(cand, cand_len, draft_probs, target, 1.0, uniforms=uniforms,
                                                backend=e.backend)
        if self.stream is not None:  # the caller reads the results on its own stream
            main.wait_stream(self.stream)
            accepted.record_stream(main)
            nxt.record_stream(main)
        return accepted, nxt, tokens.shape[1], time.perf_counter() - t0

    @torch.inference_mode()  # runs on the drafting thread, whose grad mode is its own
    def predraft(self, drafters, drafts, cand, cand_len):
        """While the LLM verifies: each of this round's drafting SSMs extends the candidate, guesses the LLM's
        next token and drafts the next round behind it (used only where the whole guess comes true and the
        SSM drafts again)."""
        ext = [torch.cat([s, cand[b, : int(cand_len[b])]]) for b, s in enumerate(self.seqs)]
        guesses = {}
        for i in drafters:
            runner = self.ssms[i]
            own = [self.seqs[b].shape[0] + _agreement(drafts[b, i], cand[b, : int(cand_len[b])]) for b in range(self.bsz)]
            runner.keep(torch.tensor(own, device=self.device))
            tokens, q = self.draft(runner, ext, 1 + self.e.length.gamma, first_greedy=True)
            guesses[i] = (tokens[:, 0], tokens[:, 1:], q)
        return guesses

    def accept(self, cand, accepted, nxt):
        """Append each active row's kept tokens (cut at EOS and at max_new_tokens); returns them."""
        kept = []
        for b in range(self.bsz):
            if not self.active[b]:
                kept.append(None)
                continue
            a = int(accepted[b])
            new = torch.cat([cand[b, :a], nxt[b: b + 1]])
            for tok in self.eos:
                hit = (new == tok).nonzero()
                if hit.numel():
                    new = new[: int(hit[0]) + 1]
            new = new[: self.max_new - self.produced(b)]
            self.seqs[b] = torch.cat([self.seqs[b], new])
            kept.append(new)
            if self.produced(b) >= self.max_new or (self.eos and int(new[-1]) in self.eos):
                self.active[b] = False
        return kept

    def sync_caches(self, drafts, cand, cand_len, guesses, kept, n_before):
        """Cut every cache back to what each row kept; keep pipelined drafts that came true."""
        bsz, dev = self.bsz, self.device
        llm_keep = [self.seqs[b].shape[0] - 1 if kept[b] is not None else int(self.llm.count[b]) for b in range(bsz)]
        self.llm.keep(torch.tensor(llm_keep, device=dev))
        for i, runner in enumerate(self.ssms):
            guess = guesses.get(i) if guesses else None
            keep, usable = [], True
            for b in range(bsz):
                if kept[b] is None:
                    keep.append(int(runner.count[b]))
                    continue
                if guess is None:
                    fed = drafts[b, i]
                else:
                    fed = torch.cat([cand[b, : int(cand_len[b])], guess[0][b: b + 1], guess[1][b]])
                agree = _agreement(fed, kept[b])
                came_true = guess is not None and agree == kept[b].shape[0] == int(cand_len[b]) + 1
                if self.active[b] and not came_true:
                    usable = False
                keep.append(n_before[b] + agree)
            if guess is not None and usable and bool(self.active.any()):
                self.pre[i] = (guess[1], guess[2])  # the cache already holds each row and these drafts
            else:
                cap = [min(kp, s.shape[0] - 1) for kp, s in zip(keep, self.seqs)]
                runner.keep(torch.tensor(cap, device=dev))

    def account(self, scored, drafts, dlen, kept, g, t_draft, t_verify, voted, cand):
        """Stats, and each drafting SSM's own acceptance (what it would have had alone: the LLM's kept
        tokens are its greedy continuation whoever drafted), from which the vote weights follow."""
        e, stats = self.e, self.stats
        e.rounds_total += 1
        e.llm_passes_total += 1
        stats.rounds += 1
        stats.llm_passes += 1
        stats.new_tokens += sum(k.shape[0] for k in kept if k is not None)
        stats.chosen_lengths.append(g)
        stats.draft_seconds += t_draft
        stats.verify_seconds += t_verify
        agree = torch.zeros(self.k, dtype=torch.float64)
        drafted = torch.zeros(self.k, dtype=torch.float64)
        rejected = torch.zeros(self.k, dtype=torch.float64)
        everyone = len(scored) == self.k > 1
        for b, new in enumerate(kept):
            if new is None or int(dlen[b]) == 0:
                continue
            n = int(dlen[b])
            row = [_agreement(drafts[b, i, :n], new) if i in scored else 0 for i in range(self.k)]
            for i in scored:
                agree[i] += row[i]
                drafted[i] += n
                rejected[i] += int(row[i] < min(n, new.shape[0]))  # else its draft ran out or the row ended
            if everyone and not self.do_sample:  # the vote's headroom: the best drafter per row and round
                stats.all_drafted_rows += 1
                stats.all_drafted_best += max(row)
                for i in range(self.k):
                    stats.all_drafted_agree[i] += row[i]
                stats.all_drafted_vote += _agreement(cand[b, :n], new) if voted else 0
        for i in scored:
            stats.accepted_per_ssm[i] += int(agree[i])
            stats.drafted_per_ssm[i] += int(drafted[i])
        e.vote.update(agree, rejected, scored)
        stats.weights = e.weights.tolist()
        key = "plain" if not scored else "vote" if voted else f"ssm{scored[0]}"
        stats.plans[key] = stats.plans.get(key, 0) + 1

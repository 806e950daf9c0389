"""Minions' decisions, apart from the mechanics that carry them out: pure logic on measured numbers, no
models, no caches, no threads (so each piece is unit-tested on its own, ``tests/test_minions_policy.py``).

* ``VoteWeights``: each SSM's vote weight from its own acceptance, and which SSMs draft (benching).
* ``VerifyCostLine`` + ``LengthPolicy``: the speculation length that maximises expected tokens per second.
* ``OverlapPolicy``: ``pipeline="auto"``, whether a round overlaps drafting with verification.
"""
from __future__ import annotations

import torch


class VoteWeights:
    """Multiplicative vote weights, one per SSM, bounded; and the benching rule built on them."""

    def __init__(self, k: int, initial=None, lr: float = 0.5, bounds=(0.1, 10.0), bench_ratio: float = 0.5,
                 recheck_every: int = 16):
        self.values = torch.as_tensor(1.0 if initial is None else initial, dtype=torch.float64).expand(k).clone()
        self.lr, self.bounds, self.bench_ratio, self.recheck_every = lr, bounds, bench_ratio, recheck_every
        self.acceptance_ema = 0.5  # running mean acceptance: what a lone drafter is measured against

    def update(self, agree: torch.Tensor, drafted: torch.Tensor, scored: list) -> None:
        """One round: ``agree[i]`` of ``drafted[i]`` draft tokens of SSM ``i`` were kept; ``scored`` are the
        SSMs that drafted. ``w_i *= exp(lr (a_i - mean a))`` among two or more drafters; a lone drafter
        moves against the running mean, so a weak one loses its place to the others. Clamped to ``bounds``."""
        lo, hi = self.bounds
        rates = agree / drafted.clamp_min(1)
        step = torch.zeros_like(rates)
        if len(scored) > 1:  # relative to the others that drafted this round
            step[scored] = rates[scored] - rates[scored].mean()
        else:  # a lone drafter: against the running mean, so a weak one loses its place to the others
            step[scored] = rates[scored] - self.acceptance_ema
        self.values = (self.values * torch.exp(self.lr * step)).clamp(lo, hi)
        self.acceptance_ema = 0.9 * self.acceptance_ema + 0.1 * float(rates[scored].mean())

    def drafters(self, round_index: int, do_sample: bool) -> list:
        """SSMs that draft in round ``round_index``: for sampling the heaviest one, chosen before it samples;
        for the greedy vote every SSM whose weight is at least ``bench_ratio`` of the heaviest (a lighter one
        cannot carry the vote alone, and drafting costs time), with every SSM back every ``recheck_every``
        rounds so a benched one can earn its weight back."""
        w = self.values
        if do_sample:
            return [int(torch.argmax(w))]
        if round_index % self.recheck_every == 0:
            return list(range(w.shape[0]))
        return [i for i in range(w.shape[0]) if float(w[i]) >= self.bench_ratio * float(w.max())]


class VerifyCostLine:
    """Seconds of an LLM pass against the tokens per row in its block: a least-squares line over decayed
    past passes (the first round's prefill gives it its spread)."""

    def __init__(self):
        self.sums = torch.zeros(5, dtype=torch.float64)  # n, sum x, sum y, sum xx, sum xy (decayed)

    def record(self, tokens: int, seconds: float, decay: float = 0.97) -> None:
        self.sums *= decay
        self.sums += torch.tensor([1.0, tokens, seconds, tokens * tokens, tokens * seconds], dtype=torch.float64)

    def predict(self, tokens: float) -> float:
        """Predicted seconds for ``tokens`` tokens per row; a constant until the passes have a spread; the
        slope is never negative."""
        n, sx, sy, sxx, sxy = self.sums.tolist()
        mean_x, mean_y = sx / max(n, 1e-9), sy / max(n, 1e-9)
        var = sxx / max(n, 1e-9) - mean_x ** 2
        slope = max((sxy / max(n, 1e-9) - mean_x * mean_y) / var, 0.0) if var > 1e-6 else 0.0
        return mean_y + slope * (tokens - mean_x)


def acceptance_estimate(accepted: int, rejections: int) -> float:
    """Per-token acceptance from verified candidates, censored-geometric with a Beta(1, 1) prior
    ((accepted + 1) / (accepted + rejections + 2)), so a round or two of bad luck at the start does not
    read as 0; kept in [0.01, 0.99]."""
    return min(max((accepted + 1) / (accepted + rejections + 2), 0.01), 0.99)


def expected_tokens(alpha: float, gamma: int) -> float:
    """Tokens a round emits on average with a ``gamma``-token draft, each accepted with probability
    ``alpha`` until the first rejection, plus the LLM's own token: ``(1 - alpha^(gamma+1)) / (1 - alpha)``."""
    return (1 - alpha ** (gamma + 1)) / (1 - alpha)


class LengthPolicy:
    """The speculation length ``gamma`` in [min_gamma, max_gamma] that maximises expected tokens per
    second, changed only when ``hysteresis`` times better than the current one."""

    def __init__(self, min_gamma: int, max_gamma: int, gamma: int, hysteresis: float = 1.05,
                 recheck_every: int = 16):
        self.min_gamma, self.max_gamma, self.gamma = min_gamma, max_gamma, gamma
        self.hysteresis, self.recheck_every = hysteresis, recheck_every
        self.verify = VerifyCostLine()

    def rate(self, gamma: int, alpha: float, draft_per_token: float, hidden: float) -> float:
        """Expected tokens per second of a round: expected tokens / (predicted verify time of a 1 + gamma
        token pass + the drafting not hidden behind verification)."""
        cost = self.verify.predict(gamma + 1) + (1 - hidden) * gamma * draft_per_token
        return expected_tokens(alpha, gamma) / (cost + 1e-9)

    def choose(self, alpha: float, draft_per_token: float, hidden: float, round_index: int) -> int:
        """The next gamma (does not store it). ``hidden``: the share of rounds whose drafting overlapped
        verification. Gamma 0 (a plain LLM step) can win where speculation does not pay; then every
        ``recheck_every`` rounds one speculative round keeps the drafting estimates current."""
        def rate(g):
            return self.rate(g, alpha, draft_per_token, hidden)

        best = max(range(self.min_gamma, self.max_gamma + 1), key=rate)
        choice = best if rate(best) > self.hysteresis * rate(self.gamma) else self.gamma
        if choice == 0 and round_index % self.recheck_every == 0:
            # plain steps measure nothing about drafting: speculate now and then to keep the estimates current
            return max(range(1, self.max_gamma + 1), key=rate)
        return choice

    def update(self, stats, round_index: int) -> int:
        """Set and return the next gamma from a run's ``MinionsStats`` (acceptance of the verified
        candidates, drafting seconds per drafted token, share of pipelined rounds)."""
        alpha = acceptance_estimate(stats.cand_accepted, stats.cand_rejections)
        draft_per_token = stats.draft_seconds / max(sum(stats.chosen_lengths), 1)
        hidden = stats.pipelined_drafts / max(stats.rounds, 1)
        self.gamma = self.choose(alpha, draft_per_token, hidden, round_index)
        return self.gamma


class OverlapPolicy:
    """``pipeline="auto"``: overlap drafting with verification only where it measures faster. Both ways are
    tried in turn for the first rounds, then the cheaper per block token (round seconds / (1 + gamma),
    which does not swing with the luck of acceptance, unlike seconds per accepted token), flipping only on a
    ``hysteresis`` margin. The other way is rechecked for one round after 32 rounds, the gap doubling (up to
    512) while the choice holds, back to 32 when it flips: a rare recheck costs little where one way is
    clearly slower (2 CPU cores shared by both sides)."""

    WARMUP = 6  # rounds measured each way before choosing
    FIRST_GAP, MAX_GAP = 32, 512

    def __init__(self, hysteresis: float = 1.05):
        self.hysteresis = hysteresis
        # per way (True: overlapped): decayed round seconds, decayed block widths (1 + gamma), rounds seen
        self.cost = {True: [0.0, 0.0, 0], False: [0.0, 0.0, 0]}
        self.rounds_seen = 0
        self.last_faster, self.recheck_gap, self.next_recheck = None, self.FIRST_GAP, 0

    def choose(self) -> bool:
        """Whether the next round overlaps."""
        self.rounds_seen += 1
        (s_on, t_on, n_on), (s_off, t_off, n_off) = self.cost[True], self.cost[False]
        if n_on < self.WARMUP or n_off < self.WARMUP:
            return self.rounds_seen % 2 == 0
        on, off = s_on / max(t_on, 1e-9), s_off / max(t_off, 1e-9)
        # flip only on a clear difference (hysteresis)
        faster = on * self.hysteresis < off if self.last_faster is not True else on < off * self.hysteresis
        if faster != self.last_faster:
            self.last_faster, self.recheck_gap = faster, self.FIRST_GAP
            self.next_recheck = self.rounds_seen + self.recheck_gap
        if self.rounds_seen >= self.next_recheck:
            self.recheck_gap = min(2 * self.recheck_gap, self.MAX_GAP)
            self.next_recheck = self.rounds_seen + self.recheck_gap
            return not faster
        return faster

    def record(self, overlap: bool, seconds: float, width: int) -> None:
        """A round's wall seconds, run ``overlap``ped or not, with block width ``width`` (1 + gamma) per row."""
        cost = self.cost[overlap]
        cost[0] = 0.95 * cost[0] + seconds
        cost[1] = 0.95 * cost[1] + width
        cost[2] += 1

"""Minions' decisions, apart from the mechanics that carry them out: pure logic on measured numbers, no
models, no caches, no threads (so each piece is unit-tested on its own, ``tests/test_minions_policy.py``).

* ``VoteWeights``: each SSM's measured acceptance and the tempered vote weights made from it.
* ``VerifyCostLine`` + ``LengthPolicy``: the speculation length that maximises expected tokens per second.
* ``OverlapPolicy``: ``pipeline="auto"``, whether a round overlaps drafting with verification.
"""
from __future__ import annotations

import torch


class VoteWeights:
    """Each SSM's acceptance, measured on the rounds it drafts, and the vote weights made from it.

    Acceptance is censored-geometric (``acceptance_estimate``) over decayed counts: a draft token the LLM
    kept is a success, the first one it did not keep a failure, a draft cut short by the round's end neither.
    The weights are tempered ratios to the best drafter, ``w_i = initial_i * (alpha_i / max_j alpha_j) **
    (1 / temperature)``, floored at ``floor``: no weight collapses to zero and none runs away, so two drafters
    that agree can outvote a third that is better on average (the multiplicative updates this replaces
    drove the weights to [0.32, 0.11, 3.17] and the vote onto one drafter)."""

    def __init__(self, k: int, initial=None, temperature: float = 1.0, floor: float = 0.2, decay: float = 0.98):
        if not temperature > 0 or not 0 < floor <= 1 or not 0 < decay <= 1:
            raise ValueError(f"need temperature > 0, 0 < floor <= 1 and 0 < decay <= 1, got {temperature}, "
                             f"{floor}, {decay}")
        self.initial = torch.as_tensor(1.0 if initial is None else initial, dtype=torch.float64).expand(k).clone()
        self.temperature, self.floor, self.decay = temperature, floor, decay
        self.accepted = torch.zeros(k, dtype=torch.float64)  # decayed kept draft tokens, per SSM
        self.rejections = torch.zeros(k, dtype=torch.float64)  # decayed first-rejections, per SSM

    def update(self, agree: torch.Tensor, rejected: torch.Tensor, scored: list) -> None:
        """One round: SSM ``i`` in ``scored`` had ``agree[i]`` draft tokens kept and ``rejected[i]`` rows where
        the LLM turned one of its draft tokens down. SSMs that did not draft keep their counts."""
        if not scored:
            return
        self.accepted[scored] = self.decay * self.accepted[scored] + agree[scored].double()
        self.rejections[scored] = self.decay * self.rejections[scored] + rejected[scored].double()

    def record_agreement(self, i: int, agreements: int, disagreements: int) -> None:
        """SSM ``i`` scored on tokens it did not draft (teacher-forced: its argmax against each kept token):
        the same per-token acceptance, counted as kept draft tokens and rejections. Decayed once, as one
        round's counts are. Nothing scored records nothing: a decay without evidence would fade the estimate."""
        if agreements + disagreements == 0:
            return
        self.accepted[i] = self.decay * self.accepted[i] + agreements
        self.rejections[i] = self.decay * self.rejections[i] + disagreements

    def alpha(self, i: int) -> float:
        """SSM ``i``'s per-token acceptance estimate."""
        return acceptance_estimate(float(self.accepted[i]), float(self.rejections[i]))

    @property
    def values(self) -> torch.Tensor:
        """The vote weights ``[K]`` (float64)."""
        alphas = torch.tensor([self.alpha(i) for i in range(self.initial.shape[0])], dtype=torch.float64)
        ratio = (alphas / alphas.max()) ** (1.0 / self.temperature)
        return self.initial * ratio.clamp_min(self.floor)


class VerifyCostLine:
    """Seconds of an LLM pass against the tokens per row in its block: a least-squares line over decayed
    past passes (the first round's prefill gives it its spread)."""

    def __init__(self):
        self.sums = torch.zeros(5, dtype=torch.float64)  # n, sum x, sum y, sum xx, sum xy (decayed)

    def record(self, tokens: int, seconds: float, decay: float = 0.97) -> None:
        self.sums *= decay
        self.sums += torch.tensor([1.0, tokens, seconds, tokens * tokens, tokens * seconds], dtype=torch.float64)

    def predict(self, tokens: float) -> float:
        """Predicted seconds for ``tokens`` tokens per row; a constant until the passes have a spread. Neither
        the slope nor the intercept is ever negative: a wide, slow first pass (prefill, warm-up) beside narrow
        fast ones would otherwise tilt the line below zero at one token, and a plain step would look free."""
        n, sx, sy, sxx, sxy = self.sums.tolist()
        mean_x, mean_y = sx / max(n, 1e-9), sy / max(n, 1e-9)
        var = sxx / max(n, 1e-9) - mean_x ** 2
        slope = max((sxy / max(n, 1e-9) - mean_x * mean_y) / var, 0.0) if var > 1e-6 else 0.0
        if mean_y - slope * mean_x < 0:  # refit through the origin: time proportional to width
            return sxy / max(sxx, 1e-12) * tokens
        return mean_y + slope * (tokens - mean_x)


def acceptance_estimate(accepted: float, rejections: float) -> float:
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

"""The cost-aware controller: per round, which SSMs draft (one of them alone, all of them voting, or none:
a plain LLM step) and how many tokens, whichever maximises the expected tokens per second.

Its inputs are measurements of this run, not constants: the LLM's verify cost line (seconds against
block width, ``policy.VerifyCostLine``), each SSM's drafting seconds per token, the vote's own seconds,
each SSM's acceptance (``policy.VoteWeights``: measured on every round it drafts) and the vote's acceptance
(measured on the rounds the vote ran). A choice ``(set, gamma)`` is worth

    expected_tokens(alpha_set, gamma) / (verify(1 + gamma) + (1 - hidden) * gamma * draft_cost(set) + vote_cost)

where ``draft_cost`` of the vote is the sum of its SSMs' costs (they draft one after another) and the length
per set is ``policy.LengthPolicy.choose``'s. The set moves only when ``hysteresis`` times better. The first round all SSMs draft and vote (greedy), which measures every
SSM at once; then every ``recheck_every`` rounds one set other than the current one takes a round, in
turn, so every estimate (an unchosen drafter's acceptance, the vote's) stays current at the cost of one
round of that set. Pure logic, unit-tested on its own
(``tests/test_minions_controller.py``).
"""
from __future__ import annotations

from .policy import LengthPolicy, VoteWeights, acceptance_estimate

PLAIN = ()  # the drafter set of a plain LLM step


class Controller:
    def __init__(self, k: int, vote: VoteWeights, length: LengthPolicy, adaptive: bool = True,
                 select: bool = True, hysteresis: float = 1.05, recheck_every: int = 16, decay: float = 0.9):
        self.k, self.vote, self.length = k, vote, length
        self.adaptive, self.select, self.hysteresis, self.recheck_every, self.decay = (
            adaptive, select, hysteresis, recheck_every, decay)
        self.draft_cost = [None] * k  # decayed seconds per drafted token, per SSM (None: not measured yet)
        self.vote_cost = 0.0  # decayed seconds of the vote op per round
        self.vote_counts = [0.0, 0.0]  # decayed kept candidate tokens, rejections, of voted candidates
        self.current = (tuple(range(k)), length.gamma)  # (drafter set, gamma) chosen last

    # ---- measurements ----
    def record_draft(self, i: int, seconds: float, tokens: int) -> None:
        if tokens > 0:
            per = seconds / tokens
            old = self.draft_cost[i]
            self.draft_cost[i] = per if old is None else self.decay * old + (1 - self.decay) * per

    def record_vote(self, seconds: float, accepted: int, rejections: int) -> None:
        self.vote_cost = self.decay * self.vote_cost + (1 - self.decay) * seconds
        self.vote_counts = [0.98 * self.vote_counts[0] + accepted, 0.98 * self.vote_counts[1] + rejections]

    # ---- the choice ----
    def alpha(self, drafters: tuple) -> float:
        if len(drafters) == 1:
            return self.vote.alpha(drafters[0])
        return acceptance_estimate(*self.vote_counts)

    def cost(self, drafters: tuple) -> float:
        """Drafting seconds per drafted token of a set (unmeasured counts as free: it gets tried); the vote
        op's seconds spread over the current length."""
        own = sum(c or 0.0 for c in (self.draft_cost[i] for i in drafters))
        return own + (self.vote_cost / max(self.length.gamma, 1) if len(drafters) > 1 else 0.0)

    def rate(self, drafters: tuple, gamma: int, hidden: float) -> float:
        """Expected tokens per second of a round with this drafter set and length."""
        return self.length.rate(gamma, self.alpha(drafters), self.cost(drafters), hidden)

    def candidates(self, do_sample: bool, everyone_only: bool) -> list:
        """Drafter sets to choose from: each SSM alone and, for greedy decoding, the vote of all of them
        (sampling verifies one drafter's own distribution). ``everyone_only``: just the vote of all (greedy; the first
        round, or ``select=False``)."""
        everyone = tuple(range(self.k))
        if do_sample:
            return [(i,) for i in range(self.k)]
        if not self.select or everyone_only:
            return [everyone]
        return [(i,) for i in range(self.k)] + ([everyone] if self.k > 1 else [])

    def plan(self, round_index: int, do_sample: bool, hidden: float) -> tuple:
        """``(drafters, gamma)`` for round ``round_index``: ``drafters`` a tuple of SSM indices, empty for a
        plain step (gamma 0). The length per set is ``LengthPolicy.choose``'s; the set moves only when
        ``hysteresis`` times better than the current one."""
        recheck = round_index % self.recheck_every == 0
        sets = self.candidates(do_sample, recheck and round_index == 0)
        if recheck and round_index > 0 and len(sets) > 1:
            # one set other than the current one, in turn: it measures what it would do now, at the cost
            # of one round of it (not of all SSMs drafting and voting every time)
            others = [s for s in sets if s != self.current[0]]
            sets = [others[(round_index // self.recheck_every - 1) % len(others)]]

        def length(s):
            if not self.adaptive:
                return self.length.gamma
            return self.length.choose(self.alpha(s), self.cost(s), hidden, round_index)

        choices = [(s, length(s)) for s in sets]
        best = max(choices, key=lambda c: self.rate(*c, hidden))
        current = [c for c in choices if c[0] == self.current[0]]
        if current and self.rate(*best, hidden) <= self.hysteresis * self.rate(*current[0], hidden):
            best = current[0]
        if not recheck:
            self.current = best
        self.length.gamma = best[1]
        return (best[0] if best[1] > 0 else PLAIN), best[1]

"""What a Minions run did: LLM passes, tokens per pass, acceptance per SSM, lengths, time split."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class MinionsStats:
    llm_passes: int = 0
    new_tokens: int = 0  # summed over rows
    rounds: int = 0
    chosen_lengths: list = field(default_factory=list)
    accepted_per_ssm: list = field(default_factory=list)  # draft tokens the LLM kept, per SSM's own draft
    drafted_per_ssm: list = field(default_factory=list)
    weights: list = field(default_factory=list)
    draft_seconds: float = 0.0
    verify_seconds: float = 0.0
    wall_seconds: float = 0.0
    pipelined_drafts: int = 0  # rounds whose drafts were made while the LLM verified the round before
    overlapped_rounds: int = 0  # rounds whose LLM pass ran beside drafting (pipeline on and measured faster)
    cand_accepted: int = 0  # tokens of the verified candidates that the LLM kept, summed over rows
    cand_rejections: int = 0  # rows whose candidate was cut short by the LLM
    plans: dict = field(default_factory=dict)  # rounds per drafter set the controller chose: plain, ssm<i>, vote
    # rounds where every SSM drafted (greedy), per row: each SSM's own kept tokens, the best of them (an oracle
    # that picks the drafter per row and round with hindsight) and the vote's: the vote's headroom
    all_drafted_rows: int = 0
    all_drafted_agree: list = field(default_factory=list)
    all_drafted_best: int = 0
    all_drafted_vote: int = 0

    @property
    def tokens_per_pass(self) -> float:
        """New tokens per LLM forward pass, summed over rows."""
        return self.new_tokens / max(self.llm_passes, 1)

    def acceptance(self) -> list:
        return [a / max(d, 1) for a, d in zip(self.accepted_per_ssm, self.drafted_per_ssm)]

    def as_dict(self) -> dict:
        return {"llm_passes": self.llm_passes, "new_tokens": self.new_tokens, "rounds": self.rounds,
                "tokens_per_pass": self.tokens_per_pass, "acceptance": self.acceptance(),
                "weights": self.weights, "mean_length": sum(self.chosen_lengths) / max(len(self.chosen_lengths), 1),
                "draft_seconds": self.draft_seconds, "verify_seconds": self.verify_seconds,
                "wall_seconds": self.wall_seconds, "pipelined_drafts": self.pipelined_drafts,
                "overlapped_rounds": self.overlapped_rounds,
                "candidate_acceptance": self.cand_accepted / max(self.cand_accepted + self.cand_rejections, 1),
                "plans": dict(self.plans), "headroom": self.headroom()}

    def headroom(self) -> dict:
        """Over the rounds where every SSM drafted: kept tokens per row and round of each SSM alone, of the
        best SSM per row and round (oracle), and of the vote."""
        n = max(self.all_drafted_rows, 1)
        return {"rows": self.all_drafted_rows, "per_ssm": [a / n for a in self.all_drafted_agree],
                "oracle": self.all_drafted_best / n, "vote": self.all_drafted_vote / n}

"""Token choice for drafting and the LLM's sampling distribution: greedy, or temperature + top-p."""
from __future__ import annotations

import torch


def nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability reaches top_p (-inf elsewhere)."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    drop = probs.cumsum(-1) - probs >= top_p  # tokens after the nucleus is already full
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)


class Picker:
    """Next-token choice for drafting: greedy, or a sample from the tempered nucleus (with its probs)."""

    def __init__(self, do_sample, temperature, top_p, generator):
        self.do_sample, self.temperature, self.top_p, self.generator = do_sample, temperature, top_p, generator

    def __call__(self, logits: torch.Tensor):
        if not self.do_sample:
            return logits.argmax(-1), None
        q = torch.softmax(nucleus(logits.float() / self.temperature, self.top_p), dim=-1)
        return torch.multinomial(q, 1, generator=self.generator)[:, 0], q

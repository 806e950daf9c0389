"""The runners (``runner_protocol.Runner``) for the models Minions is given, and the choice between them.

Each row's sequence lives in the model's KV cache as the *live* slots of that row (``live_slots``). A
round appends the same number of slots to every row (a block, real tokens first and padding after); what
a row does not keep is masked out, not removed, so one HF ``DynamicCache`` serves rows with different
accepted lengths. Position ids count a row's live tokens, so holes do not shift positions. Slots dead in
every row are cropped from the end; when more than half the cache is dead it is compacted.
"""
from __future__ import annotations

import inspect

import torch

from . import lean_gpt2
from .live_slots import compaction_order, keep_prefix, position_limit
from .runner_protocol import Runner


def is_hf_model(model) -> bool:
    return hasattr(model, "config") and hasattr(model, "forward") and isinstance(model, torch.nn.Module)


class HFRunner:
    """A Hugging Face ``*ForCausalLM`` with a batched KV cache and a live-slot mask per row."""

    def __init__(self, model, bsz: int, device):
        self.model = model
        self.cache = None
        self.live = torch.zeros(bsz, 0, dtype=torch.bool, device=device)  # [B, L] slot holds a row token
        self.count = torch.zeros(bsz, dtype=torch.long, device=device)  # row tokens in the cache
        self.limit = position_limit(model)
        # transformers 5.25 renamed the cache argument and output (``past_key_values`` -> ``cache``; the old name
        # warns and goes in 5.40): pass whichever this model's forward takes
        self.cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def feed(self, tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Append ``tokens[B, t]`` (``valid[B, t]`` marks real tokens, a prefix of each row) and return
        their logits ``[B, t, V]``; logits at padding are meaningless."""
        t = tokens.shape[1]
        pos = self.count[:, None] + torch.arange(t, device=tokens.device)
        if self.limit is not None:
            pos = pos.clamp_max(self.limit - 1)  # padding may run past the table; real tokens never do
        mask = torch.cat([self.live, valid], dim=1)
        out = self.model(input_ids=tokens, attention_mask=mask.long(), position_ids=pos,
                         use_cache=True, **{self.cache_arg: self.cache})
        self.cache = out.get(self.cache_arg)  # output renamed with the argument; reading the old name warns
        self.live = mask
        self.count = self.count + valid.sum(1)
        return out.logits

    def keep(self, n_keep: torch.Tensor) -> None:
        """Keep the first ``n_keep[b]`` tokens of each row; later slots of the row become dead."""
        self.live, self.count, length = keep_prefix(self.live, self.count, n_keep)
        if length < self.live.shape[1] and self.cache is not None:
            self.cache.crop(length - self.live.shape[1])  # this transformers takes the count to drop, negative
            self.live = self.live[:, :length]
        if self.live.shape[1] > 64 and int(self.count.max()) * 2 < self.live.shape[1]:
            self._compact()

    def _compact(self) -> None:
        """Move every row's live slots to the front (rows keep their order of tokens)."""
        order, live = compaction_order(self.live, self.count)
        if hasattr(self.cache, "layers"):  # transformers >= 4.56: one object per layer
            for layer in self.cache.layers:
                idx = order[:, None, :, None].expand(-1, layer.keys.shape[1], -1, layer.keys.shape[3])
                layer.keys = layer.keys.gather(2, idx)
                layer.values = layer.values.gather(2, idx)
        else:  # older DynamicCache: lists of tensors
            for i, (k, v) in enumerate(zip(self.cache.key_cache, self.cache.value_cache)):
                idx = order[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3])
                self.cache.key_cache[i], self.cache.value_cache[i] = k.gather(2, idx), v.gather(2, idx)
        self.live = live


class CallableRunner:
    """A plain callable ``ids[1, T] -> logits[1, T, V]``: no cache, each row recomputed on its tokens."""

    def __init__(self, model, bsz: int, device):
        self.model = model
        self.rows = [torch.zeros(0, dtype=torch.long, device=device) for _ in range(bsz)]
        self.count = torch.zeros(bsz, dtype=torch.long, device=device)
        self.limit = None

    def feed(self, tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        outs = {}
        for b, row in enumerate(self.rows):
            n = int(valid[b].sum())
            self.rows[b] = torch.cat([row, tokens[b, :n]])
            if n:
                outs[b] = self.model(self.rows[b][None])[0, -n:]
        self.count = self.count + valid.sum(1)
        first = next(iter(outs.values()), None)
        vocab = 1 if first is None else first.shape[-1]
        logits = torch.zeros(tokens.shape[0], tokens.shape[1], vocab, device=tokens.device,
                             dtype=torch.float32 if first is None else first.dtype)
        for b, out in outs.items():
            logits[b, : out.shape[0]] = out
        return logits

    def keep(self, n_keep: torch.Tensor) -> None:
        self.rows = [row[: int(k)] for row, k in zip(self.rows, n_keep)]
        self.count = torch.minimum(self.count, n_keep)


def make_runner(model, bsz: int, device, lean: bool = False, packed: bool = False) -> Runner:
    """The runner for a model: the lean GPT-2 runner when asked for and the weights allow it (``packed``:
    with oneDNN-prepacked weights where the CPU build has oneDNN), else HF's module with its cache,
    else a plain callable."""
    if lean and lean_gpt2.supports(model):
        return lean_gpt2.LeanGPT2Runner(model, bsz, device, packed=packed)
    return HFRunner(model, bsz, device) if is_hf_model(model) else CallableRunner(model, bsz, device)

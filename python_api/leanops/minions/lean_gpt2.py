"""A lean runner for GPT-2-architecture weights, for drafting.

A small draft model's forward pass on CPU is mostly per-call overhead in the Hugging Face module stack
(config lookups, mask building, cache objects): about 0.45 ms for a 1-layer model against tens of
microseconds of arithmetic. This runner reads the weights of a ``GPT2LMHeadModel`` and runs the same
computation (the same ops, HF's GELU formula) as a flat sequence over a preallocated KV cache, with the
same live-slot masking as ``runner.HFRunner`` (``live_slots``). Its logits match the HF model's to float
rounding (tested). Its passes run under ``torch.inference_mode()``, whichever thread calls them. It runs
the SSMs by default; the LLM only with ``Minions(lean_llm=True)``, since greedy agreement with HF's own
``generate`` then rests on argmax agreement under rounding differences (equal except at near-ties of the
LLM's top-2 logits: tests/test_minions_near_ties.py; checked per run in the benchmark).

``packed=True`` (CPU, float32, oneDNN available) multiplies by weights that oneDNN packed once, up front.
``addmm`` is slow on the few-row blocks of verification once the weights no longer fit in cache
(measured, 2 CPU threads, 32 weight matrices 512x2048 in turn: 6 rows 18.8 ms with addmm, 4.0 ms
prepacked; 1 row 6.2 ms and 4.8 ms). The logits then differ from HF's by float rounding, not bit for bit.
"""
from __future__ import annotations

import math
import weakref

import torch
import torch.nn.functional as F

from .live_slots import compaction_order, keep_prefix


def supports(model) -> bool:
    cfg = getattr(model, "config", None)
    return (type(model).__name__ == "GPT2LMHeadModel" and getattr(cfg, "model_type", None) == "gpt2"
            and getattr(cfg, "activation_function", None) in ("gelu_new", "gelu_pytorch_tanh")
            and not getattr(cfg, "scale_attn_by_inverse_layer_idx", False)
            and not getattr(cfg, "reorder_and_upcast_attn", False) and getattr(cfg, "scale_attn_weights", True))


def can_pack(device, dtype) -> bool:
    return (torch.device(device).type == "cpu" and dtype == torch.float32 and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))


# smaller weights stay in cache, where addmm's lower call overhead wins (a 2-layer 192-wide drafter:
# 0.56 ms per 1-token pass with addmm, 0.78 ms prepacked)
PACK_MIN_ELEMENTS = 1 << 18


class _Linear:
    """``x[N, in] @ W + b`` for a GPT-2 Conv1D weight ``W[in, out]`` (``bias=None``: none), either with
    ``addmm`` on the model's own tensors or with a oneDNN-prepacked copy of the weight."""

    def __init__(self, weight_in_out, bias, packed: bool):
        self.weight, self.bias, self.packed = weight_in_out, bias, None
        if packed and weight_in_out.numel() >= PACK_MIN_ELEMENTS:
            self.packed = torch.ops.mkldnn._reorder_linear_weight(weight_in_out.detach().t().contiguous())

    def __call__(self, x):
        if self.packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.packed, self.bias, "none", [], "")
        return torch.addmm(self.bias, x, self.weight) if self.bias is not None else x @ self.weight


# packing the demo LLM takes about 0.1-0.3 s: done once per model and reused by every runner (every
# generate() call) while the model's parameters are the same tensors, unmodified
_PACKED = weakref.WeakKeyDictionary()


def _linears(model, packed: bool):
    """Per block (attn, attn proj, fc, fc proj), and the head, as ``_Linear``s; packed ones cached."""
    def build():
        tr = model.transformer
        blocks = [(_Linear(b.attn.c_attn.weight, b.attn.c_attn.bias, packed),
                   _Linear(b.attn.c_proj.weight, b.attn.c_proj.bias, packed),
                   _Linear(b.mlp.c_fc.weight, b.mlp.c_fc.bias, packed),
                   _Linear(b.mlp.c_proj.weight, b.mlp.c_proj.bias, packed)) for b in tr.h]
        return blocks, _Linear(model.lm_head.weight.t(), None, packed)

    if not packed:
        return build()
    signature = tuple((p.data_ptr(), p._version) for p in model.parameters())
    hit = _PACKED.get(model)
    if hit is None or hit[0] != signature:
        hit = _PACKED[model] = (signature, build())
    return hit[1]


class LeanGPT2Runner:
    def __init__(self, model, bsz: int, device, capacity: int = 256, packed: bool = False):
        cfg = model.config
        tr = model.transformer
        self.wte, self.wpe = tr.wte.weight, tr.wpe.weight
        self.packed = packed = bool(packed) and can_pack(device, self.wte.dtype)
        linears, self.head = _linears(model, packed)
        self.blocks = [(b.ln_1.weight, b.ln_1.bias, attn, proj, b.ln_2.weight, b.ln_2.bias, fc, fc_proj)
                       for b, (attn, proj, fc, fc_proj) in zip(tr.h, linears)]
        self.ln_f = (tr.ln_f.weight, tr.ln_f.bias)
        self.eps, self.heads, self.width = cfg.layer_norm_epsilon, cfg.n_head, cfg.n_embd
        self.limit = cfg.n_positions
        self.dtype = self.wte.dtype
        self.hf_gelu = cfg.activation_function == "gelu_new"  # HF's own formula, so the numbers match HF's
        self.scale = (cfg.n_embd // cfg.n_head) ** -0.5
        self.k = self.v = None
        self.capacity = capacity
        self._alloc(bsz, device, capacity)
        self.live = torch.zeros(bsz, 0, dtype=torch.bool, device=device)
        self.count = torch.zeros(bsz, dtype=torch.long, device=device)

    def _alloc(self, bsz, device, capacity):
        shape = (len(self.blocks), bsz, self.heads, capacity, self.width // self.heads)
        k, v = torch.zeros(shape, dtype=self.dtype, device=device), torch.zeros(shape, dtype=self.dtype, device=device)
        if self.k is not None:  # growing: keep what is there
            n = self.k.shape[3]
            k[:, :, :, :n], v[:, :, :, :n] = self.k, self.v
        self.k, self.v, self.capacity = k, v, capacity

    @torch.inference_mode()  # whichever thread calls it: no autograd bookkeeping on the weights
    def feed(self, tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Append ``tokens[B, t]`` (``valid`` marks real tokens, a prefix of each row) and return their logits
        ``[B, t, V]`` (meaningless at padding). Rows with no real token (finished rows) are not computed
        when at most 3/4 of the rows have one: in a batch whose rows finish at different rounds, a pass over
        the rows still running costs what those rows cost, not the whole batch (their logits are zeros).
        Measured, demo LLM, 8 rows, 5-token pass, 2 threads: all rows 17.5 ms; 6 running 15.4, 2 running 9.5;
        with 7 running the gather of their cache costs more than it saves (18.3)."""
        rows = valid.any(1)
        n_rows = int(rows.sum())
        if 0 < n_rows and 4 * n_rows <= 3 * tokens.shape[0]:
            return self._feed_rows(tokens, valid, rows.nonzero()[:, 0])
        return self._feed(tokens, valid, None)

    def _feed_rows(self, tokens, valid, idx):
        logits = self._feed(tokens, valid, idx)
        out = logits.new_zeros(tokens.shape[0], tokens.shape[1], logits.shape[-1])
        out[idx] = logits
        return out

    def _feed(self, tokens: torch.Tensor, valid: torch.Tensor, idx) -> torch.Tensor:
        """The pass over every row (``idx`` None) or over rows ``idx`` only (the others get dead slots)."""
        bsz, t = tokens.shape
        length = self.live.shape[1]
        if length + t > self.capacity:
            self._compact()
            length = self.live.shape[1]
            if length + t > self.capacity:
                self._alloc(bsz, tokens.device, 2 * (length + t))
        end = length + t
        pos = (self.count[:, None] + torch.arange(t, device=tokens.device)).clamp_max(self.limit - 1)
        live = torch.cat([self.live, valid], dim=1)
        slot = torch.arange(end, device=tokens.device)
        query = torch.arange(length, end, device=tokens.device)[:, None]
        # a query sees the row's live slots up to itself, and always itself (so padding never has no key)
        mask = (live[:, None, :] & (slot[None, :] <= query)[None]) | (slot[None, :] == query)[None]
        mask = mask[:, None]
        if idx is not None:
            tokens, pos, mask, n = tokens[idx], pos[idx], mask[idx], idx.shape[0]
        else:
            n = bsz
        x = F.embedding(tokens, self.wte) + F.embedding(pos, self.wpe)
        c, h = self.width, self.heads
        for i, (l1w, l1b, attn, proj, l2w, l2b, fc, fc_proj) in enumerate(self.blocks):
            a = F.layer_norm(x, (c,), l1w, l1b, self.eps)
            qkv = attn(a.view(-1, c)).view(n, t, 3, h, c // h).permute(2, 0, 3, 1, 4)
            if idx is None:
                self.k[i, :, :, length:end] = qkv[1]
                self.v[i, :, :, length:end] = qkv[2]
                keys, values = self.k[i, :, :, :end], self.v[i, :, :, :end]
            else:  # the running rows' slots only; the other rows' new slots are dead
                self.k[i, idx, :, length:end] = qkv[1]
                self.v[i, idx, :, length:end] = qkv[2]
                keys, values = self.k[i, idx, :, :end], self.v[i, idx, :, :end]
            o = F.scaled_dot_product_attention(qkv[0], keys, values, attn_mask=mask, scale=self.scale)
            x = x + proj(o.transpose(1, 2).reshape(-1, c)).view(n, t, c)
            a = F.layer_norm(x, (c,), l2w, l2b, self.eps)
            m = fc(a.view(-1, c))
            if self.hf_gelu:
                m = 0.5 * m * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (m + 0.044715 * torch.pow(m, 3.0))))
            else:
                m = F.gelu(m, approximate="tanh")
            x = x + fc_proj(m).view(n, t, c)
        x = F.layer_norm(x, (c,), *self.ln_f, self.eps)
        self.live = live
        self.count = self.count + valid.sum(1)
        return self.head(x.view(-1, c)).view(n, t, -1)

    def keep(self, n_keep: torch.Tensor) -> None:
        self.live, self.count, used = keep_prefix(self.live, self.count, n_keep)
        self.live = self.live[:, :used]  # static cache: nothing to free

    def _compact(self) -> None:
        order, live = compaction_order(self.live, self.count)
        length, old = order.shape[1], self.live.shape[1]
        idx = order[None, :, None, :, None].expand(self.k.shape[0], -1, self.heads, -1, self.k.shape[4])
        self.k[:, :, :, :length] = self.k[:, :, :, :old].gather(3, idx)
        self.v[:, :, :, :length] = self.v[:, :, :, :old].gather(3, idx)
        self.live = live


@torch.no_grad()
def greedy(model, input_ids: torch.Tensor, max_new_tokens: int, packed: bool = True) -> torch.Tensor:
    """Plain greedy decoding (one token per pass, no speculation) through this runner: the baseline that
    shows what speculation adds on top of the runner itself. ``input_ids[B, T]``, no padding."""
    if not supports(model):
        raise TypeError("greedy() needs a GPT2LMHeadModel that LeanGPT2Runner supports")
    if input_ids.dim() != 2 or input_ids.shape[1] < 1:
        raise ValueError(f"input_ids must be [B, T] with T >= 1, got {tuple(input_ids.shape)}")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
    bsz, t = input_ids.shape
    runner = LeanGPT2Runner(model, bsz, input_ids.device, capacity=t + max_new_tokens, packed=packed)
    logits = runner.feed(input_ids, torch.ones_like(input_ids, dtype=torch.bool))[:, -1]
    out = [input_ids]
    for step in range(max_new_tokens):
        nxt = logits.argmax(-1, keepdim=True)
        out.append(nxt)
        if step + 1 < max_new_tokens:
            logits = runner.feed(nxt, torch.ones_like(nxt, dtype=torch.bool))[:, -1]
    return torch.cat(out, 1)

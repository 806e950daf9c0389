"""APN: a Transformer encoder over title and attributes (field embeddings), a review encoder, a posterior
and a prior network over K aspect slots with adaptive distillation, and a Transformer decoder with the
copy mechanism and an incremental key/value cache.

Latent: a distribution ``pi`` over K aspect slots (a categorical, not a continuous Gaussian: buyers' aspects
are a small discrete set per category, and a categorical KL has no sampling noise). The aspect vector
``z = pi @ E`` (the expected slot embedding, deterministic) is scaled by a learned per-item gate
``g = sigmoid(w . [h_item, z])`` and enters decoding as one extra memory slot and as an offset added to
every decoder input. Training: items with reviews decode with the posterior ``q(k | item, reviews)``
(with probability ``prior_mix`` with the prior instead, so the decoder also learns from prior latents) and
``KL(q || p)``, with q held fixed (distillation: the teacher is not pulled towards the student), trains the
prior ``p(k | item)``. Items without reviews always use the prior.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .copy import copy_log_distribution, copy_nll


@dataclass
class APNConfig:
    vocab_size: int
    n_fields: int
    d_model: int = 64
    n_heads: int = 4
    enc_layers: int = 2
    dec_layers: int = 2
    d_ff: int = 128
    dropout: float = 0.0  # residual/embedding dropout (the generated data are plentiful)
    max_len: int = 256
    copy: bool = True          # copy mechanism on/off
    latent: bool = True        # posterior/prior aspect latent (APN) on/off
    n_slots: int = 16          # K aspect slots
    prior_mix: float = 0.25
    pad_id: int = 0
    unk_id: int = 1
    bos_id: int = 2
    eos_id: int = 3

    def __post_init__(self):
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        for name in ("vocab_size", "n_fields", "d_model", "n_heads", "enc_layers", "dec_layers", "d_ff", "n_slots"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


class Attention(nn.Module):
    def __init__(self, d, h, dropout):
        super().__init__()
        self.h, self.dropout = h, dropout
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

    def split(self, x):  # [B, N, d] -> [B, h, N, d/h]
        return x.view(x.shape[0], x.shape[1], self.h, -1).transpose(1, 2)

    def kv(self, x):
        return self.split(self.k(x)), self.split(self.v(x))

    def forward(self, x, k, v, mask=None, causal=False):
        q = self.split(self.q(x))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)  # no attention dropout
        return self.o(out.transpose(1, 2).reshape(x.shape))


class EncoderLayer(nn.Module):
    def __init__(self, c: APNConfig):
        super().__init__()
        self.att = Attention(c.d_model, c.n_heads, c.dropout)
        self.ff = nn.Sequential(nn.Linear(c.d_model, c.d_ff), nn.GELU(), nn.Linear(c.d_ff, c.d_model))
        self.n1, self.n2, self.drop = nn.LayerNorm(c.d_model), nn.LayerNorm(c.d_model), nn.Dropout(c.dropout)

    def forward(self, x, mask):
        y = self.n1(x)
        x = x + self.drop(self.att(y, *self.att.kv(y), mask=mask))
        return x + self.drop(self.ff(self.n2(x)))


class DecoderLayer(nn.Module):
    def __init__(self, c: APNConfig):
        super().__init__()
        self.self_att = Attention(c.d_model, c.n_heads, c.dropout)
        self.cross = Attention(c.d_model, c.n_heads, c.dropout)
        self.ff = nn.Sequential(nn.Linear(c.d_model, c.d_ff), nn.GELU(), nn.Linear(c.d_ff, c.d_model))
        self.n1, self.n2, self.n3 = (nn.LayerNorm(c.d_model) for _ in range(3))
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x, memory_kv, memory_mask, cache=None):
        """``cache``: None (whole sequence, causal) or a dict holding this layer's past keys/values,
        extended in place by the new positions (incremental decoding)."""
        y = self.n1(x)
        k, v = self.self_att.kv(y)
        if cache is not None:
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
            cache["k"], cache["v"] = k, v
        x = x + self.drop(self.self_att(y, k, v, causal=cache is None and x.shape[1] > 1))
        x = x + self.drop(self.cross(self.n2(x), *memory_kv, mask=memory_mask))
        return x + self.drop(self.ff(self.n3(x)))


class APN(nn.Module):
    def __init__(self, config: APNConfig):
        super().__init__()
        c = self.config = config
        d = c.d_model
        self.tok = nn.Embedding(c.vocab_size, d, padding_idx=c.pad_id)
        self.pos = nn.Embedding(c.max_len, d)
        self.field = nn.Embedding(c.n_fields, d, padding_idx=0)
        self.encoder = nn.ModuleList(EncoderLayer(c) for _ in range(c.enc_layers))
        self.enc_norm = nn.LayerNorm(d)
        self.decoder = nn.ModuleList(DecoderLayer(c) for _ in range(c.dec_layers))
        self.dec_norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, c.vocab_size)
        self.drop = nn.Dropout(c.dropout)
        if c.copy:
            self.copy_q, self.copy_k = nn.Linear(d, d), nn.Linear(d, d)
            self.gen_gate = nn.Linear(3 * d, 1)
        if c.latent:
            self.review_encoder = EncoderLayer(c)
            self.post_q, self.post_k = nn.Linear(d, d), nn.Linear(d, d)
            self.posterior = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, c.n_slots))
            self.prior = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, c.n_slots))
            self.slots = nn.Parameter(torch.randn(c.n_slots, d) * d ** -0.5)
            self.latent_gate = nn.Linear(2 * d, 1)

    # --- encoding -------------------------------------------------------------------------------------
    def embed(self, ids, fields=None):
        n = ids.shape[-1]
        if n > self.config.max_len:
            raise ValueError(f"sequence of {n} pieces exceeds max_len={self.config.max_len}")
        x = self.tok(ids) + self.pos(torch.arange(n, device=ids.device))
        if fields is not None:
            x = x + self.field(fields)
        return self.drop(x)

    def encode(self, batch):
        """-> dict: memory [B, S(+1), d], its attention mask, the source part's length, latent terms."""
        mask = batch.src_mask
        x = self.embed(batch.src, batch.src_field)
        att_mask = mask[:, None, None, :]
        for layer in self.encoder:
            x = layer(x, att_mask)
        x = self.enc_norm(x)
        state = {"source": x, "source_mask": mask, "memory": x, "memory_mask": mask, "latent": None}
        if self.config.latent:
            item = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
            prior_logits = self.prior(item)
            post_logits = self.posterior_logits(item, batch.reviews)
            has = batch.has_reviews.to(x.device)
            use_post = has.clone()
            if self.training and self.config.prior_mix > 0:
                use_post &= torch.rand(has.shape, device=x.device) >= self.config.prior_mix
            logits = torch.where(use_post[:, None], post_logits, prior_logits)
            z = logits.softmax(-1) @ self.slots
            gate = torch.sigmoid(self.latent_gate(torch.cat([item, z], -1)))
            latent = gate * z
            state.update(latent=latent, gate=gate.squeeze(-1), prior_logits=prior_logits, post_logits=post_logits,
                         has_reviews=has,
                         memory=torch.cat([latent[:, None], x], 1),
                         memory_mask=torch.cat([torch.ones_like(mask[:, :1]), mask], 1))
        return state

    def posterior_logits(self, item, reviews):
        """Attend from the item encoding to its review encodings (mean-pooled pieces) -> slot logits."""
        b, r, n = reviews.shape
        flat = reviews.reshape(b * r, n)
        piece_mask = flat != self.config.pad_id
        y = self.review_encoder(self.embed(flat), piece_mask[:, None, None, :] | ~piece_mask.any(1)[:, None, None, None])
        pooled = (y * piece_mask[..., None]).sum(1) / piece_mask.sum(1, keepdim=True).clamp_min(1)
        pooled = pooled.view(b, r, -1)
        review_mask = piece_mask.view(b, r, n).any(-1)
        scores = (self.post_q(item)[:, None] * self.post_k(pooled)).sum(-1) / item.shape[-1] ** 0.5
        scores = scores.masked_fill(~review_mask, float("-inf"))
        weights = torch.nan_to_num(scores.softmax(-1), nan=0.0)  # items without reviews: zero context
        context = (weights[..., None] * pooled).sum(1)
        return self.posterior(torch.cat([item, context], -1))

    # --- decoding -------------------------------------------------------------------------------------
    def memory_kv(self, state):
        return [(layer.cross.kv(state["memory"])) for layer in self.decoder]

    def decode_step(self, state, tokens, memory_kv, caches=None, start=0):
        """Decoder over ``tokens`` [B, T] (ids < V) starting at position ``start``; ``caches``: one dict
        per layer for incremental decoding or None. Returns the log distribution over V (+ n_ext) and
        the copy terms for the loss."""
        pos = torch.arange(start, start + tokens.shape[1], device=tokens.device)
        if start + tokens.shape[1] > self.config.max_len:
            raise ValueError(f"decoding past max_len={self.config.max_len}")
        emb = self.tok(tokens) + self.pos(pos)
        x = self.drop(emb + (state["latent"][:, None] if state["latent"] is not None else 0))
        mm = state["memory_mask"][:, None, None, :]
        for i, layer in enumerate(self.decoder):
            x = layer(x, memory_kv[i], mm, None if caches is None else caches[i])
        h = self.dec_norm(x)
        log_p_vocab = F.log_softmax(self.out(h), -1)
        if not self.config.copy:
            return {"log_p_vocab": log_p_vocab}
        src, smask = state["source"], state["source_mask"]
        scores = (self.copy_q(h) @ self.copy_k(src).transpose(1, 2)) / h.shape[-1] ** 0.5
        attn = scores.masked_fill(~smask[:, None, :], float("-inf")).softmax(-1)
        context = attn @ src
        gate_logit = self.gen_gate(torch.cat([h, context, emb], -1))
        return {"log_p_vocab": log_p_vocab, "attn": attn, "log_p_gen": F.logsigmoid(gate_logit),
                "log_1m_p_gen": F.logsigmoid(-gate_logit)}

    def next_log_probs(self, out, batch_src_ext, n_ext):
        """Log distribution over the extended vocabulary (copy) or the vocabulary, last position."""
        if not self.config.copy:
            return out["log_p_vocab"][:, -1]
        last = {k: v[:, -1:] for k, v in out.items()}
        return copy_log_distribution(last["log_p_vocab"], last["attn"], batch_src_ext, last["log_p_gen"], n_ext,
                                     last["log_1m_p_gen"])[:, 0]

    # --- training loss ---------------------------------------------------------------------------------
    def loss(self, batch, label_smoothing: float = 0.1, kl_weight: float = 1.0) -> dict:
        """Teacher-forced loss: NLL of the copy mixture (or of p_vocab) with label smoothing on p_vocab,
        plus ``kl_weight * KL(q || p)`` over items with reviews."""
        state = self.encode(batch)
        out = self.decode_step(state, batch.tgt_in, self.memory_kv(state))
        v = self.config.vocab_size
        mask = batch.tgt_out != self.config.pad_id
        if self.config.copy:
            nll = copy_nll(out["log_p_vocab"], out["attn"], batch.src_ext, out["log_p_gen"], out["log_1m_p_gen"],
                           batch.tgt_out)
        else:
            target = batch.tgt_out.masked_fill(batch.tgt_out >= v, self.config.unk_id)  # extended ids are [UNK] without copy
            nll = -out["log_p_vocab"].gather(2, target[..., None]).squeeze(-1)
        smooth = -out["log_p_vocab"].mean(-1)
        tok_loss = ((1 - label_smoothing) * nll + label_smoothing * smooth)[mask].mean()
        result = {"nll": nll[mask].mean().detach(), "loss": tok_loss}
        if self.config.latent:
            has = state["has_reviews"]
            q = state["post_logits"].detach().log_softmax(-1)
            p = state["prior_logits"].log_softmax(-1)
            kl = (q.exp() * (q - p)).sum(-1)
            kl = kl[has].mean() if bool(has.any()) else kl.sum() * 0
            result["kl"] = kl.detach()
            result["loss"] = tok_loss + kl_weight * kl
        return result

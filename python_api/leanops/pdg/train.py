"""Training (teacher forcing, label smoothing, AdamW) and description generation for the four systems."""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from .decode import beam_search
from .features import encode, field_ids
from .model import APN, APNConfig


@dataclass(frozen=True)
class System:
    name: str
    copy: bool
    latent: bool
    reviews_in_source: bool


SYSTEMS = {s.name: s for s in (
    System("transformer", copy=False, latent=False, reviews_in_source=False),
    System("transformer+copy", copy=True, latent=False, reviews_in_source=False),
    System("+reviews concat", copy=True, latent=False, reviews_in_source=True),
    System("APN", copy=True, latent=True, reviews_in_source=False),
)}


class Generator:
    """A trained model with its vocabulary, attribute fields and system: ``describe(products)`` -> texts."""

    def __init__(self, model: APN, vocab, fields: dict, system: System):
        self.model, self.vocab, self.fields, self.system = model, vocab, fields, system

    def batch(self, products, use_reviews=True, unknown_keys="error"):
        return encode(products, self.vocab, self.fields, reviews_in_source=self.system.reviews_in_source,
                      use_reviews=use_reviews, unknown_keys=unknown_keys)

    def describe(self, products, use_reviews=True, beam_size=1, max_len=64, batch_size=128, unknown_keys="error",
                 **decode_kw) -> list:
        texts = []
        for i in range(0, len(products), batch_size):
            batch = self.batch(products[i:i + batch_size], use_reviews, unknown_keys)
            ids = beam_search(self.model, batch, beam_size=beam_size, max_len=max_len, **decode_kw)
            texts += [self.vocab.decode(x, ext) for x, ext in zip(ids, batch.ext_words)]
        return texts


def build(vocab, products, system: System, **config) -> Generator:
    fields = field_ids(k for p in products for k in p.attributes)
    cfg = APNConfig(vocab_size=vocab.size, n_fields=4 + len(fields), copy=system.copy, latent=system.latent,
                    pad_id=vocab.pad, unk_id=vocab.unk, bos_id=vocab.bos, eos_id=vocab.eos, **config)
    return Generator(APN(cfg), vocab, fields, system)


def train(gen: Generator, products, epochs: int = 8, batch_size: int = 64, lr: float = 2e-3,
          weight_decay: float = 0.01, label_smoothing: float = 0.1, kl_weight: float = 1.0, seed: int = 0,
          progress: bool = True, desc: str = "train") -> list:
    """AdamW with linear warm-up (5% of steps) then linear decay; returns the per-epoch mean losses."""
    from tqdm import tqdm

    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = gen.model
    batches = [gen.batch(products[i:i + batch_size]) for i in range(0, len(products), batch_size)]
    steps = epochs * len(batches)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, max(0.05, (steps - s) / (steps - warm + 1))))
    model.train()
    history = []
    bar = tqdm(total=steps, desc=desc, unit="step", disable=not progress, leave=False)
    for _ in range(epochs):
        rng.shuffle(batches)
        total = 0.0
        for batch in batches:
            out = model.loss(batch, label_smoothing=label_smoothing, kl_weight=kl_weight)
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            total += float(out["loss"].detach())
            bar.update()
            bar.set_postfix(loss=f"{float(out['loss'].detach()):.3f}")
        history.append(total / len(batches))
    bar.close()
    model.eval()
    return history

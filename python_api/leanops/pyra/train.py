"""Adapting a (PYRA-, ToMe- or un-) merged encoder to a classification task: the classifier (encoder, size-
weighted mean pool, linear head), one training run, accuracy and throughput."""
from __future__ import annotations

import copy
import time

import torch
from torch import nn

from .. import tome
from .patch import export, param_groups, patch


class TextClassifier(nn.Module):
    """Patched BERT encoder, size-weighted mean of its output tokens (padding has size 0), linear head."""

    def __init__(self, encoder: nn.Module, num_classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.hidden_size, num_classes)

    def forward(self, input_ids, attention_mask):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(tome.mean_pool(hidden, self.encoder))


def build(base_encoder: nn.Module, num_classes: int, schedule, gates: bool, num_tokens: int, lora_rank: int,
          seed: int) -> TextClassifier:
    """A fresh copy of the pretrained encoder, patched; head and gates initialised from ``seed``."""
    torch.manual_seed(seed)
    encoder = patch(copy.deepcopy(base_encoder), r=schedule, lora_rank=lora_rank, gates=gates, num_tokens=num_tokens)
    return TextClassifier(encoder, num_classes)


def train(model: TextClassifier, ids, mask, labels, *, epochs: int, batch_size: int, lr: float, gate_lr: float,
          seed: int, progress=None) -> float:
    """AdamW on LoRA + head (``lr``) and gates (``gate_lr``), linear decay; returns the wall seconds.
    The batch order depends on ``seed`` only, so every method sees the same batches."""
    opt = torch.optim.AdamW(param_groups(model, lr, gate_lr), weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    steps = epochs * ((len(labels) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps)
    model.train()
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(labels), generator=g)
        for i in range(0, len(labels), batch_size):
            b = order[i:i + batch_size]
            loss = nn.functional.cross_entropy(model(ids[b], mask[b]), labels[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if progress is not None:
                progress.update(1)
    model.eval()
    return time.perf_counter() - start


@torch.no_grad()
def accuracy(model: TextClassifier, ids, mask, labels, batch_size: int = 128) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(labels), batch_size):
        correct += int((model(ids[i:i + batch_size], mask[i:i + batch_size]).argmax(-1) == labels[i:i + batch_size]).sum())
    return correct / len(labels)


def for_inference(model: TextClassifier) -> TextClassifier:
    """LoRA merged into the weights (``export``); gates and merging kept."""
    export(model.encoder)
    return model.eval()

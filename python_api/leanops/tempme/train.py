"""Contrastive training of CLIP video retrieval: symmetric InfoNCE over the text-video similarity matrix with
a learnable logit scale, AdamW, linear warm-up then cosine decay, tqdm progress; and evaluation."""
from __future__ import annotations

import math
import time
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .metrics import retrieval_metrics


def info_nce(video: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor, same_text=None) -> torch.Tensor:
    """Symmetric InfoNCE: mean of the text->video and video->text cross-entropies of
    ``exp(logit_scale) * cos(text_i, video_j)``. Pair i is positive for (i, i); ``same_text`` ``[B, B]`` bool
    (optional) marks pairs whose captions are identical, which then share the target mass (a batch with
    repeated captions has several right answers)."""
    if video.dim() != 2 or video.shape != text.shape:
        raise ValueError(f"video and text must be [B, D] of the same shape, got {tuple(video.shape)} and "
                         f"{tuple(text.shape)}")
    logits = logit_scale.exp().clamp(max=100.0) * F.normalize(text, dim=-1) @ F.normalize(video, dim=-1).t()
    if same_text is None:
        target = torch.eye(len(text), device=text.device)
    else:
        target = same_text.to(logits.dtype)
        target = target / target.sum(1, keepdim=True)
    t2v = -(target * logits.log_softmax(1)).sum(1).mean()
    v2t = -(target.t() * logits.t().log_softmax(1)).sum(1).mean()
    return (t2v + v2t) / 2


def cosine_schedule(optimizer, steps: int, warmup: int):
    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class SavedActivations:
    """Bytes of the tensors autograd saves for backward in one step (the training-memory figure on CPU, where
    no allocator high-water mark exists; on a GPU torch.cuda.max_memory_allocated is the figure)."""

    def __init__(self):
        self.bytes = 0
        self._seen = set()

    def pack(self, t):
        key = (t.data_ptr(), t.numel(), t.dtype)
        if key not in self._seen:
            self._seen.add(key)
            self.bytes += t.numel() * t.element_size()
        return t

    def __enter__(self):
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


def clip_model_of(model: nn.Module) -> nn.Module:
    """The module holding ``logit_scale`` and ``get_text_features`` (a CLIPModel, perhaps inside peft)."""
    for module in model.modules():
        if hasattr(module, "logit_scale") and hasattr(module, "get_text_features"):
            return module
    raise TypeError(f"model must contain a Hugging Face CLIPModel, got {type(model).__name__}")


def train(model: nn.Module, encode_video: Callable, batches: Iterator, steps: int, lr: float = 1e-3,
          weight_decay: float = 0.01, warmup: int = 10, desc: str = "train", progress: bool = True) -> dict:
    """Train the trainable parameters of ``model`` for ``steps`` batches of ``(pixel_values [B,F,3,H,W],
    text inputs dict, same_text [B,B] or None)``; ``encode_video(model, pixel_values) -> [B, D]``.
    Returns wall seconds, the loss curve, and the activation bytes saved for backward in the first step."""
    from tqdm import tqdm
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    clip = clip_model_of(model)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = cosine_schedule(opt, steps, min(warmup, steps))
    model.train()
    losses, saved, start = [], 0, time.perf_counter()
    for step in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
        pixel_values, text, same = next(batches)
        with SavedActivations() as act:
            video = encode_video(model, pixel_values)
            words = clip.get_text_features(**text).pooler_output
            loss = info_nce(video, words, clip.logit_scale, same)
        if step == 0:
            saved = act.bytes
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return {"seconds": time.perf_counter() - start, "losses": losses, "activation_bytes": saved}


@torch.no_grad()
def embed(model: nn.Module, encode_video: Callable, videos: torch.Tensor, text: dict, batch: int = 32):
    clip = clip_model_of(model)
    model.eval()
    v = torch.cat([encode_video(model, videos[i:i + batch]) for i in range(0, len(videos), batch)])
    t = clip.get_text_features(**text).pooler_output
    return F.normalize(t, dim=-1), F.normalize(v, dim=-1)


def evaluate(model: nn.Module, encode_video: Callable, videos: torch.Tensor, text: dict, batch: int = 32) -> dict:
    """Retrieval metrics (``metrics.retrieval_metrics``) of caption i against video i."""
    t, v = embed(model, encode_video, videos, text, batch)
    return retrieval_metrics(t @ v.t())

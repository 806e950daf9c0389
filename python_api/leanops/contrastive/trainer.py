"""``Trainer``: MLE, then the group-wise contrastive objective annealed in against a frozen reference.

Loss at step t: ``(1 - a_t) * NLL + a_t * group_contrastive_loss``. ``a_t = 0`` for the first
``mle_steps`` steps (only the observed rows are run), then rises as a half cosine from 0 to ``max_alpha``
over ``anneal_steps`` steps and stays there. In a contrastive step every row of the batch (observed and
sampled pairs) goes through the model in one batched forward, and through the reference in one under
``torch.inference_mode``; the NLL is the token-mean over the observed rows of that same forward.
Where rows share a context (a group's observed and response-side rows), that batched forward runs each
distinct context once and then every row's response after it (``sequence_logprob``'s ``share_context``,
on by default). With ``cache_reference=True`` the frozen reference's log-likelihood of each row (named by the batch's
``row_ids``) is computed once and reused until the next refresh: the reference never changes between
refreshes, so later epochs skip its forward.
"""
from __future__ import annotations

import copy
import math
import os

import torch

from .logprob import check_share_context, is_encoder_decoder, sequence_logprob
from .loss import group_contrastive_loss


def vocab_size(model) -> int:
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if emb is not None:
        return int(emb.num_embeddings)
    return int(model.config.vocab_size)


def frozen_copy(model):
    """A reference model: a deep copy in eval mode with every parameter's ``requires_grad`` off."""
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def check_reference(model, ref_model) -> None:
    if ref_model is model:
        raise ValueError("ref_model must be a separate frozen model, not the trained model itself (use frozen_copy)")
    trainable = [n for n, p in ref_model.named_parameters() if p.requires_grad]
    if trainable:
        raise ValueError(f"ref_model must be frozen, but {len(trainable)} parameters require grad (e.g. "
                         f"{trainable[0]!r}); build it with leanops.contrastive.frozen_copy(model)")
    if vocab_size(model) != vocab_size(ref_model):
        raise ValueError(f"ref_model's vocabulary ({vocab_size(ref_model)}) differs from model's "
                         f"({vocab_size(model)}); both must score the same token ids")
    if is_encoder_decoder(model) != is_encoder_decoder(ref_model):
        raise ValueError("ref_model and model must both be causal or both be encoder-decoder models")


class Trainer:
    def __init__(self, model, ref_model=None, lr: float = 1e-3, mle_steps: int = 0, anneal_steps: int = 100,
                 max_alpha: float = 1.0, refresh_every: int | None = None, grad_clip: float | None = 1.0,
                 optimizer: torch.optim.Optimizer | None = None, checkpoint_dir: str | None = None,
                 checkpoint_every: int | None = None, progress: bool = True, cache_reference: bool = False,
                 share_context: bool | None = None):
        if not 0 <= max_alpha <= 1:
            raise ValueError(f"max_alpha must be in [0, 1], got {max_alpha}")
        if mle_steps < 0 or anneal_steps < 0:
            raise ValueError(f"mle_steps and anneal_steps must be >= 0, got {mle_steps} and {anneal_steps}")
        if refresh_every is not None and refresh_every < 1:
            raise ValueError(f"refresh_every must be None or >= 1, got {refresh_every}")
        if ref_model is None and max_alpha > 0:
            raise ValueError("ref_model is None: pass a frozen reference (frozen_copy(model)) or max_alpha=0 "
                             "for plain MLE")
        if ref_model is not None:
            check_reference(model, ref_model)
            ref_model.eval()
        self.model, self.ref_model = model, ref_model
        self.mle_steps, self.anneal_steps, self.max_alpha = mle_steps, anneal_steps, max_alpha
        self.refresh_every, self.grad_clip = refresh_every, grad_clip
        self.optimizer = optimizer or torch.optim.AdamW(model.parameters(), lr=lr)
        self.checkpoint_dir, self.checkpoint_every = checkpoint_dir, checkpoint_every
        self.progress = progress
        self.step_count = 0
        self.cache_reference = cache_reference
        check_share_context(share_context)  # at construction, not at the first step
        self.share_context = share_context
        self._ref_cache: dict[int, float] = {}

    def alpha(self, step: int | None = None) -> float:
        t = self.step_count if step is None else step
        if t < self.mle_steps or self.max_alpha == 0:
            return 0.0
        if self.anneal_steps == 0:
            return self.max_alpha
        x = min(1.0, (t - self.mle_steps + 1) / self.anneal_steps)
        return self.max_alpha * 0.5 * (1 - math.cos(math.pi * x))

    def _device(self):
        return next(self.model.parameters()).device

    def losses(self, batch: dict, alpha: float) -> dict:
        """NLL (token mean over observed rows) and, when alpha > 0, the contrastive loss over all rows."""
        b = batch["num_observed"]
        rows = slice(None) if alpha > 0 else slice(0, b)  # an MLE step runs the observed rows only
        args = [batch[k][rows] for k in ("context_ids", "response_ids", "context_mask", "response_mask")]
        logp, counts = sequence_logprob(self.model, *args, return_token_counts=True, share_context=self.share_context)
        nll = -logp[:b].sum() / counts[:b].sum()
        out = {"nll": nll}
        if alpha > 0:
            logp_ref = self._reference_logprob(batch, args).to(logp.device)
            scores = batch["scores"].to(logp.device)
            out["contrastive"] = group_contrastive_loss(logp, logp_ref, scores)
        return out

    def _reference_logprob(self, batch: dict, args: list) -> torch.Tensor:
        ids = batch.get("row_ids")
        use_cache = self.cache_reference and ids is not None and bool((ids >= 0).all())
        if use_cache and all(i in self._ref_cache for i in ids.tolist()):
            return torch.tensor([self._ref_cache[i] for i in ids.tolist()], dtype=torch.float32)
        with torch.inference_mode():
            logp_ref = sequence_logprob(self.ref_model, *args, share_context=self.share_context)
        logp_ref = logp_ref.clone()  # a normal tensor (inference tensors cannot enter autograd's saved state)
        if use_cache:
            self._ref_cache.update(zip(ids.tolist(), logp_ref.tolist()))
        return logp_ref

    def step(self, batch: dict) -> dict:
        self.model.train()
        a = self.alpha()
        parts = self.losses(batch, a)
        loss = (1 - a) * parts["nll"] + (a * parts["contrastive"] if a > 0 else 0.0)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.step_count += 1
        if self.refresh_every and self.ref_model is not None and self.step_count % self.refresh_every == 0:
            self.refresh_reference()
        if self.checkpoint_dir and self.checkpoint_every and self.step_count % self.checkpoint_every == 0:
            self.save_checkpoint(os.path.join(self.checkpoint_dir, f"step{self.step_count}.pt"))
        return {"loss": float(loss.detach()), "alpha": a, **{k: float(v.detach()) for k, v in parts.items()}}

    @torch.no_grad()
    def refresh_reference(self) -> None:
        """The reference takes the trained model's current weights (it stays frozen)."""
        self.ref_model.load_state_dict(self.model.state_dict())
        self.ref_model.eval()
        self._ref_cache.clear()

    def save_checkpoint(self, path: str) -> None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        torch.save({"step": self.step_count, "model": self.model.state_dict(),
                    "optimizer": self.optimizer.state_dict()}, path)

    def load_checkpoint(self, path: str) -> None:
        state = torch.load(path, map_location=self._device(), weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step_count = int(state["step"])

    def fit(self, loader, steps: int, desc: str = "train") -> list[dict]:
        """Runs ``steps`` steps, cycling through ``loader``; returns each step's losses."""
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        from tqdm import tqdm

        history = []
        bar = tqdm(total=steps, desc=desc, unit="step", disable=not self.progress, leave=False)
        while len(history) < steps:
            for batch in loader:
                history.append(self.step(batch))
                bar.update(1)
                if len(history) % 20 == 0:
                    bar.set_postfix(nll=f"{history[-1]['nll']:.3f}", alpha=f"{history[-1]['alpha']:.2f}")
                if len(history) >= steps:
                    break
        bar.close()
        return history

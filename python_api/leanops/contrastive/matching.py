"""The matching model that scores sampled (context, response) pairs: cosine similarity of sentence
embeddings (by default the real pretrained all-MiniLM-L6-v2 of ``leanops.tome.minilm``), calibrated on
held-out true and random pairs into a score in [-1, 1].

Calibration: a one-feature logistic regression (scikit-learn) of "is this the observed pair" on the
cosine, fitted on as many random pairs as true pairs, so ``p = 0.5`` where true and random are equally
likely; the score is ``2p - 1``. Without it raw cosines would all be positive (MiniLM's cosines of
unrelated short sentences sit around 0.1) and every sampled negative would still be pushed up.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


class MiniLMEmbedder:
    """Unit-norm sentence embeddings from all-MiniLM-L6-v2 (mean pool), batched by length to waste no padding."""

    def __init__(self, batch_size: int = 64, max_length: int = 64):
        from ..tome.minilm import load_minilm

        self.tokenizer, self.model = load_minilm()
        self.batch_size, self.max_length = batch_size, max_length

    @torch.no_grad()
    def __call__(self, texts: list[str], progress: bool = False) -> np.ndarray:
        from ..tome.minilm import embed

        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        starts = range(0, len(texts), self.batch_size)
        if progress:
            from tqdm import tqdm
            starts = tqdm(starts, desc="MiniLM embeddings", unit="batch")
        for s in starts:
            idx = order[s:s + self.batch_size]
            batch = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt")
            out[idx] = embed(self.model, batch).numpy()
        return out


class HashedBagOfWords:
    """A cheap stand-in matcher for tests and timing runs: hashed word counts (md5, stable across processes)."""

    def __init__(self, dim: int = 128):
        self.dim = dim

    def __call__(self, texts: list[str], progress: bool = False) -> np.ndarray:
        import hashlib

        out = np.full((len(texts), self.dim), 1e-3, dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().replace("?", " ").replace(".", " ").replace(",", " ").replace("!", " ").split():
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1
        return out


class TextEmbeddings:
    """Embeds every distinct text once; ``cosine(a, b)`` for aligned lists of texts."""

    def __init__(self, embedder, texts: list[str], progress: bool = False):
        self.texts = sorted(set(texts))
        self.row = {t: i for i, t in enumerate(self.texts)}
        vecs = np.asarray(embedder(self.texts, progress=progress), np.float32)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        self.vectors = vecs / np.maximum(norms, 1e-12)

    def cosine(self, a: list[str], b: list[str]) -> np.ndarray:
        if len(a) != len(b):
            raise ValueError(f"cosine needs aligned lists, got {len(a)} and {len(b)} texts")
        missing = [t for t in list(a) + list(b) if t not in self.row][:3]
        if missing:
            raise KeyError(f"texts were not embedded: {missing}")
        va = self.vectors[[self.row[t] for t in a]]
        vb = self.vectors[[self.row[t] for t in b]]
        return (va * vb).sum(1)


@dataclass(frozen=True)
class Calibration:
    """``score = 2 * sigmoid(weight * cosine + bias) - 1`` in (-1, 1)."""

    weight: float
    bias: float
    auc: float  # how well the cosine separates held-out true from random pairs (0.5 = not at all)

    def __call__(self, cosine) -> np.ndarray:
        z = self.weight * np.asarray(cosine, np.float64) + self.bias
        return (2.0 / (1.0 + np.exp(-z)) - 1.0).astype(np.float32)


def calibrate(true_cos, random_cos) -> Calibration:
    """Fits the score map on cosines of held-out observed pairs and of random pairings."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    t, r = np.asarray(true_cos, np.float64).ravel(), np.asarray(random_cos, np.float64).ravel()
    if len(t) < 2 or len(r) < 2:
        raise ValueError(f"calibration needs at least 2 true and 2 random pairs, got {len(t)} and {len(r)}")
    x = np.concatenate([t, r])[:, None]
    y = np.concatenate([np.ones(len(t)), np.zeros(len(r))])
    w = np.concatenate([np.full(len(t), 0.5 / len(t)), np.full(len(r), 0.5 / len(r))])  # balanced classes
    fit = LogisticRegression(C=1e4).fit(x, y, sample_weight=w * len(y))
    weight, bias = float(fit.coef_[0, 0]), float(fit.intercept_[0])
    if not math.isfinite(weight) or weight <= 0:
        raise ValueError(f"calibration found no positive link between cosine and true pairs (weight {weight}); "
                         f"the matching model does not separate them")
    return Calibration(weight, bias, float(roc_auc_score(y, x[:, 0])))

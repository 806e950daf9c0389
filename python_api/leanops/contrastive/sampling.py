"""Group-wise dual sampling, done once before training.

For each training pair (c, r):
- response side: BM25 (``bm25s``, one index over all training responses) retrieves responses similar to r;
  each candidate r' forms the pair (c, r');
- context side: BM25 over all training contexts retrieves contexts similar to c; each c' forms (c', r).
Every candidate pair is scored by the calibrated matching model. The ``k`` retrieved candidates with the
highest scores are the positives; the ``k`` lowest-scoring among the retrieved candidates and as many
random pairs are the negatives. Candidates whose text equals the anchor's are skipped (they would be the
observed pair again). The result is index arrays and scores, read by ``pipeline.GroupDataset``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import Pair
from .matching import Calibration, TextEmbeddings

SIDES = ("response_pos", "response_neg", "context_pos", "context_neg")


@dataclass
class Groups:
    """For pair i and side s: ``index[s][i]`` the k partner pairs (their response for response sides,
    their context for context sides) and ``score[s][i]`` the calibrated matching scores of the new pairs."""

    index: dict[str, np.ndarray]  # [N, k] int64
    score: dict[str, np.ndarray]  # [N, k] float32 in [-1, 1]
    k: int

    def __len__(self) -> int:
        return len(self.index["response_pos"])


def bm25_neighbours(texts: list[str], k: int, show_progress: bool = False) -> np.ndarray:
    """[N, k] indices of the texts most similar to each text by BM25 (self included when it ranks)."""
    import bm25s

    tokens = bm25s.tokenize(texts, stopwords=None, show_progress=False)
    index = bm25s.BM25()
    index.index(tokens, show_progress=False)
    docs, _ = index.retrieve(tokens, k=min(k, len(texts)), show_progress=show_progress, n_threads=1)
    return np.asarray(docs, dtype=np.int64)


def sample_groups(pairs: list[Pair], embeddings: TextEmbeddings, calibration: Calibration, k: int = 2,
                  candidates: int = 16, seed: int = 0, show_progress: bool = False) -> Groups:
    """Precomputes the group of every pair (see the module docstring); ``candidates`` BM25 hits per side."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if candidates < 2 * k:
        raise ValueError(f"candidates must be >= 2 * k = {2 * k} (positives and negatives come from them), "
                         f"got {candidates}")
    n = len(pairs)
    if n < candidates + 1:
        raise ValueError(f"pairs has {n} pairs; needs more than candidates={candidates}")
    rng = np.random.default_rng(seed)
    contexts = [p.context for p in pairs]
    responses = [p.response for p in pairs]
    index, score = {}, {}
    for side, texts in (("response", responses), ("context", contexts)):
        hits = bm25_neighbours(texts, candidates + 1, show_progress)
        randoms = rng.integers(0, n, size=(n, candidates))
        pos_idx, pos_sc = np.zeros((n, k), np.int64), np.zeros((n, k), np.float32)
        neg_idx, neg_sc = np.zeros((n, k), np.int64), np.zeros((n, k), np.float32)
        for i in range(n):
            def keep(js):
                seen, out = {texts[i]}, []
                for j in js:
                    if texts[j] not in seen:
                        seen.add(texts[j])
                        out.append(int(j))
                return out

            retrieved = keep(hits[i])
            pool = keep(list(hits[i]) + list(randoms[i]))
            if len(pool) < 2 * k:  # a corpus with many repeated texts: widen the random pool
                pool = keep(list(pool) + rng.permutation(n).tolist())
            if len(pool) < 2 * k:
                raise ValueError(f"pairs has fewer than {2 * k} distinct {side} texts besides pair {i}'s")
            if len(retrieved) < k:  # too few distinct hits: fill from the random pool
                retrieved += [j for j in pool if j not in retrieved][:k - len(retrieved)]
            cand = np.array(sorted(set(retrieved) | set(pool)), dtype=np.int64)
            if side == "response":
                s = calibration(embeddings.cosine([contexts[i]] * len(cand), [responses[j] for j in cand]))
            else:
                s = calibration(embeddings.cosine([contexts[j] for j in cand], [responses[i]] * len(cand)))
            by_pair = dict(zip(cand.tolist(), s.tolist()))
            top = sorted(retrieved, key=lambda j: -by_pair[j])[:k]
            bottom = sorted((j for j in pool if j not in top), key=lambda j: by_pair[j])[:k]
            pos_idx[i], pos_sc[i] = top, [by_pair[j] for j in top]
            neg_idx[i], neg_sc[i] = bottom, [by_pair[j] for j in bottom]
        index[f"{side}_pos"], score[f"{side}_pos"] = pos_idx, pos_sc
        index[f"{side}_neg"], score[f"{side}_neg"] = neg_idx, neg_sc
    return Groups(index, score, k)

"""Synthetic CTR data with a known ground truth for the two effects KFAtt targets.

Items belong to categories; a user's history holds items of their interest categories, and, with
probability ``repeat_prob``, one irrelevant item repeated many times (frequent irrelevant behaviours).
A query (candidate item) is *new demand* with probability ``new_demand``: its category is absent from
the history. Every item has a hidden quality u_i. Ground-truth click probability:
    relevant history:  sigmoid(pop_c + 0.5 + 1.5 * mean quality of the distinct relevant items)
    new demand:        sigmoid(pop_c)      (only the category's global popularity: the prior)
so the best predictor reads the relevant behaviours' content, ignores how often an item repeats, and
for new demand falls back on a query-dependent prior instead of a mix of irrelevant behaviours.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class CTRData:
    candidate: torch.Tensor  # [S]
    history: torch.Tensor  # [S, L] padded with 0
    lengths: torch.Tensor  # [S]
    label: torch.Tensor  # [S] float
    true_prob: torch.Tensor  # [S] ground-truth click probability
    new_demand: torch.Tensor  # [S] bool
    item_category: torch.Tensor  # [n_items]

    def split(self, n_train: int):
        a = CTRData(*(t[:n_train] for t in self._rows()), self.item_category)
        b = CTRData(*(t[n_train:] for t in self._rows()), self.item_category)
        return a, b

    def _rows(self):
        return self.candidate, self.history, self.lengths, self.label, self.true_prob, self.new_demand


def generate(samples: int = 30000, new_demand: float = 0.3, repeat_prob: float = 0.5, n_items: int = 2000,
             n_categories: int = 40, seed: int = 0) -> CTRData:
    if not 0.0 <= new_demand <= 1.0 or not 0.0 <= repeat_prob <= 1.0:
        raise ValueError("new_demand and repeat_prob must be in [0, 1]")
    rng = np.random.default_rng(seed)
    item_category = rng.integers(0, n_categories, n_items)
    by_cat = [np.flatnonzero(item_category == c) for c in range(n_categories)]
    popularity = rng.uniform(-2.5, 1.0, n_categories)
    quality = rng.normal(0.0, 1.0, n_items)
    histories, cands, probs, is_new = [], [], [], []
    for _ in range(samples):
        interests = rng.choice(n_categories, size=rng.integers(1, 4), replace=False)
        n_hist = int(np.clip(rng.lognormal(2.3, 0.5), 2, 60))
        hist = [rng.choice(by_cat[rng.choice(interests)]) for _ in range(n_hist)]
        if rng.random() < repeat_prob:  # one irrelevant item, clicked over and over
            other = rng.choice(np.setdiff1d(np.arange(n_categories), interests))
            hist += [rng.choice(by_cat[other])] * int(rng.integers(10, 40))
        rng.shuffle(hist)
        hist_cats = set(item_category[hist].tolist())
        new = rng.random() < new_demand
        if new:
            cat = rng.choice([c for c in range(n_categories) if c not in hist_cats])
            z = popularity[cat]
        else:
            cat = rng.choice([c for c in interests if c in hist_cats])
            relevant = sorted({h for h in hist if item_category[h] == cat})
            z = popularity[cat] + 0.5 + 1.5 * quality[relevant].mean()
        cands.append(rng.choice(by_cat[cat]))
        probs.append(1.0 / (1.0 + np.exp(-z)))
        is_new.append(new)
        histories.append(hist)
    lengths = np.array([len(h) for h in histories])
    padded = np.zeros((samples, lengths.max()), dtype=np.int64)
    for i, h in enumerate(histories):
        padded[i, : len(h)] = h
    probs = np.array(probs)
    labels = (rng.random(samples) < probs).astype(np.float32)
    return CTRData(torch.tensor(np.array(cands)), torch.tensor(padded), torch.tensor(lengths), torch.tensor(labels),
                   torch.tensor(probs, dtype=torch.float32), torch.tensor(is_new), torch.tensor(item_category))

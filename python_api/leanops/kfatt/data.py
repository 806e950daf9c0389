"""Synthetic CTR data with a known ground truth for the two effects KFAtt targets.

The truth follows the probabilistic story KFAtt is derived from, so the best possible predictor is
known in closed form:
- A user's interest in category c is ``a_c ~ N(mu_c, tau^2)``; ``mu_c`` is the category's global
  prior (a function of the query alone). The click probability on an item of c is ``sigmoid(a_c)``.
- Each distinct item the user engaged with in c is a noisy observation ``x = a_c + N(0, sigma^2)``,
  recorded as a feedback bucket (think dwell-time bucket); a behaviour is the pair (item, bucket).
- Frequent behaviours: with probability ``repeat_prob`` the history also holds one item repeated
  10-40 times; its repeats carry no new information (same item, same feedback). Half of the time
  the item is from one of the user's categories, half of the time from an unrelated one.
- New demand: with probability ``new_demand`` the query's category is absent from the history, so
  the best estimate of the user's interest is the prior ``mu_c``.
- Users: each user (``user`` id) has one history and several impressions (``impressions``, a range),
  each with its own query, so per-user AUC (GAUC) is meaningful. ``impressions=(1, 1)`` draws exactly
  the data of the earlier one-impression-per-user generator.

The Bayes-optimal predictor (``bayes_prob``) shrinks the mean of the relevant *distinct* feedbacks
towards the prior, ``E[a] = (mu/tau^2 + sum x/sigma^2) / (1/tau^2 + n/sigma^2)``, and integrates the
sigmoid over the posterior; its AUC is the ceiling a model can reach. Softmax pooling without a prior
cannot shrink (it averages) and counts repeats n times; that is what KFAtt-base and -freq fix.
This generator favours KFAtt by construction; ``leanops.kfatt.din_data`` draws data under DIN's
assumption instead.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

FEEDBACK_RANGE = (-4.0, 3.0)  # feedback buckets cover this range of x; the ends are open


@dataclass
class CTRData:
    candidate: torch.Tensor  # [S] item ids
    history: torch.Tensor  # [S, L] behaviour ids (item * n_feedback + bucket), padded with 0
    lengths: torch.Tensor  # [S]
    label: torch.Tensor  # [S] float
    true_prob: torch.Tensor  # [S] the click probability the label is drawn from
    bayes_prob: torch.Tensor  # [S] the Bayes-optimal prediction from the data: the reachable ceiling
    new_demand: torch.Tensor  # [S] bool: the query's category is absent from the history
    user: torch.Tensor  # [S] int64 user id (impressions of one user are consecutive and share a history)
    item_category: torch.Tensor  # [n_items]
    n_feedback: int = 1

    def split(self, n_train: int):
        a = CTRData(*(t[:n_train] for t in self._rows()), self.item_category, self.n_feedback)
        b = CTRData(*(t[n_train:] for t in self._rows()), self.item_category, self.n_feedback)
        return a, b

    def _rows(self):
        return (self.candidate, self.history, self.lengths, self.label, self.true_prob, self.bayes_prob,
                self.new_demand, self.user)


def feedback_bucket(x: np.ndarray, n_feedback: int) -> np.ndarray:
    lo, hi = FEEDBACK_RANGE
    return np.clip(np.floor((x - lo) / (hi - lo) * n_feedback), 0, n_feedback - 1).astype(np.int64)


def feedback_value(bucket: np.ndarray, n_feedback: int) -> np.ndarray:
    """The value a bucket stands for (its centre): what the Bayes-optimal predictor reads."""
    lo, hi = FEEDBACK_RANGE
    return lo + (bucket + 0.5) * (hi - lo) / n_feedback


_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(24)  # E[f(Z)], Z ~ N(0, 1)


def posterior_click_prob(mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    """E[sigmoid(a)] for a ~ N(mean, var), by Gauss-Hermite quadrature."""
    a = mean[..., None] + np.sqrt(var)[..., None] * _GH_X
    return (1.0 / (1.0 + np.exp(-a))) @ _GH_W / _GH_W.sum()


def check_common(new_demand, repeat_prob, n_items, n_categories, impressions):
    """Argument checks shared by both generators."""
    if not 0.0 <= new_demand <= 1.0 or not 0.0 <= repeat_prob <= 1.0:
        raise ValueError("new_demand and repeat_prob must be in [0, 1]")
    if n_categories < 7 or n_items < n_categories:
        raise ValueError(f"need n_categories >= 7 and n_items >= n_categories, got {n_categories}, {n_items}")
    if len(impressions) != 2 or not 1 <= impressions[0] <= impressions[1]:
        raise ValueError(f"impressions must be a range (lo, hi) with 1 <= lo <= hi, got {impressions!r}")


def impressions_of_user(rng, impressions, left: int) -> int:
    lo, hi = impressions
    n = lo if lo == hi else int(rng.integers(lo, hi + 1))  # no draw for a fixed count: (1, 1) keeps the old stream
    return min(n, left)


def pack(histories, candidates, truth, bayes, is_new, users, labels, item_category, n_feedback) -> CTRData:
    """Lists per impression -> CTRData (histories padded with 0 to the longest)."""
    lengths = np.array([len(h) for h in histories])
    padded = np.zeros((len(histories), max(1, lengths.max(initial=0))), dtype=np.int64)
    for i, h in enumerate(histories):
        padded[i, : len(h)] = h
    f32 = dict(dtype=torch.float32)
    return CTRData(torch.tensor(np.array(candidates, dtype=np.int64)), torch.tensor(padded), torch.tensor(lengths),
                   torch.tensor(labels, **f32), torch.tensor(np.asarray(truth), **f32),
                   torch.tensor(np.asarray(bayes), **f32), torch.tensor(np.array(is_new, dtype=bool)),
                   torch.tensor(np.array(users, dtype=np.int64)), torch.tensor(item_category), n_feedback)


def generate(samples: int = 30000, new_demand: float = 0.3, repeat_prob: float = 0.5, n_items: int = 100,
             n_categories: int = 20, n_feedback: int = 16, tau: float = 1.0, sigma: float = 1.0,
             impressions=(4, 12), seed: int = 0) -> CTRData:
    check_common(new_demand, repeat_prob, n_items, n_categories, impressions)
    rng = np.random.default_rng(seed)
    item_category = np.concatenate([np.arange(n_categories), rng.integers(0, n_categories, n_items - n_categories)])
    by_cat = [np.flatnonzero(item_category == c) for c in range(n_categories)]
    prior_mean = rng.normal(-0.5, 1.0, n_categories)
    histories, cands, truth, mean, var, is_new, users = [], [], [], [], [], [], []
    user = 0
    while len(cands) < samples:
        interests = rng.choice(n_categories, size=int(rng.integers(1, 6)), replace=False)
        affinity = prior_mean + tau * rng.normal(size=n_categories)  # the user's interest in every category
        hist = []  # (item, x) per distinct item
        for c in interests:
            for item in rng.choice(by_cat[c], size=min(len(by_cat[c]), int(rng.integers(1, 5))), replace=False):
                hist.append((int(item), affinity[c] + sigma * rng.normal()))
        events = list(range(len(hist)))  # indices into hist; a repeated item adds more of the same index
        if rng.random() < repeat_prob:
            pool = interests if rng.random() < 0.5 else np.setdiff1d(np.arange(n_categories), interests)
            c = int(rng.choice(pool))
            item = int(rng.choice(by_cat[c]))
            if item not in [h[0] for h in hist]:
                hist.append((item, affinity[c] + sigma * rng.normal()))
            idx = [h[0] for h in hist].index(item)
            events += [idx] * int(rng.integers(10, 41))
        rng.shuffle(events)
        hist_cats = {int(item_category[h[0]]) for h in hist}
        buckets = feedback_bucket(np.array([h[1] for h in hist]), n_feedback)
        history = [hist[i][0] * n_feedback + int(buckets[i]) for i in events]
        for _ in range(impressions_of_user(rng, impressions, samples - len(cands))):
            new = rng.random() < new_demand
            if new:
                cat = int(rng.choice([c for c in range(n_categories) if c not in hist_cats]))
            else:
                cat = int(rng.choice(interests))
            seen = feedback_value(buckets[[int(item_category[h[0]]) == cat for h in hist]], n_feedback)
            precision = 1.0 / tau ** 2 + len(seen) / sigma ** 2  # posterior over a_cat from the distinct items
            mean.append((prior_mean[cat] / tau ** 2 + seen.sum() / sigma ** 2) / precision)
            var.append(1.0 / precision)
            cands.append(rng.choice(by_cat[cat]))
            truth.append(1.0 / (1.0 + np.exp(-affinity[cat])))
            is_new.append(new)
            users.append(user)
            histories.append(history)
        user += 1
    truth = np.array(truth)
    labels = (rng.random(samples) < truth).astype(np.float32)
    bayes = posterior_click_prob(np.array(mean), np.array(var))
    return pack(histories, cands, truth, bayes, is_new, users, labels, item_category, n_feedback)

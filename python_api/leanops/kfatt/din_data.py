"""Synthetic CTR data under DIN's assumption, not KFAtt's, with a known ground truth.

DIN (Zhou et al., KDD 2018) pools a user's behaviours by an attention-weighted *sum* (its weights are
not normalised, "to reserve the intensity of user interests"). Here the click is driven by exactly that:
- A user's affinity to category c is ``a_c ~ N(0, 1)``, the same law for every category: there is no
  category prior, and nothing to shrink towards.
- Each item the user engaged with in c has a feedback ``x = a_c + N(0, sigma^2)``, recorded as a bucket
  (the behaviour is the pair (item, bucket), as in ``leanops.kfatt.data``); its value ``u`` (the bucket's
  centre) is what the click model reads, so the click probability is a function of the data.
- Repeats: with probability ``repeat_prob`` one item (of one of the user's categories or, half of the
  time, an unrelated one) is engaged with ``repeats`` (a range) more times, with the same feedback.
  Every occurrence counts: engaging often is evidence of a stronger interest (no frequency discount).
- Click logit on a candidate of category c: ``bias + scale * sum_t r(c, c_t) * u_t`` over every
  behaviour occurrence t, with relevance ``r = 1`` for the same category, ``neighbour`` for the two
  adjacent categories (c ± 1 mod C) and 0 otherwise. More relevant behaviours give a stronger signal;
  a query with no relevant behaviour gets ``sigmoid(bias)`` whatever its category (no prior).
- New demand: with probability ``new_demand`` the candidate's category is absent from the history
  (adjacent categories may still be there and carry signal).
- Users: each user has one history and several impressions (``impressions``, a range), each with its
  own candidate, so per-user AUC (GAUC) is meaningful.

The click probability is computable from the data, so it is also the Bayes-optimal prediction
(``bayes_prob == true_prob``): its AUC is the ceiling a model can reach.
"""
from __future__ import annotations

import numpy as np

from .data import CTRData, check_common, feedback_bucket, feedback_value, impressions_of_user, pack


def relevance(n_categories: int, neighbour: float) -> np.ndarray:
    """[query category, behaviour category] DIN-style attention weight: 1 same category, ``neighbour``
    for the two adjacent ones (c ± 1 mod C), 0 otherwise."""
    c = np.arange(n_categories)
    gap = np.abs(c[:, None] - c[None, :])
    gap = np.minimum(gap, n_categories - gap)
    return np.where(gap == 0, 1.0, np.where(gap == 1, neighbour, 0.0))


def click_logits(behaviour_cats: np.ndarray, values: np.ndarray, weights: np.ndarray, scale: float,
                 bias: float) -> np.ndarray:
    """The true click logit for a candidate of every category: bias + scale * the attention-weighted sum
    of the values of every behaviour occurrence (``weights`` from ``relevance``)."""
    return bias + scale * (weights[:, behaviour_cats] @ values)


def pick(rng, values: np.ndarray):
    """One uniform element (``rng.choice`` costs ~10x more per call on small arrays)."""
    return values[rng.integers(len(values))]


def generate_din(samples: int = 30000, new_demand: float = 0.3, repeat_prob: float = 0.5, n_items: int = 100,
                 n_categories: int = 20, n_feedback: int = 16, sigma: float = 0.5, scale: float = 0.5,
                 neighbour: float = 0.5, bias: float = -0.5, repeats=(2, 8), impressions=(4, 12),
                 seed: int = 0) -> CTRData:
    check_common(new_demand, repeat_prob, n_items, n_categories, impressions)
    if len(repeats) != 2 or not 1 <= repeats[0] <= repeats[1]:
        raise ValueError(f"repeats must be a range (lo, hi) with 1 <= lo <= hi, got {repeats!r}")
    rng = np.random.default_rng(seed)
    item_category = np.concatenate([np.arange(n_categories), rng.integers(0, n_categories, n_items - n_categories)])
    by_cat = [np.flatnonzero(item_category == c) for c in range(n_categories)]
    weights = relevance(n_categories, neighbour)
    histories, cands, truth, is_new, users = [], [], [], [], []
    user = 0
    while len(cands) < samples:
        interests = rng.choice(n_categories, size=int(rng.integers(1, 6)), replace=False)
        affinity = rng.normal(size=n_categories)  # one law for every category: no prior to learn
        items = [int(i) for c in interests
                 for i in rng.choice(by_cat[c], size=min(len(by_cat[c]), int(rng.integers(1, 5))), replace=False)]
        if rng.random() < repeat_prob:  # one item engaged with again, several times
            pool = interests if rng.random() < 0.5 else np.setdiff1d(np.arange(n_categories), interests)
            item = int(pick(rng, by_cat[int(pick(rng, pool))]))
            items += [item] * int(rng.integers(repeats[0], repeats[1] + 1))
        distinct = sorted(set(items))
        bucket_of = dict(zip(distinct, feedback_bucket(
            affinity[item_category[distinct]] + sigma * rng.normal(size=len(distinct)), n_feedback)))
        rng.shuffle(items)
        cats = item_category[items]
        values = feedback_value(np.array([bucket_of[i] for i in items]), n_feedback)
        history = [i * n_feedback + int(bucket_of[i]) for i in items]
        prob = 1.0 / (1.0 + np.exp(-click_logits(cats, values, weights, scale, bias)))  # per candidate category
        absent = np.setdiff1d(np.arange(n_categories), cats)
        for _ in range(impressions_of_user(rng, impressions, samples - len(cands))):
            new = rng.random() < new_demand
            if new:
                cat = int(pick(rng, absent))
            else:
                cat = int(pick(rng, interests))
            cands.append(int(pick(rng, by_cat[cat])))
            truth.append(prob[cat])
            is_new.append(new)
            users.append(user)
            histories.append(history)
        user += 1
    truth = np.array(truth)
    labels = (rng.random(samples) < truth).astype(np.float32)
    return pack(histories, cands, truth, truth, is_new, users, labels, item_category, n_feedback)


__all__ = ["generate_din", "click_logits", "relevance", "CTRData"]

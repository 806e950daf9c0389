"""Multi-scene CTR data with a known ground truth (every click probability is a function of the features).

- Scenes: ``n_scenes`` (default 20) with long-tail traffic, ``P(scene of rank r) ~ r^-zipf``; a scene's
  traffic rank is unrelated to its behaviour.
- Users: a user group ``g`` (``n_groups`` values, a categorical feature) and 2 interest categories; the
  behaviour history (5-30 items) draws each item from an interest category with probability 0.8, else
  from any category.
- Candidate: an item from an interest category with probability 0.5, else from any category.
- Click model. A shared user-item preference
  ``f0 = kappa * (log(1 + n_c) - 1) + A0[g, c]`` (``n_c``: history items in the candidate's category ``c``;
  ``A0``: a group x category taste shared by every scene), and per scene
  ``f_s = rho_s * f0 + sqrt(1 - rho_s^2) * E_s[g, c]``, ``E_s`` the scene's own taste. ``rho_s`` (scene's
  closeness to the common behaviour) is spread evenly over ``rho_range`` (default 1 down to -0.6): scenes
  with rho near 1 behave like the common behaviour, those with rho < 0 conflict with it.
  ``P(click) = sigmoid(base_s + pop_i + f_s)``, with a scene base rate ``base_s`` and an item popularity
  ``pop_i`` shared by all scenes.
Since the features (scene, group, item, history) determine the probability, the Bayes-optimal predictor
is the true probability itself (``bayes_prob``), and its AUC per scene is the ceiling.
The generator does not favour DADNN: where rho_s < 0, sharing across scenes is harmful, and the
per-scene parts ``E_s`` are as strong as the shared part.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch


@dataclass
class SceneData:
    scene: torch.Tensor  # [N] int64
    user: torch.Tensor  # [N, 1] int64: the user group
    item: torch.Tensor  # [N] int64 candidate item
    history: torch.Tensor  # [N, L] int64 behaviour item ids, padded with 0
    lengths: torch.Tensor  # [N] int64
    label: torch.Tensor  # [N] float32
    bayes_prob: torch.Tensor  # [N] float32: the true click probability = the Bayes-optimal prediction
    item_category: torch.Tensor  # [n_items]
    scene_rho: torch.Tensor  # [S] closeness of each scene's behaviour to the common one
    scene_traffic: torch.Tensor  # [S] traffic share of each scene
    n_groups: int

    ROWS = ("scene", "user", "item", "history", "lengths", "label", "bayes_prob")

    def __len__(self) -> int:
        return self.scene.shape[0]

    @property
    def n_scenes(self) -> int:
        return self.scene_rho.shape[0]

    def subset(self, idx) -> "SceneData":
        """The rows ``idx`` (a slice, index tensor or bool mask); history trimmed to the longest kept row."""
        rows = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in self.ROWS:
            rows[name] = rows[name][idx]
        width = int(rows["lengths"].max()) if rows["lengths"].numel() else 1
        rows["history"] = rows["history"][:, : max(1, width)]
        return SceneData(**rows)

    def split(self, train_fraction: float = 0.75):
        n = int(len(self) * train_fraction)
        return self.subset(slice(0, n)), self.subset(slice(n, len(self)))

    def model_inputs(self, idx=None):
        """(scene, user, item, history[T], offsets[B+1]) for the rows ``idx`` (all rows if None)."""
        part = self if idx is None else self.subset(idx)
        mask = torch.arange(part.history.shape[1])[None, :] < part.lengths[:, None]
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), part.lengths.cumsum(0)])
        return part.scene, part.user, part.item, part.history[mask], offsets


def zipf_traffic(n_scenes: int, zipf: float) -> np.ndarray:
    w = np.arange(1, n_scenes + 1, dtype=np.float64) ** -zipf
    return w / w.sum()


def generate(samples: int = 60000, n_scenes: int = 20, zipf: float = 1.1, n_groups: int = 4,
             n_categories: int = 10, items_per_category: int = 10, kappa: float = 1.0, taste_scale: float = 1.0,
             rho_range=(1.0, -0.6), seed: int = 0) -> SceneData:
    if isinstance(n_scenes, bool) or not isinstance(n_scenes, int) or n_scenes < 1:
        raise ValueError(f"n_scenes must be an int >= 1, got {n_scenes!r}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples!r}")
    if zipf < 0:
        raise ValueError(f"zipf must be >= 0, got {zipf!r}")
    if not all(-1.0 <= r <= 1.0 for r in rho_range) or len(rho_range) != 2:
        raise ValueError(f"rho_range must be two values in [-1, 1], got {rho_range!r}")
    if n_categories < 2 or items_per_category < 1 or n_groups < 1:
        raise ValueError("need n_categories >= 2, items_per_category >= 1 and n_groups >= 1")
    rng = np.random.default_rng(seed)
    n_items = n_categories * items_per_category
    item_category = np.repeat(np.arange(n_categories), items_per_category)
    traffic = zipf_traffic(n_scenes, zipf)
    rho = rng.permutation(np.linspace(rho_range[0], rho_range[1], n_scenes))  # unrelated to traffic rank
    base = rng.uniform(-2.0, -0.5, n_scenes)
    pop = 0.3 * rng.normal(size=n_items)
    shared_taste = taste_scale * rng.normal(size=(n_groups, n_categories))
    own_taste = taste_scale * rng.normal(size=(n_scenes, n_groups, n_categories))

    scene = rng.choice(n_scenes, size=samples, p=traffic)
    group = rng.integers(0, n_groups, samples)
    interests = np.stack([rng.integers(0, n_categories, samples), rng.integers(0, n_categories, samples)], 1)
    lengths = rng.integers(5, 31, samples)
    width = int(lengths.max())
    from_interest = rng.random((samples, width)) < 0.8
    hist_cat = np.where(from_interest, interests[np.arange(samples)[:, None], rng.integers(0, 2, (samples, width))],
                        rng.integers(0, n_categories, (samples, width)))
    history = hist_cat * items_per_category + rng.integers(0, items_per_category, (samples, width))
    valid = np.arange(width)[None, :] < lengths[:, None]
    history = np.where(valid, history, 0)
    cand_cat = np.where(rng.random(samples) < 0.5, interests[np.arange(samples), rng.integers(0, 2, samples)],
                        rng.integers(0, n_categories, samples))
    item = cand_cat * items_per_category + rng.integers(0, items_per_category, samples)

    n_c = ((hist_cat == cand_cat[:, None]) & valid).sum(1)
    common = kappa * (np.log1p(n_c) - 1.0) + shared_taste[group, cand_cat]
    r = rho[scene]
    scene_logit = r * common + np.sqrt(1.0 - r ** 2) * own_taste[scene, group, cand_cat]
    prob = 1.0 / (1.0 + np.exp(-(base[scene] + pop[item] + scene_logit)))
    label = (rng.random(samples) < prob).astype(np.float32)
    t = lambda a, dt=torch.long: torch.tensor(a, dtype=dt)  # noqa: E731
    return SceneData(t(scene), t(group[:, None]), t(item), t(history), t(lengths), t(label, torch.float32),
                     t(prob, torch.float32), t(item_category), t(rho, torch.float32), t(traffic, torch.float32),
                     n_groups)

"""Train and evaluate CTR models with DIN or KFAtt pooling on the synthetic ground-truth data."""
from __future__ import annotations

import torch

from .data import CTRData, generate
from .model import CTRModel


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve (rank statistic, ties averaged)."""
    labels = labels.bool()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = torch.argsort(scores)
    ranks = torch.empty_like(scores, dtype=torch.float64)
    sorted_scores = scores[order]
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    # average the ranks of tied scores
    uniq, inverse, counts = torch.unique(sorted_scores, return_inverse=True, return_counts=True)
    if len(uniq) < len(scores):
        sums = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inverse, ranks[order])
        ranks[order] = (sums / counts)[inverse]
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def train_model(train: CTRData, pooling: str, epochs: int = 3, batch: int = 256, lr: float = 3e-3, seed: int = 0,
                progress=None) -> CTRModel:
    torch.manual_seed(seed)
    model = CTRModel(train.item_category, pooling)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = train.label.shape[0]
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n, batch):
            idx = perm[start:start + batch]
            lengths = train.lengths[idx]
            hist = train.history[idx, : int(lengths.max())]
            logit = model(train.candidate[idx], hist, lengths)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, train.label[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if progress is not None:
            progress.update(1)
    return model


@torch.no_grad()
def predict(model: CTRModel, data: CTRData, batch: int = 2048) -> torch.Tensor:
    model.eval()
    out = []
    for start in range(0, data.label.shape[0], batch):
        sl = slice(start, start + batch)
        lengths = data.lengths[sl]
        out.append(model(data.candidate[sl], data.history[sl, : int(lengths.max())], lengths))
    model.train()
    return torch.cat(out)


def experiment(new_demand_fractions=(0.0, 0.3, 0.6), repeat_probs=(0.0, 0.6), poolings=("din", "din_norm",
               "kfatt_base", "kfatt_freq"), seeds=(0, 1, 2), samples=24000, epochs=3, progress=None):
    """Test AUC of every pooling, seed and data setting; also the ground truth's own AUC (the ceiling)."""
    rows = []
    for frac in new_demand_fractions:
        for rep in repeat_probs:
            for seed in seeds:
                data = generate(samples, new_demand=frac, repeat_prob=rep, seed=1000 + seed)
                train, test = data.split(int(samples * 0.75))
                ceiling = auc(test.true_prob, test.label)
                new = test.new_demand
                for pooling in poolings:
                    model = train_model(train, pooling, epochs=epochs, seed=seed)
                    scores = predict(model, test)
                    rows.append({"new_demand": frac, "repeat_prob": rep, "seed": seed, "pooling": pooling,
                                 "auc": auc(scores, test.label), "ground_truth_auc": ceiling,
                                 # AUC on the new-demand queries alone: where KFAtt's prior should matter
                                 "auc_new_demand": auc(scores[new], test.label[new]) if bool(new.any()) else None})
                    if progress is not None:
                        progress.update(1)
    return rows


def summarise(rows, key: str = "auc"):
    """Mean and std over seeds of ``key`` ('auc' or 'auc_new_demand') per (setting, pooling)."""
    groups: dict = {}
    for r in rows:
        if r.get(key) is None:
            continue
        groups.setdefault((r["new_demand"], r["repeat_prob"], r["pooling"]), []).append(r[key])
        if key == "auc":
            groups.setdefault((r["new_demand"], r["repeat_prob"], "ground truth"), []).append(r["ground_truth_auc"])
    out = []
    for (frac, rep, pooling), vals in groups.items():
        t = torch.tensor(vals, dtype=torch.float64)
        out.append({"new_demand": frac, "repeat_prob": rep, "pooling": pooling, "auc_mean": float(t.mean()),
                    "auc_std": float(t.std()) if len(vals) > 1 else 0.0, "runs": len(vals)})
    return out


def plot(summary, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reps = sorted({r["repeat_prob"] for r in summary})
    fig, axes = plt.subplots(1, len(reps), figsize=(6 * len(reps), 4.5), squeeze=False)
    for ax, rep in zip(axes[0], reps):
        for pooling in sorted({r["pooling"] for r in summary}):
            pts = sorted((r["new_demand"], r["auc_mean"], r["auc_std"]) for r in summary
                         if r["repeat_prob"] == rep and r["pooling"] == pooling)
            xs, ys, es = zip(*pts)
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=pooling,
                        linestyle="--" if pooling == "ground truth" else "-")
        ax.set_xlabel("fraction of new-demand queries")
        ax.set_ylabel("test AUC")
        ax.set_title(f"repeated irrelevant behaviours: p = {rep}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

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
                progress=None, **model_kwargs) -> CTRModel:
    """Adam on the click log-loss; ``model_kwargs`` go to ``CTRModel`` (embed_dim, heads, mlp)."""
    torch.manual_seed(seed)
    model = CTRModel(train.item_category, pooling, n_feedback=train.n_feedback, **model_kwargs)
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
               "kfatt_base", "kfatt_freq"), seeds=(0, 1, 2), samples=60000, epochs=4, progress=None, **model_kwargs):
    """Test AUC of every pooling, seed and data setting, overall and on the new-demand and relevant-history
    queries apart; also the Bayes-optimal predictor's AUC (the reachable ceiling)."""
    rows = []
    for frac in new_demand_fractions:
        for rep in repeat_probs:
            for seed in seeds:
                data = generate(samples, new_demand=frac, repeat_prob=rep, seed=1000 + seed)
                train, test = data.split(int(samples * 0.75))
                new = test.new_demand

                def subset_aucs(scores):
                    return {"auc": auc(scores, test.label),
                            "auc_new_demand": auc(scores[new], test.label[new]) if bool(new.any()) else None,
                            "auc_relevant": auc(scores[~new], test.label[~new]) if bool((~new).any()) else None}

                rows.append({"new_demand": frac, "repeat_prob": rep, "seed": seed, "pooling": "bayes optimal",
                             **subset_aucs(test.bayes_prob)})
                for pooling in poolings:
                    model = train_model(train, pooling, epochs=epochs, seed=seed, **model_kwargs)
                    rows.append({"new_demand": frac, "repeat_prob": rep, "seed": seed, "pooling": pooling,
                                 **subset_aucs(predict(model, test))})
                    if progress is not None:
                        progress.update(1)
    return rows


def summarise(rows, key: str = "auc"):
    """Mean and std over seeds of ``key`` ('auc', 'auc_new_demand' or 'auc_relevant') per (setting, pooling)."""
    groups: dict = {}
    for r in rows:
        if r.get(key) is not None:
            groups.setdefault((r["new_demand"], r["repeat_prob"], r["pooling"]), []).append(r[key])
    out = []
    for (frac, rep, pooling), vals in groups.items():
        t = torch.tensor(vals, dtype=torch.float64)
        out.append({"new_demand": frac, "repeat_prob": rep, "pooling": pooling, "auc_mean": float(t.mean()),
                    "auc_std": float(t.std()) if len(vals) > 1 else 0.0, "runs": len(vals)})
    return out


def paired_gains(rows, pooling: str, baseline: str, key: str = "auc"):
    """Per setting: ``pooling``'s AUC minus ``baseline``'s on the same data and seed, mean, std, and how
    many seeds it wins (the seeds share data between poolings, so the pairs remove data noise)."""
    by = {(r["new_demand"], r["repeat_prob"], r["seed"], r["pooling"]): r[key] for r in rows if r.get(key) is not None}
    settings = sorted({(f, rep) for f, rep, _, p in by if p == pooling})
    out = []
    for frac, rep in settings:
        diffs = [by[(frac, rep, s, pooling)] - by[(frac, rep, s, baseline)]
                 for f, r_, s, p in by if (f, r_, p) == (frac, rep, pooling) and (frac, rep, s, baseline) in by]
        t = torch.tensor(diffs, dtype=torch.float64)
        out.append({"new_demand": frac, "repeat_prob": rep, "pooling": pooling, "baseline": baseline,
                    "gain_mean": float(t.mean()), "gain_std": float(t.std()) if len(diffs) > 1 else 0.0,
                    "wins": int((t > 0).sum()), "runs": len(diffs)})
    return out


def plot(summary, path, gains=None):
    """AUC against the new-demand fraction, a panel per repeat probability; with ``gains`` (from
    ``paired_gains``) one more panel per repeat probability with the paired gains over DIN."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reps = sorted({r["repeat_prob"] for r in summary})
    n_rows = 2 if gains else 1
    fig, axes = plt.subplots(n_rows, len(reps), figsize=(6 * len(reps), 4.5 * n_rows), squeeze=False)
    for ax, rep in zip(axes[0], reps):
        for pooling in sorted({r["pooling"] for r in summary}):
            pts = sorted((r["new_demand"], r["auc_mean"], r["auc_std"]) for r in summary
                         if r["repeat_prob"] == rep and r["pooling"] == pooling)
            xs, ys, es = zip(*pts)
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=pooling,
                        linestyle="--" if pooling == "bayes optimal" else "-")
        ax.set_xlabel("fraction of new-demand queries")
        ax.set_ylabel("test AUC (mean ± std over seeds)")
        ax.set_title(f"histories with a repeated behaviour: p = {rep}")
        ax.legend()
    for ax, rep in zip(axes[1] if gains else [], reps):
        for pair in sorted({(g["pooling"], g["baseline"]) for g in gains}):
            pts = sorted((g["new_demand"], g["gain_mean"], g["gain_std"]) for g in gains
                         if g["repeat_prob"] == rep and (g["pooling"], g["baseline"]) == pair)
            xs, ys, es = zip(*pts)
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=f"{pair[0]} - {pair[1]}")
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_xlabel("fraction of new-demand queries")
        ax.set_ylabel("AUC gain, same data and seed")
        ax.set_title(f"KFAtt's paired gain over DIN: p = {rep}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

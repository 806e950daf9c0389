"""Train and evaluate CTR models with DIN or KFAtt pooling on the synthetic ground-truth data."""
from __future__ import annotations

import torch

from .data import CTRData, generate
from .din_data import generate_din
from .metrics import auc, gauc
from .model import CTRModel

GENERATORS = {"kfatt": generate, "din": generate_din}  # KFAtt's own model; DIN's assumption


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


def evaluate(scores: torch.Tensor, test: CTRData) -> dict:
    """AUC overall, on new-demand queries and on queries with relevant history, and GAUC."""
    new = test.new_demand
    return {"auc": auc(scores, test.label),
            "auc_new_demand": auc(scores[new], test.label[new]) if bool(new.any()) else None,
            "auc_relevant": auc(scores[~new], test.label[~new]) if bool((~new).any()) else None,
            "gauc": gauc(scores, test.label, test.user)}


def experiment(settings=((0.0, 0.0), (0.0, 0.6), (0.5, 0.6)), poolings=("din", "din_norm", "kfatt_base",
               "kfatt_freq"), seeds=(0, 1, 2), samples=30000, epochs=4, generator="kfatt", progress=None,
               **model_kwargs):
    """Test metrics (``evaluate``) of every pooling, seed and data setting ``(new_demand, repeat_prob)``,
    and of the Bayes-optimal predictor (the reachable ceiling). Seed s draws the data with seed 1000 + s
    (the same data for every pooling) and initialises and shuffles the models with s. ``generator``:
    'kfatt' (KFAtt's own probabilistic model) or 'din' (DIN's assumption)."""
    if generator not in GENERATORS:
        raise ValueError(f"generator must be one of {sorted(GENERATORS)}, got {generator!r}")
    rows = []
    for frac, rep in settings:
        for seed in seeds:
            data = GENERATORS[generator](samples, new_demand=frac, repeat_prob=rep, seed=1000 + seed)
            train, test = data.split(int(samples * 0.75))
            key = {"generator": generator, "new_demand": frac, "repeat_prob": rep, "seed": seed}
            rows.append({**key, "pooling": "bayes optimal", **evaluate(test.bayes_prob, test)})
            for pooling in poolings:
                model = train_model(train, pooling, epochs=epochs, seed=seed, **model_kwargs)
                rows.append({**key, "pooling": pooling, **evaluate(predict(model, test), test)})
                if progress is not None:
                    progress.update(1)
    return rows


def summarise(rows, key: str = "auc"):
    """Mean and std over seeds of the metric ``key`` ('auc', 'auc_new_demand', 'auc_relevant' or 'gauc')
    per (setting, pooling)."""
    groups: dict = {}
    for r in rows:
        if r.get(key) is not None:
            groups.setdefault((r["new_demand"], r["repeat_prob"], r["pooling"]), []).append(r[key])
    out = []
    for (frac, rep, pooling), vals in groups.items():
        t = torch.tensor(vals, dtype=torch.float64)
        out.append({"new_demand": frac, "repeat_prob": rep, "pooling": pooling, "metric": key,
                    "mean": float(t.mean()), "std": float(t.std()) if len(vals) > 1 else 0.0, "runs": len(vals)})
    return out


def paired_gains(rows, pooling: str, baseline: str, key: str = "auc"):
    """Per setting: ``pooling``'s metric ``key`` minus ``baseline``'s on the same data and seed, mean, std,
    and how many seeds it wins (the seeds share data between poolings, so the pairs remove data noise)."""
    by = {(r["new_demand"], r["repeat_prob"], r["seed"], r["pooling"]): r[key] for r in rows if r.get(key) is not None}
    settings = sorted({(f, rep) for f, rep, _, p in by if p == pooling})
    out = []
    for frac, rep in settings:
        diffs = [by[(frac, rep, s, pooling)] - by[(frac, rep, s, baseline)]
                 for f, r_, s, p in by if (f, r_, p) == (frac, rep, pooling) and (frac, rep, s, baseline) in by]
        t = torch.tensor(diffs, dtype=torch.float64)
        out.append({"new_demand": frac, "repeat_prob": rep, "pooling": pooling, "baseline": baseline, "metric": key,
                    "gain_mean": float(t.mean()), "gain_std": float(t.std()) if len(diffs) > 1 else 0.0,
                    "wins": int((t > 0).sum()), "runs": len(diffs)})
    return out


def plot(summaries, gains, path, title=""):
    """One column per metric (``summaries``: {metric: ``summarise`` rows}): the metric per data setting and
    pooling (mean ± std over seeds) on top, KFAtt's paired gains over DIN (``gains``: ``paired_gains``
    rows of every metric) below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(summaries)
    settings = sorted({(r["new_demand"], r["repeat_prob"]) for rows in summaries.values() for r in rows})
    x = {s: i for i, s in enumerate(settings)}
    labels = [f"new demand {f:g}\nrepeats {r:g}" for f, r in settings]
    fig, axes = plt.subplots(2, len(metrics), figsize=(6.5 * len(metrics), 9), squeeze=False)
    for col, metric in enumerate(metrics):
        name = metric.upper().replace("_", " ")
        ax = axes[0, col]
        poolings = sorted({r["pooling"] for r in summaries[metric]})
        for j, pooling in enumerate(poolings):
            pts = [(x[(r["new_demand"], r["repeat_prob"])], r["mean"], r["std"]) for r in summaries[metric]
                   if r["pooling"] == pooling]
            xs, ys, es = zip(*sorted(pts))
            ax.errorbar([v + 0.1 * (j - (len(poolings) - 1) / 2) for v in xs], ys, yerr=es, marker="o", capsize=3,
                        linestyle="none", label=pooling, mfc="none" if pooling == "bayes optimal" else None)
        ax.set_ylabel(f"test {name} (mean ± std over seeds)")
        ax.set_title(f"{title}{name}")
        ax = axes[1, col]
        pairs = sorted({(g["pooling"], g["baseline"]) for g in gains if g["metric"] == metric})
        for j, pair in enumerate(pairs):
            pts = [(x[(g["new_demand"], g["repeat_prob"])], g["gain_mean"], g["gain_std"]) for g in gains
                   if g["metric"] == metric and (g["pooling"], g["baseline"]) == pair]
            xs, ys, es = zip(*sorted(pts))
            ax.errorbar([v + 0.1 * (j - (len(pairs) - 1) / 2) for v in xs], ys, yerr=es, marker="o", capsize=3,
                        linestyle="none", label=f"{pair[0]} - {pair[1]}")
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_ylabel(f"{name} gain, same data and seed")
        ax.set_title(f"{title}KFAtt's paired {name} gain over DIN")
        for ax in axes[:, col]:
            ax.set_xticks(range(len(settings)), labels)
            ax.set_xlim(-0.5, len(settings) - 0.5)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)

"""``python -m leanops.kfatt.experiment``: DIN vs KFAtt CTR models on ground-truth data, several seeds.

Sweeps the fraction of new-demand queries, with and without frequently repeated behaviours; prints
the AUC tables (mean ± std over seeds; overall, new-demand queries, queries with relevant history;
the Bayes-optimal predictor's AUC is the reachable ceiling) and KFAtt's paired gain over each DIN
variant; writes JSON and a plot of AUC against the new-demand fraction.
Data: generated (``leanops.kfatt.data``), with a known ground truth.
"""
from __future__ import annotations

import argparse
import json
import os

from .train import experiment, paired_gains, plot, summarise

COLUMNS = ["din", "din_norm", "kfatt_base", "kfatt_freq", "bayes optimal"]


def format_table(summary) -> str:
    lines = [f"{'new demand':>10} {'repeats':>8} " + " ".join(f"{p:>15}" for p in COLUMNS)]
    for frac, rep in sorted({(r["new_demand"], r["repeat_prob"]) for r in summary}):
        cells = []
        for p in COLUMNS:
            r = next((x for x in summary if (x["new_demand"], x["repeat_prob"], x["pooling"]) == (frac, rep, p)), None)
            cells.append(f"{r['auc_mean']:.4f}±{r['auc_std']:.4f}" if r else "-")
        lines.append(f"{frac:10.2f} {rep:8.2f} " + " ".join(f"{c:>15}" for c in cells))
    return "\n".join(lines)


PAIRS = [(p, b) for p in ("kfatt_base", "kfatt_freq") for b in ("din", "din_norm")]


def format_gains(gains) -> str:
    """``gains``: ``paired_gains`` rows for every pair in ``PAIRS``."""
    lines = [f"{'new demand':>10} {'repeats':>8} " + " ".join(f"{p + ' - ' + b:>24}" for p, b in PAIRS)]
    table = {(g["new_demand"], g["repeat_prob"], g["pooling"], g["baseline"]): g for g in gains}
    for frac, rep in sorted({k[:2] for k in table}):
        cells = []
        for p, b in PAIRS:
            g = table[(frac, rep, p, b)]
            cells.append(f"{g['gain_mean']:+.4f}±{g['gain_std']:.4f} ({g['wins']}/{g['runs']})")
        lines.append(f"{frac:10.2f} {rep:8.2f} " + " ".join(f"{c:>24}" for c in cells))
    return "\n".join(lines)


def run(quick: bool = False, out_dir: str = "benchmarks/results", samples: int | None = None, seeds: int | None = None):
    from tqdm import tqdm

    fractions = (0.0, 0.5) if quick else (0.0, 0.25, 0.5, 0.75)
    repeats = (0.0, 0.6)
    seeds = tuple(range(seeds or (1 if quick else 3)))
    samples = samples or (8000 if quick else 60000)
    total = len(fractions) * len(repeats) * len(seeds) * 4
    with tqdm(total=total, desc="KFAtt vs DIN", unit="model") as bar:
        rows = experiment(fractions, repeats, seeds=seeds, samples=samples, epochs=4, progress=bar)
    print(f"data: generated with a known ground truth; {samples} samples per setting (75% train); "
          f"{len(seeds)} seed(s)")
    tables = {}
    for key, title in (("auc", "test AUC"), ("auc_new_demand", "test AUC, new-demand queries"),
                       ("auc_relevant", "test AUC, queries with relevant history")):
        tables[key] = summarise(rows, key)
        print(f"\n{title} (mean ± std over seeds)")
        print(format_table(tables[key]))
    gains = [g for p, b in PAIRS for g in paired_gains(rows, p, b)]
    print("\nKFAtt's test AUC minus DIN's on the same data and seed: mean ± std (seeds won)")
    print(format_gains(gains))
    os.makedirs(out_dir, exist_ok=True)
    tag = ("quick" if quick else "full") + f"-{samples}"
    with open(os.path.join(out_dir, f"kfatt-auc-{tag}.json"), "w") as fh:
        json.dump({"rows": rows, "summary": tables, "samples": samples, "seeds": list(seeds), "gains": gains},
                  fh, indent=1)
    png = os.path.join(out_dir, f"kfatt-auc-{tag}.png")
    plot(tables["auc"], png, gains)
    print(f"wrote {png}")
    return tables


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m leanops.kfatt.experiment", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--samples", type=int, default=None, help="samples per data set (train 75%%, test 25%%)")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3; quick 1)")
    args = parser.parse_args(argv)
    run(args.quick, args.out, args.samples, args.seeds)


if __name__ == "__main__":
    main()

"""``python -m leanops.kfatt.experiment``: DIN vs KFAtt CTR models on ground-truth data, several seeds.

Sweeps the fraction of new-demand queries, with and without frequent irrelevant behaviours; prints
the AUC table (mean ± std over seeds, with the ground truth's own AUC as the ceiling), writes JSON and
a plot of AUC against the new-demand fraction. Data: generated (``leanops.kfatt.data``), known truth.
"""
from __future__ import annotations

import argparse
import json
import os

from .train import experiment, plot, summarise


def format_table(summary) -> str:
    poolings = ["din", "din_norm", "kfatt_base", "kfatt_freq", "ground truth"]
    lines = [f"{'new demand':>10} {'repeats':>8} " + " ".join(f"{p:>15}" for p in poolings)]
    for frac, rep in sorted({(r["new_demand"], r["repeat_prob"]) for r in summary}):
        cells = []
        for p in poolings:
            r = next((x for x in summary if (x["new_demand"], x["repeat_prob"], x["pooling"]) == (frac, rep, p)), None)
            cells.append(f"{r['auc_mean']:.4f}±{r['auc_std']:.4f}" if r else "-")
        lines.append(f"{frac:10.2f} {rep:8.2f} " + " ".join(f"{c:>15}" for c in cells))
    return "\n".join(lines)


def run(quick: bool = False, out_dir: str = "benchmarks/results", samples: int | None = None):
    from tqdm import tqdm

    fractions = (0.0, 0.5) if quick else (0.0, 0.25, 0.5, 0.75)
    repeats = (0.0, 0.6)
    seeds = (0,) if quick else (0, 1, 2)
    samples = samples or (6000 if quick else 24000)
    total = len(fractions) * len(repeats) * len(seeds) * 4
    with tqdm(total=total, desc="KFAtt vs DIN", unit="model") as bar:
        rows = experiment(fractions, repeats, seeds=seeds, samples=samples, epochs=4, progress=bar)
    summary = summarise(rows)
    print("test AUC (mean ± std over seeds); data: generated with a known ground truth")
    print(format_table(summary))
    new_demand = summarise(rows, "auc_new_demand")
    print("\ntest AUC on the new-demand queries alone")
    print(format_table(new_demand))
    os.makedirs(out_dir, exist_ok=True)
    tag = ("quick" if quick else "full") + f"-{samples}"
    with open(os.path.join(out_dir, f"kfatt-auc-{tag}.json"), "w") as fh:
        json.dump({"rows": rows, "summary": summary, "summary_new_demand": new_demand, "samples": samples,
                   "seeds": list(seeds)}, fh, indent=1)
    png = os.path.join(out_dir, f"kfatt-auc-{tag}.png")
    plot(summary, png)
    print(f"wrote {png}")
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m leanops.kfatt.experiment", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--samples", type=int, default=None, help="samples per data set (train 75%%, test 25%%)")
    args = parser.parse_args(argv)
    run(args.quick, args.out, args.samples)


if __name__ == "__main__":
    main()

"""``python -m leanops.blend.experiment [--quick] [--seeds K] [--seed S]``: list-aware blending with VCG vs
ads in fixed slots and position-unaware ranking by bid x pCTR with GSP prices, on simulated traffic with a
known ground truth (``leanops.blend.simulator``; every outcome is measured on the TRUE click probabilities).

Per seed: log randomised traffic, train the three click models (list-aware transformer, per-item,
position-only) and compare them on held-out logs against the Bayes-optimal ceiling (the true CTRs);
sweep the organic virtual bid vb_org for every policy to draw the revenue-engagement frontier; tune the
virtual bids for "max revenue s.t. organic clicks >= TARGET of the no-ads page" (golden section on vb_org
for every policy, SPSA on (vb_ad, vb_org) for blending) on tuning requests and report them on test requests;
measure how often beam search finds the exact optimum, how often VCG prices are negative, and what the
price floor costs in truthfulness. Seeds 100 and up were used while developing; reported runs use 0..K-1.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from . import click_model as cm
from .policies import no_ads_organic_clicks, run_policy
from .search import allocate
from .simulator import Logs, Simulator, log_traffic
from .tuning import golden_section, penalised, spsa
from .vcg import vcg

POLICIES = ("fixed slots", "ranked (GSP)", "blended", "blended (true CTR)")  # the last: ceiling
TUNED = POLICIES[:3]
PAGE = dict(n_ads=6, n_org=12, n_slots=6, max_ads=2)
TARGET = 0.9  # organic clicks >= 90% of the no-ads page
PENALTY = 20.0
CONFIGS = {
    "quick": dict(log_requests=800, pages_per_request=10, epochs=8, test_requests=40, tune_requests=20,
                  grid=(0.0, 0.5, 1.0, 1.5, 2.5, 4.0), golden_iters=5, spsa_iters=4, exact_checks=10,
                  truth_checks=6, beam_width=6),
    "full": dict(log_requests=3000, pages_per_request=10, epochs=10, test_requests=150, tune_requests=60,
                 grid=(0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0), golden_iters=8,
                 spsa_iters=8, exact_checks=40, truth_checks=20, beam_width=8),
}


def split_logs(logs: Logs, n_requests: int, held_out: float = 0.2) -> tuple[Logs, Logs]:
    """Held-out logs are whole requests (users and candidate sets) never seen in training."""
    cut = int(n_requests * (1 - held_out))
    tr = logs.request < cut
    take = lambda m: Logs(logs.request[m], logs.slates[m], logs.clicks[m], logs.true_ctr[m])  # noqa: E731
    return take(tr), take(~tr)


def frontier_dominance(blend_pts, base_pts) -> tuple[int, int]:
    """How many baseline points (organic share, revenue) lie on or under the blending frontier: the
    upper envelope of blending's points interpolated linearly in organic share (mixing two virtual bids
    over traffic gives any point between them). Points beyond blending's engagement range count as not
    dominated."""
    pts = sorted(blend_pts)
    xs, ys = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    won = 0
    for x, y in base_pts:
        cand = [ys[i] for i in range(len(xs)) if xs[i] >= x - 1e-12]  # points at least as engaging
        for i in range(len(xs) - 1):
            if xs[i] <= x <= xs[i + 1] and xs[i + 1] > xs[i]:
                w = (x - xs[i]) / (xs[i + 1] - xs[i])
                cand.append((1 - w) * ys[i] + w * ys[i + 1])
        won += int(bool(cand) and max(cand) >= y - 1e-12)
    return won, len(base_pts)


def revenue_at(points, share: float) -> float:
    """Largest revenue reachable at organic share >= ``share`` on a policy's interpolated frontier."""
    pts = sorted(points)
    best = max([p[1] for p in pts if p[0] >= share] or [float("nan")])
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= share <= x1 and x1 > x0:
            best = np.nanmax([best, y0 + (share - x0) / (x1 - x0) * (y1 - y0)])
    return float(best)


def run_seed(seed: int, cfg: dict, progress=None) -> dict:
    g = torch.Generator().manual_seed(1000 + seed)
    torch.manual_seed(seed)
    sim = Simulator()
    page = PAGE
    log_req = sim.sample(cfg["log_requests"], page["n_ads"], page["n_org"], g)
    logs = log_traffic(sim, log_req, cfg["pages_per_request"], page["n_slots"], page["max_ads"], g)
    train_logs, test_logs = split_logs(logs, cfg["log_requests"])
    n_feat, n_user = log_req.item_features().shape[-1], log_req.user.shape[-1]
    models, model_metrics = {}, {"bayes optimal (true CTR)": cm.metrics(test_logs.true_ctr, test_logs.clicks)}
    for name, cls in cm.MODELS.items():
        model = cm.train(cls(n_feat, n_user, page["n_slots"]), log_req, train_logs, epochs=cfg["epochs"], generator=g)
        models[name] = model
        model_metrics[name] = cm.metrics(cm.predict(model, log_req, test_logs.request, test_logs.slates),
                                         test_logs.clicks)
    if progress:
        progress.update(1)
    click, per_item = models["list-aware (ClickModel)"], models["per-item (no context)"]
    test = sim.sample(cfg["test_requests"], page["n_ads"], page["n_org"], g)
    tune = sim.sample(cfg["tune_requests"], page["n_ads"], page["n_org"], g)
    e0_test = no_ads_organic_clicks(sim, test, page["n_slots"])
    e0_tune = no_ads_organic_clicks(sim, tune, page["n_slots"])

    def outcome(name, reqs, vb_ad, vb_org, **kw):
        return run_policy(name, sim, reqs, page["n_slots"], page["max_ads"], vb_ad, vb_org, per_item, click,
                          cfg["beam_width"], **kw)

    frontier = {p: [] for p in POLICIES}
    for vb in cfg["grid"]:
        for p in POLICIES:
            o = outcome(p, test, 0.0, vb)
            frontier[p].append({"vb_org": vb, "organic_share": o.organic_clicks / e0_test, **o.to_dict()})
    if progress:
        progress.update(1)
    pts = {p: [(r["organic_share"], r["revenue"]) for r in frontier[p]] for p in POLICIES}
    vpts = {p: [(r["organic_share"], r["revenue"] + r["advertiser_surplus"]) for r in frontier[p]] for p in POLICIES}
    dominance = {b: frontier_dominance(pts["blended"], pts[b]) for b in POLICIES[:2]}
    value_dominance = {b: frontier_dominance(vpts["blended"], vpts[b]) for b in POLICIES[:2]}
    rev_at_target = {p: revenue_at(pts[p], TARGET) for p in POLICIES}
    value_at_target = {p: revenue_at(vpts[p], TARGET) for p in POLICIES}

    # virtual-bid tuning on the tuning requests, reported on the test requests
    tuned = {}
    for p in TUNED:
        f = lambda vb, p=p: penalised(*(lambda o: (o.revenue, o.organic_clicks))(outcome(p, tune, 0.0, vb)),  # noqa: E731
                                      e0_tune, TARGET, PENALTY)
        x, _, hist = golden_section(f, 0.0, 4.0, cfg["golden_iters"])
        o = outcome(p, test, 0.0, x)
        tuned[f"{p} / golden vb_org"] = {"vb_ad": 0.0, "vb_org": x, "evaluations": len(hist), "revenue": o.revenue,
                                         "organic_share": o.organic_clicks / e0_test}
    f2 = lambda v: penalised(*(lambda o: (o.revenue, o.organic_clicks))(outcome("blended", tune, v[0], v[1])),  # noqa: E731
                             e0_tune, TARGET, PENALTY)
    start = [0.0, tuned["blended / golden vb_org"]["vb_org"]]
    x, _, hist = spsa(f2, start, [(-0.5, 2.0), (0.0, 4.0)], cfg["spsa_iters"], generator=g)
    o = outcome("blended", test, x[0], x[1])
    tuned["blended / SPSA (vb_ad, vb_org)"] = {"vb_ad": x[0], "vb_org": x[1], "evaluations": len(hist),
                                              "revenue": o.revenue, "organic_share": o.organic_clicks / e0_test}
    if progress:
        progress.update(1)

    # beam vs exact on pages small enough to enumerate, with the trained list-aware model
    hits, gaps = 0, []
    for i in range(cfg["exact_checks"]):
        scorer = cm.request_scorer(click, test, i)
        bids, is_ad = test.value[i].double(), test.is_ad[i]
        _, v_exact = allocate(scorer, bids, is_ad, page["n_slots"], page["max_ads"], vb_org=1.0, method="exact")
        _, v_beam = allocate(scorer, bids, is_ad, page["n_slots"], page["max_ads"], vb_org=1.0, method="beam",
                             beam_width=cfg["beam_width"])
        hits += int(v_beam >= v_exact - 1e-9)
        gaps.append((v_exact - v_beam) / max(abs(v_exact), 1e-12))
    # negative VCG prices under the TRUE click model, and what the 0-floor costs in truthfulness
    small = dict(n_slots=4, max_ads=2)
    neg, shown, gain_allow, gain_floor, ads_checked = 0, 0, [], [], 0
    for i in range(cfg["truth_checks"]):
        truth = sim.click_model(test, i)
        sub = torch.cat([torch.arange(4), torch.arange(page["n_ads"], page["n_ads"] + 6)])  # 4 ads, 6 organic
        model = lambda s, sub=sub, truth=truth: truth(sub[s])  # noqa: E731
        vals, is_ad = test.value[i, sub].double(), test.is_ad[i, sub]
        for mode, gains in (("allow", gain_allow), ("floor", gain_floor)):
            for ad in range(4):
                def util(b):
                    bids = vals.clone()
                    bids[ad] = b
                    slate, price = vcg(model, bids, is_ad, **small, vb_org=1.0, method="exact", negative_prices=mode)
                    hit = (slate == ad).nonzero()
                    if hit.numel() == 0:
                        return 0.0, None
                    s = int(hit)
                    return (float(vals[ad]) - float(price[s])) * float(model(slate[None])[0, s]), float(price[s])
                honest, honest_price = util(float(vals[ad]))
                if mode == "allow" and honest_price is not None:
                    shown += 1
                    neg += int(honest_price < -1e-12)
                best = max(util(float(vals[ad]) * f)[0] for f in (0.0, 0.5, 0.8, 1.25, 2.0, 4.0))
                gains.append(max(0.0, best - honest))
                ads_checked += mode == "allow"
    if progress:
        progress.update(1)
    return {
        "seed": seed, "click_models": model_metrics, "frontier": frontier, "no_ads_organic_clicks": e0_test,
        "dominance_revenue": {b: {"dominated": w, "points": n} for b, (w, n) in dominance.items()},
        "dominance_value": {b: {"dominated": w, "points": n} for b, (w, n) in value_dominance.items()},
        "revenue_at_target": rev_at_target,
        "value_at_target": value_at_target, "tuned": tuned,
        "beam_vs_exact": {"pages": cfg["exact_checks"], "beam_found_optimum": int(hits),
                          "mean_relative_gap": float(np.mean(gaps)), "beam_width": cfg["beam_width"]},
        "negative_vcg_prices_true_model": {"shown_ads": shown, "negative": int(neg)},
        "truthfulness": {"ads_checked": ads_checked,
                         "allow_profitable_deviation_share": float(np.mean([x > 1e-9 for x in gain_allow])),
                         "floor_profitable_deviation_share": float(np.mean([x > 1e-9 for x in gain_floor])),
                         "floor_mean_gain": float(np.mean(gain_floor)), "floor_max_gain": float(np.max(gain_floor))},
    }


def paired(results, key_fn, a, b):
    d = np.array([key_fn(r, a) - key_fn(r, b) for r in results])
    if np.isnan(d).all():  # no policy point reached the target share
        return {"mean": float("nan"), "std": float("nan"), "wins": 0, "runs": len(d)}
    return {"mean": float(np.nanmean(d)), "std": float(np.nanstd(d)), "wins": int((d > 0).sum()), "runs": len(d)}


def summarise(results) -> tuple[str, list[str], dict]:
    lines, failed = [], []
    lines.append("Data are generated with a known ground truth (leanops.blend.simulator); outcomes are the "
                 "simulator's TRUE click probabilities.")
    lines.append("\nClick models on held-out logs (mean ± std over seeds):")
    names = list(results[0]["click_models"])
    lines.append(f"{'model':28} {'log-loss':>16} {'AUC':>16} {'ECE':>16} {'pred/click':>12}")
    for n in names:
        cells = [np.array([r["click_models"][n][k] for r in results]) for k in ("log_loss", "auc", "ece",
                                                                                 "mean_pred_over_mean_click")]
        lines.append(f"{n:28} " + " ".join(f"{c.mean():.4f}±{c.std():.4f}".rjust(16) for c in cells[:3])
                     + f" {cells[3].mean():12.3f}")
    la, ctx = "list-aware (ClickModel)", "per-item (no context)"
    ll = paired(results, lambda r, m: -r["click_models"][m]["log_loss"], la, ctx)
    lines.append(f"list-aware - per-item log-loss: {-ll['mean']:+.4f} ± {ll['std']:.4f} (lower in {ll['wins']}/{ll['runs']} seeds)")
    if ll["wins"] * 2 <= ll["runs"]:
        failed.append("The list-aware click model does not have a lower held-out log-loss than the per-item model "
                      "in most seeds.")
    lines.append(f"\nRevenue-engagement frontier (mean over seeds; organic share = organic clicks / no-ads page):")
    grid = [row["vb_org"] for row in results[0]["frontier"]["blended"]]
    lines.append(f"{'vb_org':>7} " + " ".join(f"{p + ' rev/org':>30}" for p in POLICIES))
    for j, vb in enumerate(grid):
        cells = []
        for p in POLICIES:
            rev = np.mean([r["frontier"][p][j]["revenue"] for r in results])
            org = np.mean([r["frontier"][p][j]["organic_share"] for r in results])
            cells.append(f"{rev:.4f} / {org:.3f}".rjust(30))
        lines.append(f"{vb:7.2f} " + " ".join(cells))
    for kind in ("revenue", "value"):
        for b in POLICIES[:2]:
            w = sum(r[f"dominance_{kind}"][b]["dominated"] for r in results)
            n = sum(r[f"dominance_{kind}"][b]["points"] for r in results)
            what = "revenue" if kind == "revenue" else "advertiser value (revenue + advertiser surplus)"
            lines.append(f"{b} points on or under the blending frontier ({what} vs organic share): {w}/{n}")
            if w < n:
                failed.append(f"List-aware blending does not dominate the {b} frontier on {what}: {n - w} of {n} "
                              f"baseline points (all seeds) lie above it.")
    lines.append(f"\nRevenue at organic share >= {TARGET:.0%} (interpolated frontier), paired over seeds:")
    for b in POLICIES[:2]:
        d = paired(results, lambda r, p: r["revenue_at_target"][p], "blended", b)
        lines.append(f"  blended - {b}: {d['mean']:+.4f} ± {d['std']:.4f} (seeds won {d['wins']}/{d['runs']})")
    lines.append(f"Advertiser value at organic share >= {TARGET:.0%}, paired over seeds:")
    for b in POLICIES[:2]:
        d = paired(results, lambda r, p: r["value_at_target"][p], "blended", b)
        lines.append(f"  blended - {b}: {d['mean']:+.4f} ± {d['std']:.4f} (seeds won {d['wins']}/{d['runs']})")
    d = paired(results, lambda r, p: r["value_at_target"][p], "blended (true CTR)", "blended")
    lines.append(f"  ceiling: blended (true CTR) - blended: {d['mean']:+.4f} ± {d['std']:.4f}")
    lines.append(f"\nTuned virtual bids (goal: max revenue s.t. organic share >= {TARGET:.0%}; tuned on tuning "
                 "requests, reported on test requests):")
    for key in results[0]["tuned"]:
        rev = np.array([r["tuned"][key]["revenue"] for r in results])
        org = np.array([r["tuned"][key]["organic_share"] for r in results])
        vb = [(round(r["tuned"][key]["vb_ad"], 3), round(r["tuned"][key]["vb_org"], 3)) for r in results]
        lines.append(f"  {key:34} revenue {rev.mean():.4f}±{rev.std():.4f}  organic share {org.mean():.3f}±"
                     f"{org.std():.3f}  (vb_ad, vb_org) per seed {vb}")
    bx = sum(r["beam_vs_exact"]["beam_found_optimum"] for r in results)
    bn = sum(r["beam_vs_exact"]["pages"] for r in results)
    gap = np.mean([r["beam_vs_exact"]["mean_relative_gap"] for r in results])
    lines.append(f"\nBeam search (width {results[0]['beam_vs_exact']['beam_width']}) found the exact optimum on "
                 f"{bx}/{bn} pages; mean relative value gap {gap:.2e}")
    neg = sum(r["negative_vcg_prices_true_model"]["negative"] for r in results)
    shown = sum(r["negative_vcg_prices_true_model"]["shown_ads"] for r in results)
    neg_learned = np.mean([row["negative_price_share"] for r in results for row in r["frontier"]["blended"]])
    lines.append(f"Negative VCG prices: {neg}/{shown} shown ads under the true click model (4 ads, 6 organic, 4 "
                 f"slots, vb_org=1); mean share {neg_learned:.4f} of shown ads over the frontier runs with the "
                 "learned model")
    t = [r["truthfulness"] for r in results]
    lines.append(f"Truthfulness (deviation grid x0..x4, exact search, true model): pure VCG profitable deviations "
                 f"{np.mean([x['allow_profitable_deviation_share'] for x in t]):.3f} of ads; with the 0-floor "
                 f"{np.mean([x['floor_profitable_deviation_share'] for x in t]):.3f} of ads (mean gain "
                 f"{np.mean([x['floor_mean_gain'] for x in t]):.2e}, max {max(x['floor_max_gain'] for x in t):.2e})")
    if any(x["allow_profitable_deviation_share"] > 0 for x in t):
        failed.append("Pure VCG with exact search allowed a profitable bid deviation (it should not).")
    return "\n".join(lines), failed, {}


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for p, marker in zip(POLICIES, "sovx"):
        org = np.mean([[row["organic_share"] for row in r["frontier"][p]] for r in results], 0)
        rev = np.mean([[row["revenue"] for row in r["frontier"][p]] for r in results], 0)
        val = np.mean([[row["revenue"] + row["advertiser_surplus"] for row in r["frontier"][p]] for r in results], 0)
        axes[0].plot(org, rev, marker=marker, label=p)
        axes[1].plot(org, val, marker=marker, label=p)
    for ax, what in zip(axes, ("revenue per request (prices x true clicks)", "advertiser value per request")):
        ax.axvline(TARGET, color="grey", ls=":", lw=1)
        ax.set_xlabel("organic clicks / no-ads page (true clicks)")
        ax.set_ylabel(what)
        ax.legend()
    fig.suptitle(f"leanops.blend: frontier as vb_org varies (mean over {len(results)} seeds; simulator ground truth)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    from tqdm import tqdm

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", default="benchmarks/results")
    ap.add_argument("--config", default=None, help=argparse.SUPPRESS)  # JSON overrides (tests)
    args = ap.parse_args(argv)
    mode = "quick" if args.quick else "full"
    cfg = dict(CONFIGS[mode], **(json.loads(args.config) if args.config else {}))
    seeds = list(range(args.seed, args.seed + args.seeds))
    start = time.time()
    with tqdm(total=4 * len(seeds), desc="blend experiment", unit="stage") as bar:
        results = [run_seed(s, cfg, bar) for s in seeds]
    table, failed, _ = summarise(results)
    print(table)
    for sentence in failed:
        print("NOT AS EXPECTED: " + sentence)
    if not failed:
        print("As expected: list-aware blending dominates both baseline frontiers on the simulator's true clicks.")
    os.makedirs(args.out_dir, exist_ok=True)
    stem = os.path.join(args.out_dir, f"blend-frontier-{mode}")
    out = {"runner": f"python -m leanops.blend.experiment{' --quick' if args.quick else ''} --seeds {args.seeds} "
                     f"--seed {args.seed}", "config": cfg, "page": PAGE, "target": TARGET, "seeds": seeds,
           "ground_truth": "leanops.blend.simulator.Simulator defaults", "seconds": time.time() - start,
           "table": table, "not_as_expected": failed, "results": results}
    with open(stem + ".json", "w") as fh:
        json.dump(out, fh, indent=1)
    plot(results, stem + ".png")
    print(f"wrote {stem}.json and {stem}.png")
    return out


if __name__ == "__main__":
    main()

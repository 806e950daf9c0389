"""``leanops experiment create|log|allocate|report``: the experiment store from the command line."""
from __future__ import annotations

import json
import sys
from dataclasses import asdict

from .store import Experiment, format_report


def run(args) -> int:
    try:
        if args.action == "create":
            with Experiment(args.path, args.arms, policy=args.policy) as ex:
                print(f"experiment {args.path}: arms {ex.arms}, policy {ex.policy}")
            return 0
        with Experiment(args.path) as ex:
            if args.action == "log":
                if args.csv == "-":
                    new_exp, new_conv = ex.log_csv(sys.stdin)
                else:
                    with open(args.csv, newline="") as fh:
                        new_exp, new_conv = ex.log_csv(fh)
                n_exp, n_conv = ex.counts()
                print(f"logged {new_exp} new exposures, {new_conv} new conversions "
                      f"(store: {n_exp} exposures, {n_conv} conversions)")
            elif args.action == "allocate":
                arms = ex.allocate(args.n, now=args.now, min_share=args.min_share, seed=args.seed)
                print(json.dumps(arms) if args.json else "\n".join(arms))
            elif args.action == "report":
                rows = ex.report(now=args.now)
                print(json.dumps([asdict(r) for r in rows], indent=1) if args.json else format_report(rows))
        return 0
    except (ValueError, TypeError, OSError) as exc:
        print(f"leanops experiment {args.action}: {exc}", file=sys.stderr)
        return 2

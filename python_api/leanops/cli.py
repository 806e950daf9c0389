"""The ``leanops`` command: ``info``, ``bench <family>``, ``demo``, ``experiment``."""
from __future__ import annotations

import argparse
import json
import sys



def bench_names() -> list[str]:
    """Every ``leanops.bench.<name>`` module with a ``run`` sweep: the kernel families, then the methods."""
    import pkgutil

    from . import bench

    return sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_")
                  and m.name != "timing")


def _info(_args) -> int:
    import leanops

    print(json.dumps(leanops.build_info(), indent=1))
    return 0


def _bench(args) -> int:
    import importlib

    importlib.import_module(f".bench.{args.family}", __package__).run(device=args.device, quick=args.quick,
                                                                      out_dir=args.out, repeats=args.repeats)
    return 0


def _demo(args) -> int:
    from .demo import run

    run(quick=args.quick)
    return 0


def _experiment(args) -> int:
    from .bandit.cli import run

    return run(args)


def _add_experiment(sub) -> None:
    """``leanops experiment create|log|allocate|report`` (the SQLite experiment store of leanops.bandit)."""
    exp = sub.add_parser("experiment", help="adaptive experiment with delayed conversions (SQLite store)")
    act = exp.add_subparsers(dest="action", required=True)
    create = act.add_parser("create", help="create the store file")
    create.add_argument("path")
    create.add_argument("--arms", nargs="+", required=True, help="arm names")
    create.add_argument("--policy", default="dts_em", choices=("dts_em", "ts_naive", "bayes_grid", "ab"))
    log = act.add_parser("log", help="log events from a CSV (header kind,unit_id,arm,time; '-' reads stdin)")
    log.add_argument("path")
    log.add_argument("csv", nargs="?", default="-")
    alloc = act.add_parser("allocate", help="the next N assignments, one arm name per line")
    alloc.add_argument("path")
    alloc.add_argument("n", type=int)
    alloc.add_argument("--now", type=float, default=None, help="decision time (default: latest logged time)")
    alloc.add_argument("--min-share", type=float, default=0.0, help="minimum probability per arm")
    alloc.add_argument("--seed", type=int, default=None)
    alloc.add_argument("--json", action="store_true")
    report = act.add_parser("report", help="per-arm rate, interval, delay, P(best), loss of stopping now")
    report.add_argument("path")
    report.add_argument("--now", type=float, default=None, help="decision time (default: latest logged time)")
    report.add_argument("--json", action="store_true")
    exp.set_defaults(fn=_experiment)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="leanops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="build information and backends").set_defaults(fn=_info)
    bench = sub.add_parser("bench", help="run a family's benchmark sweep (anchor vs ours)")
    bench.add_argument("family", choices=bench_names(), help="a kernel family or a method")
    bench.add_argument("--quick", action="store_true", help="small shapes, few repeats (smoke test)")
    bench.add_argument("--repeats", type=int, default=None,
                       help="interleaved timed repeats per provider (default: per family; the ToMe end-to-end "
                            "row adds repeats until its ratio spread is below 5%%)")
    bench.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    bench.add_argument("--out", default="benchmarks/results", help="folder for the JSON and PNG results")
    bench.set_defaults(fn=_bench)
    demo = sub.add_parser("demo", help="run every method's demo")
    demo.add_argument("--quick", action="store_true", help="smaller inputs")
    demo.set_defaults(fn=_demo)
    _add_experiment(sub)
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except ModuleNotFoundError as exc:  # an optional package (progress bars, figures, HF models) is missing
        from ._requirements import missing_extra_message

        message = missing_extra_message(exc, args.command)
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

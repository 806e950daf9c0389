"""The ``leanops`` command: ``info``, ``bench <family>``, ``demo``."""
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

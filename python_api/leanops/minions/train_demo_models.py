"""``python -m leanops.minions.train_demo_models [--mode full|quick] [--force]``: train (or find cached)
the GPT-2 LLM and the three distilled SSMs that Minions is measured on. See ``demo_models.py``."""
from __future__ import annotations

import argparse

import torch

from .demo_models import RECIPES, cache_dir, train_all


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=sorted(RECIPES), default="full",
                        help="full: about 30 minutes on 2 CPU cores; quick: a few minutes")
    parser.add_argument("--force", action="store_true", help="retrain even when cached")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"cache: {cache_dir(args.mode)}")
    train_all(args.mode, force=args.force)


if __name__ == "__main__":
    main()

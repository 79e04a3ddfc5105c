"""``preattn train``: train a network (or continue a run) from flags, a YAML file or a run."""

from __future__ import annotations

import argparse
import os

from ._flags import add_train_flags, train_config

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "train",
        allow_abbrev=False,
        help="train a network",
        description="Train a network; flags override --config / --resume.",
    )
    from ..train.recipes import RECIPES

    p.add_argument(
        "--config",
        help="YAML file with any of the flags below (flags win), or the name of a shipped "
        f"recipe: {', '.join(RECIPES)}",
    )
    p.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the run in DIR from its last committed epoch; with --epochs M, extend "
        "it to M epochs (the LR schedule is re-planned for M epochs from the saved step)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in --out (without it, a directory holding a run is refused)",
    )
    add_train_flags(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..train.loop import train
    from ..train.rundir import default_run_dir

    config = train_config(args)
    if args.resume and args.overwrite:
        raise ValueError("--resume and --overwrite contradict each other; choose one")
    if config.out is None:
        config = config.replace(out=str(default_run_dir(config.model)))
    record = train(config, resume=bool(args.resume), overwrite=args.overwrite)
    if record and int(os.environ.get("RANK", "0")) == 0:
        print(f"done: test accuracy {record.test_acc:.4f}; run directory {config.out}")
    return 0

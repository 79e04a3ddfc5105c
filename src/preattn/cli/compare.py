"""``preattn compare``: one run per placement and seed, test accuracy side by side."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._flags import add_train_flags, train_config

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "compare",
        allow_abbrev=False,
        help="train one run per placement and seed, report test accuracy side by side",
        description="Paired comparison: every placement is trained with the same seeds; "
        "accepts every flag of 'train' except --placement.",
    )
    p.add_argument(
        "--placements",
        default="none,pre,branch,post,skip",
        help="comma-separated placements; the first is the reference "
        "(default: none,pre,branch,post,skip)",
    )
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: 0,1,2)")
    p.add_argument("--jobs", type=int, default=1, help="training processes at once (default 1)")
    p.add_argument("--config", help="YAML file with train flags (flags win)")
    add_train_flags(p, exclude=("placement", "seed"))
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..ablate import compare, format_report
    from ..train.rundir import default_run_dir

    config = train_config(args)
    if config.out is None:
        config = config.replace(out=str(default_run_dir("compare")))
    placements = [p.strip() for p in args.placements.split(",") if p.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    report = compare(config, placements, seeds, jobs=args.jobs)
    print()
    print(format_report(report))
    print(f"report: {Path(config.out) / 'report.md'}")
    return 0

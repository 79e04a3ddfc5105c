"""``preattn ablate GRID.yaml --out DIR``: a grid of variants x seeds, trained paired and
resumably, and the report of its statistics (:func:`preattn.ablate.ablate`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._flags import key_values

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "ablate",
        allow_abbrev=False,
        help="train a grid of variants x seeds (paired, resumable) and report the statistics",
        description="Train every variant of GRID.yaml with every seed in OUT/<variant>/"
        "seed<k>/ and write OUT/report.md, report.json and plots. Run it again to resume: "
        "finished runs are kept, interrupted ones resumed, new ones started.",
    )
    p.add_argument(
        "grid",
        metavar="GRID.yaml",
        nargs="+",
        help="base, variants, reference, seeds; several grids share the runs in --out and "
        "each gets its report in <report dir>/<grid file name>/",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder of the runs and report")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs at once (local: processes sharing the cores; slurm: array tasks at once)",
    )
    p.add_argument("--executor", default="local", choices=("local", "slurm", "submitit-local"))
    p.add_argument("--dry-run", action="store_true", help="say what would run, run nothing")
    p.add_argument("--report-only", action="store_true", help="train nothing, write the report")
    p.add_argument(
        "--time-limit",
        type=float,
        metavar="SECONDS",
        help="after this long start no run and stop each running one after its epoch (the "
        "same command resumes them); the report covers the finished runs",
    )
    p.add_argument(
        "--variants",
        metavar="NAME[,NAME]",
        help="train only these variants now (e.g. the primary contrast first); the others "
        "wait for a run without it, the report covers every finished run",
    )
    p.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a train option on every run of the grid, over base and the variants "
        "(repeatable; e.g. --override epochs=1 --override limit_train=256); use another --out",
    )
    p.add_argument(
        "--report-dir",
        metavar="DIR",
        help="where report.md/.json and the plots go (default: --out); grids sharing one "
        "--out reuse each other's runs",
    )
    slurm = p.add_argument_group("slurm (--executor slurm, needs preattn[slurm])")
    slurm.add_argument("--partition", help="Slurm partition")
    slurm.add_argument("--gpus-per-task", type=int, default=0, help="GPUs per run (default 0)")
    slurm.add_argument("--cpus-per-task", type=int, help="CPU cores per run")
    slurm.add_argument("--time-min", type=int, default=120, help="time limit per run, minutes")
    p.set_defaults(func=run)
    return p


def _report_dirs(args: argparse.Namespace) -> list[Path]:
    """Where each grid's report goes: ``--report-dir`` (else ``--out``) for one grid, its
    subfolder named after the grid file for several (the names must then differ)."""
    report_root = Path(args.report_dir or args.out)
    if len(args.grid) == 1:
        return [report_root]
    stems = [Path(p).stem for p in args.grid]
    if len(set(stems)) != len(stems):
        raise ValueError(f"grid files must have distinct names, got {args.grid}")
    return [report_root / stem for stem in stems]


def run(args: argparse.Namespace) -> int:
    from ..ablate import Grid, SlurmOptions, ablate, format_report
    from ..ablate.commands import is_command_grid, run_from_cli

    if len(args.grid) == 1 and is_command_grid(args.grid[0]):
        return run_from_cli(args)  # variants as commands: preattn.ablate.commands
    grids = [Grid.from_yaml(path) for path in args.grid]
    if args.override:
        overrides = key_values(args.override, "--override")
        grids = [g.with_overrides(overrides) for g in grids]
    report_dirs = _report_dirs(args)
    slurm = SlurmOptions(
        partition=args.partition,
        gpus_per_task=args.gpus_per_task,
        cpus_per_task=args.cpus_per_task,
        time_min=args.time_min,
    )
    several = len(grids) > 1
    variants = None if args.variants is None else args.variants.split(",")
    result: Any = ablate(
        grids if several else grids[0],
        args.out,
        jobs=args.jobs,
        executor=args.executor,
        slurm=slurm,
        dry_run=args.dry_run,
        report_only=args.report_only,
        time_limit=args.time_limit,
        variants=None if variants is None else [v.strip() for v in variants if v.strip()],
        report_dir=report_dirs if several else report_dirs[0],
    )
    if result is not None:
        reports = result if several else [result]
        for report, folder in zip(reports, report_dirs, strict=True):
            print()
            print(format_report(report))
            print(f"report: {folder / 'report.md'}")
    return 0

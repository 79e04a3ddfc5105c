"""Running a grid: plan its runs, train the unfinished ones, write the report.

``ablate(grid, out)`` plans the grid's runs (:func:`~preattn.ablate.execute.plan`), trains
the ones not finished (:func:`~preattn.ablate.execute.execute`) and writes the report
(:func:`~preattn.ablate.report.write_report`). Running it again retrains nothing that
finished, resumes what was interrupted and runs what was added to the grid. A run whose
training diverged is kept as it is: the report lists it, nothing retries it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from .._io import atomic_write_text
from ..train.config import ConfigError
from .execute import (
    PlannedRun,
    SlurmOptions,
    check_executor,
    check_time_limit,
    execute,
    plan,
    run_threads,
)
from .forest import write_forest
from .grid import Grid
from .match_cost import matched_widths
from .report import write_report

__all__ = ["AblationFailed", "ablate"]

_logger = logging.getLogger(__name__)


class AblationFailed(RuntimeError):
    """Some runs of the grid failed; the report holds the others."""


def ablate(
    grid: Grid | Sequence[Grid],
    out: str | Path,
    *,
    jobs: int = 1,
    executor: str = "local",
    slurm: SlurmOptions | None = None,
    dry_run: bool = False,
    report_only: bool = False,
    time_limit: float | None = None,
    variants: Sequence[str] | None = None,
    report_dir: str | Path | Sequence[str | Path] | None = None,
    plots: bool = True,
    progress: Callable[[str], None] = _logger.info,
) -> Any:
    """Run ``grid`` in ``out`` and write its report; returns the report (``None`` for a
    dry run). ``dry_run`` only says what would run; ``report_only`` trains nothing;
    ``time_limit`` (seconds) stops the runs after the epoch they are in once it has passed
    (the report covers the finished ones; the same call later resumes the others).
    ``variants`` trains only the runs of these variants now (e.g. a grid's primary contrast
    before the rest); the report covers every finished run as always.

    The report (and a copy of the grid, ``grid.yaml``) goes to ``report_dir`` (default
    ``out``). ``grid`` may be a list of grids sharing one pool of runs in ``out``: their
    runs are trained together (a run that two grids share, once; two grids that give one
    run folder different configurations are an error), ``report_dir`` is then a list of
    folders, one per grid, and a list of reports is returned; with ``plots``, the forest
    plot of their primary contrasts (:mod:`preattn.ablate.forest`) goes to ``forest.png``
    in the folders' common parent.
    Raises :class:`AblationFailed` after the reports when some runs failed."""
    check_executor(executor, jobs)  # before anything is written, also for a dry run
    check_time_limit(time_limit)
    out = Path(out)
    several = not isinstance(grid, Grid)
    grids = list(grid) if several else [grid]  # type: ignore[arg-type]
    _check_variants(variants, grids)
    if several:
        if report_dir is None or isinstance(report_dir, str | Path):
            raise ValueError("report_dir must list one folder per grid when several are given")
        report_dirs = [Path(d) for d in report_dir]
    else:
        report_dirs = [Path(report_dir) if report_dir is not None else out]  # type: ignore[arg-type]
    if len(report_dirs) != len(grids) or len(set(report_dirs)) != len(report_dirs):
        given = [str(d) for d in report_dirs]
        raise ValueError(f"report_dir must give {len(grids)} distinct folders, got {given}")
    threads = run_threads(executor, jobs, slurm)
    matched = [_with_matched(g, out, dry_run, report_only, threads, progress) for g in grids]
    grids = [g for g, _ in matched]
    planned = _union([plan(g, out) for g in grids])
    pending = [p for p in planned if p.action not in ("done", "diverged")]
    held: list[PlannedRun] = []
    if variants is not None:
        held = [p for p in pending if p.run.variant not in variants]
        pending = [p for p in pending if p.run.variant in variants]
    if not dry_run and not report_only:
        _check_matched(matched, {p.run.variant for p in pending}, out, threads, progress)
    counts = {a: sum(p.action == a for p in planned) for a in ("done", "diverged", "resume", "new")}
    shape = (
        f"{len(grids[0].variants)} variants x {len(grids[0].seeds)} seeds"
        if not several
        else f"{len(grids)} grids"
    )
    progress(
        f"{len(planned)} runs ({shape}) in {out}: {counts['done']} finished, "
        + (f"{counts['diverged']} diverged (kept), " if counts["diverged"] else "")
        + f"{counts['resume']} to resume, {counts['new']} new"
    )
    if held:
        progress(f"  only {', '.join(variants or ())} now: {len(held)} other run(s) wait")
    if dry_run:
        for p in pending:
            after = f" after epoch {p.epochs_done}" if p.action == "resume" else ""
            progress(f"  would {p.action}{after}: {p.run.label} -> {p.run.config.out}")
        return None
    out.mkdir(parents=True, exist_ok=True)
    for g, folder in zip(grids, report_dirs, strict=True):
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "grid.yaml", _grid_yaml(g))
    outcomes = (
        []
        if report_only
        else execute(
            pending,
            root=out,
            jobs=jobs,
            executor=executor,
            slurm=slurm,
            time_limit=time_limit,
            progress=progress,
        )
    )
    reports = [
        write_report(g, out, report_dir=folder, plots=plots)
        for g, folder in zip(grids, report_dirs, strict=True)
    ]
    if plots and several:  # every grid's primary contrasts in one figure, beside their folders
        named = [(folder.name, r) for folder, r in zip(report_dirs, reports, strict=True)]
        write_forest(named, Path(os.path.commonpath(report_dirs)) / "forest.png")
    failed = [o[0].run.label for o in outcomes if o[2] is not None]
    if failed:
        raise AblationFailed(
            f"{len(failed)} run(s) failed: {', '.join(failed)}; the report covers the others "
            "(run the same command again to retry them)"
        )
    return reports if several else reports[0]


def _check_variants(variants: Sequence[str] | None, grids: list[Grid]) -> None:
    if variants is None:
        return
    known = [name for g in grids for name in g.variants]
    unknown = [name for name in variants if name not in known]
    if not variants or unknown:
        raise ValueError(
            f"variants must name variants of the grid(s) {sorted(set(known))}, got {list(variants)}"
        )


def _with_matched(
    grid: Grid,
    out: Path,
    dry_run: bool,
    report_only: bool,
    threads: int | None,
    progress: Callable[[str], None],
) -> tuple[Grid, dict[str, Any]]:
    """``grid`` with its ``match_cost`` width: saved in ``out``, else measured now with the
    runs' torch threads (not for a dry run, which says it would, nor for a report, which
    needs it saved); and what :func:`matched_widths` returned."""
    if grid.match_cost is None:
        return grid, {}
    if dry_run:
        try:
            found = matched_widths(grid, out, measure=False, progress=progress)
        except ConfigError:
            progress(f"  would measure match_cost ({grid.match_cost}) before training")
            return grid, {}
    else:
        found = matched_widths(
            grid, out, measure=not report_only, threads=threads, progress=progress
        )
    widths = {variant: result["width"] for variant, result in found.items()}
    return grid.with_matched(widths), found


def _check_matched(
    matched: list[tuple[Grid, dict[str, Any]]],
    training: set[str],
    out: Path,
    threads: int | None,
    progress: Callable[[str], None],
) -> None:
    """Time a saved ``match_cost`` width again before its runs train (a width measured in
    this call was just timed); ``matched_widths`` refuses one that is no longer matched."""
    for grid, found in matched:
        for variant, result in found.items():
            if variant in training and not result.get("measured_now"):
                matched_widths(
                    grid, out, measure=False, check=True, threads=threads, progress=progress
                )


def _union(plans: list[list[PlannedRun]]) -> list[PlannedRun]:
    """The runs of several grids' plans, each run folder once, in order."""
    seen: dict[str, PlannedRun] = {}
    for planned in plans:
        for p in planned:
            key = str(p.run.config.out)
            if key in seen:
                before = seen[key].run.config.to_dict()
                differ = sorted(k for k, v in p.run.config.to_dict().items() if before[k] != v)
                if differ:
                    raise ConfigError(
                        f"two grids give {key} different configurations (they differ in "
                        f"{differ}); rename one of the variants"
                    )
                continue
            seen[key] = p
    return list(seen.values())


def _grid_yaml(grid: Grid) -> str:
    return yaml.safe_dump(grid.to_dict(), sort_keys=False, allow_unicode=True)

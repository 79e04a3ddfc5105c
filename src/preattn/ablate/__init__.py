"""``preattn ablate GRID.yaml``: paired, resumable ablations over variants and seeds.

``ablate(grid, out)`` plans the grid's runs (:func:`~preattn.ablate.execute.plan`), trains
the ones not finished (:func:`~preattn.ablate.execute.execute`) and writes the report
(:func:`~preattn.ablate.report.write_report`). Running it again retrains nothing that
finished, resumes what was interrupted and runs what was added to the grid.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._io import atomic_write_text
from .execute import EXECUTORS, PlannedRun, SlurmOptions, execute, plan
from .grid import Grid, GridRun
from .report import build_report, format_report, write_report

__all__ = [
    "EXECUTORS",
    "AblationFailed",
    "Grid",
    "GridRun",
    "PlannedRun",
    "SlurmOptions",
    "ablate",
    "build_report",
    "format_report",
    "plan",
    "write_report",
]


class AblationFailed(RuntimeError):
    """Some runs of the grid failed; the report holds the others."""


def ablate(
    grid: Grid,
    out: str | Path,
    *,
    jobs: int = 1,
    executor: str = "local",
    slurm: SlurmOptions | None = None,
    dry_run: bool = False,
    report_only: bool = False,
    report_dir: str | Path | None = None,
    plots: bool = True,
    progress: Callable[[str], None] = print,
) -> dict[str, Any] | None:
    """Run ``grid`` in ``out`` and write its report; returns the report (``None`` for a
    dry run). ``dry_run`` only says what would run; ``report_only`` trains nothing.
    The report (and a copy of the grid, ``grid.yaml``) goes to ``report_dir`` (default
    ``out``): several grids can share one folder of runs, each with its own report.
    Raises :class:`AblationFailed` after the report when some runs failed."""
    out = Path(out)
    planned = plan(grid, out)
    pending = [p for p in planned if p.action != "done"]
    counts = {a: sum(p.action == a for p in planned) for a in ("done", "resume", "new")}
    progress(
        f"{len(planned)} runs ({len(grid.variants)} variants x {len(grid.seeds)} seeds) in "
        f"{out}: {counts['done']} finished, {counts['resume']} to resume, {counts['new']} new"
    )
    if dry_run:
        for p in pending:
            after = f" after epoch {p.epochs_done}" if p.action == "resume" else ""
            progress(f"  would {p.action}{after}: {p.run.label} -> {p.run.config.out}")
        return None
    report_to = Path(report_dir) if report_dir is not None else out
    out.mkdir(parents=True, exist_ok=True)
    report_to.mkdir(parents=True, exist_ok=True)
    atomic_write_text(report_to / "grid.yaml", _grid_yaml(grid))
    outcomes = (
        []
        if report_only
        else execute(
            pending, root=out, jobs=jobs, executor=executor, slurm=slurm, progress=progress
        )
    )
    report = write_report(grid, out, report_dir=report_to, plots=plots)
    failed = [o[0].run.label for o in outcomes if o[2] is not None]
    if failed:
        raise AblationFailed(
            f"{len(failed)} run(s) failed: {', '.join(failed)}; the report covers the others "
            "(run the same command again to retry them)"
        )
    return report


def _grid_yaml(grid: Grid) -> str:
    import yaml

    return yaml.safe_dump(grid.to_dict(), sort_keys=False, allow_unicode=True)

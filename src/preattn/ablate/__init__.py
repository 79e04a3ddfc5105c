"""``preattn ablate GRID.yaml``: paired, resumable ablations over variants and seeds.

:func:`ablate` (:mod:`~preattn.ablate.run`) plans a grid's runs, trains the unfinished
ones and writes the report, a :class:`GridReport` (:mod:`~preattn.ablate.results`) built
once from the runs (:func:`build_grid_report`) and rendered as report.json, report.md and
figures; :func:`compare` is the grid of placements.
"""

from __future__ import annotations

from .collect import build_grid_report
from .compare import compare, placement_grid
from .execute import EXECUTORS, PlannedRun, SlurmOptions, execute, plan
from .grid import Grid, GridRun
from .report import build_report, format_report, write_report
from .results import GridReport, VariantResult
from .run import AblationFailed, ablate

__all__ = [
    "EXECUTORS",
    "AblationFailed",
    "Grid",
    "GridReport",
    "GridRun",
    "PlannedRun",
    "SlurmOptions",
    "VariantResult",
    "ablate",
    "build_grid_report",
    "build_report",
    "compare",
    "execute",
    "format_report",
    "placement_grid",
    "plan",
    "write_report",
]

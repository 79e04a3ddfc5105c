"""``preattn ablate GRID.yaml``: paired, resumable ablations over variants and seeds.

:func:`ablate` (:mod:`~preattn.ablate.run`) plans a grid's runs, trains the unfinished
ones and writes the report; :func:`compare` is the grid of placements.
"""

from __future__ import annotations

from .compare import compare, placement_grid
from .execute import EXECUTORS, PlannedRun, SlurmOptions, execute, plan
from .grid import Grid, GridRun
from .report import build_report, format_report, write_report
from .run import AblationFailed, ablate

__all__ = [
    "EXECUTORS",
    "AblationFailed",
    "Grid",
    "GridRun",
    "PlannedRun",
    "SlurmOptions",
    "ablate",
    "build_report",
    "compare",
    "execute",
    "format_report",
    "placement_grid",
    "plan",
    "write_report",
]

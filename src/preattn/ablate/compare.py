"""``compare``: the paired comparison of placements, as an ablation grid.

``compare(base, placements, seeds)`` is :func:`preattn.ablate.ablate` on the grid whose
variants are the placements (``{"none": {"placement": "none"}, ...}``), the first one the
reference: every placement is trained with the same seeds in ``out/<placement>/seed<k>/``,
and ``report.md`` / ``report.json`` give per placement the final test accuracy (mean,
Student-t 95 % interval) and the paired difference to the reference. Running it again
resumes: finished runs are kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import _validate
from ..spec import PLACEMENTS
from ..train.config import TrainConfig
from ..train.rundir import default_run_dir
from .grid import Grid
from .run import ablate

__all__ = ["compare", "placement_grid"]


def placement_grid(base: TrainConfig, placements: Sequence[str], seeds: Sequence[int]) -> Grid:
    """The :class:`~preattn.ablate.Grid` of ``base`` with one variant per placement."""
    if not placements:
        raise ValueError("placements must name at least one placement, got []")
    for placement in placements:
        _validate.choice("placements", placement, PLACEMENTS)
    if not seeds:
        raise ValueError("seeds must name at least one seed, got []")
    for name, values in (("placements", placements), ("seeds", seeds)):
        repeated = sorted({v for v in values if list(values).count(v) > 1})
        if repeated:
            raise ValueError(f"{name} must not repeat, got {list(values)} ({repeated} twice)")
    values = base.to_dict()
    for key in ("seed", "out", "placement"):
        values.pop(key)
    return Grid.from_dict(
        {
            "base": values,
            "variants": {p: {"placement": p} for p in placements},
            "reference": placements[0],
            "seeds": [int(s) for s in seeds],
        },
        source="compare",
    )


def compare(
    base: TrainConfig, placements: Sequence[str], seeds: Sequence[int], *, jobs: int = 1
) -> dict[str, Any]:
    """Train ``base`` once per (placement, seed) in ``base.out`` (default: a new
    ``runs/<date>-<time>-compare``) and return the report (:func:`preattn.ablate.ablate`)."""
    grid = placement_grid(base, placements, seeds)
    out = base.out or str(default_run_dir("compare"))
    report = ablate(grid, out, jobs=jobs)
    if report is None:  # only a dry run returns None
        raise RuntimeError("ablate returned no report")
    return report

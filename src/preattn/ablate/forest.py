"""The forest plot: every primary contrast of a set of grids in one figure.

One row per decided variant (a variant with a ``verdict`` in its grid's report): its paired
difference to the grid's reference on the primary metric, ``d̄`` with its 95 % interval, in
points (``100 ×`` the accuracy difference), the band ``±Δ`` of the grid's smallest effect
of interest around zero, and the verdict word at the right. A reader sees at a glance which
intervals leave the band (a difference that matters), which lie inside it (equivalent) and
which straddle its edge (undecided).

:func:`primary_contrasts` reads the rows from reports (:class:`~preattn.ablate.results.GridReport`,
or ``report.json``'s content read into one), so the figure can be drawn from committed
reports without their runs; :func:`forest_figure` draws
them on a :class:`matplotlib.figure.Figure` (no global backend is touched).
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .._io import atomic_write
from .results import GridReport, PairedDifference, Verdict

__all__ = [
    "Contrast",
    "forest_figure",
    "primary_contrasts",
    "read_reports",
    "save_forest",
    "write_forest",
]

_TITLE_CHARS = 60  # a title line's length that stays inside the 9-inch figure above its axes
_COLOURS = {
    "supported": "tab:green",
    "opposite": "tab:red",
    "equivalent": "tab:blue",
    "undecided": "tab:grey",
}


@dataclass(frozen=True)
class Contrast:
    """One primary contrast: ``variant − reference`` on ``metric`` in grid ``grid``.

    ``mean``, ``low``, ``high``: the paired difference and its 95 % interval (accuracy
    fractions; ``low``/``high`` ``None`` below 2 seeds); ``margin``: the smallest effect of
    interest; ``verdict``: the report's word; ``n``: the seeds."""

    grid: str
    variant: str
    reference: str
    metric: str
    mean: float
    low: float | None
    high: float | None
    margin: float
    verdict: str
    n: int

    @classmethod
    def of(
        cls,
        grid: str,
        variant: str,
        reference: str,
        metric: str,
        diff: PairedDifference,
        decision: Verdict,
    ) -> Contrast:
        """The contrast of a paired difference ``diff`` (mean, interval) and its
        ``decision`` (margin, verdict, n)."""
        low, high = diff.ci95 or (None, None)
        if diff.mean is None:
            raise ValueError(f"{grid}: {variant} − {reference}: a contrast needs a mean, got None")
        return cls(
            grid,
            variant,
            reference,
            metric,
            float(diff.mean),
            low,
            high,
            float(decision.margin),
            decision.word,
            int(decision.n),
        )

    @property
    def label(self) -> str:
        metric = "" if self.metric == "test_acc" else f", {self.metric}"
        return f"{self.grid}: {self.variant} − {self.reference}{metric} (n={self.n})"


def primary_contrasts(
    named_reports: Iterable[tuple[str, GridReport | Mapping[str, Any]]],
) -> list[Contrast]:
    """The decided contrasts of each ``(grid name, report)`` (a
    :class:`~preattn.ablate.results.GridReport` or ``report.json``'s content), in the
    reports' order."""
    rows = []
    for grid, report in named_reports:
        typed = report if isinstance(report, GridReport) else GridReport.from_json(report)
        for variant in typed.decided:
            decision = variant.verdict
            if decision is None:
                continue
            metric = decision.metric or "test_acc"
            diff = variant.difference(metric)
            if diff is None:
                raise ValueError(
                    f"{grid}: variant {variant.name!r} has a verdict on {metric!r} but no "
                    "paired difference there"
                )
            rows.append(Contrast.of(grid, variant.name, typed.reference, metric, diff, decision))
    return rows


def read_reports(paths: Sequence[str | Path]) -> list[tuple[str, GridReport]]:
    """``(grid name, report)`` of each ``report.json`` (a file, or a folder holding one);
    the grid's name is its folder's."""
    out = []
    for path in map(Path, paths):
        file = path / "report.json" if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"{file}: no report.json there")
        out.append(
            (file.parent.name, GridReport.from_json(json.loads(file.read_text(encoding="utf-8"))))
        )
    return out


def forest_figure(
    contrasts: Sequence[Contrast],
    title: str = "Primary contrasts",
    *,
    scale: float = 100.0,
    unit: str = "accuracy points",
) -> Figure:
    """The forest plot of ``contrasts`` (module docstring); differences times ``scale``, in
    ``unit`` (accuracy fractions as points by default; ``scale=1`` for a metric of one's own)."""
    if not contrasts:
        raise ValueError("a forest plot needs at least one decided contrast, got none")
    rows = len(contrasts)
    fig = Figure(figsize=(9.0, 1.2 + 0.45 * rows))
    ax = fig.add_subplot()
    for row, c in enumerate(contrasts):
        y = rows - 1 - row
        margin = scale * c.margin
        ax.fill_between([-margin, margin], y - 0.4, y + 0.4, color="tab:blue", alpha=0.12, lw=0)
        colour = _COLOURS.get(c.verdict, "black")
        if c.low is not None and c.high is not None:
            ax.plot([scale * c.low, scale * c.high], [y, y], color=colour, lw=2)
        ax.plot([scale * c.mean], [y], "o", color=colour)
    ax.axvline(0.0, color="black", lw=0.8)
    ax.set_yticks(range(rows), [c.label for c in reversed(contrasts)], fontsize=8)
    ax.set_ylim(-0.6, rows - 0.4)
    ax.set_xlabel(f"difference, {unit} [95 % interval]; shaded: ±margin")
    right = ax.twinx()  # the verdicts, on the same rows
    right.set_ylim(ax.get_ylim())
    right.set_yticks(range(rows), [c.verdict for c in reversed(contrasts)], fontsize=8)
    for label, c in zip(right.get_yticklabels(), reversed(contrasts), strict=True):
        label.set_color(_COLOURS.get(c.verdict, "black"))
    ax.set_title("\n".join(textwrap.wrap(title, _TITLE_CHARS)))  # lines tight_layout can fit
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def write_forest(
    named_reports: Iterable[tuple[str, GridReport | Mapping[str, Any]]],
    path: str | Path,
    title: str = "Primary contrasts",
) -> bool:
    """Draw the forest plot of the reports' decided contrasts into ``path`` (PNG, written
    atomically); False (and nothing written) when none is decided."""
    return save_forest(primary_contrasts(named_reports), path, title)


def save_forest(
    contrasts: Sequence[Contrast],
    path: str | Path,
    title: str = "Primary contrasts",
    *,
    scale: float = 100.0,
    unit: str = "accuracy points",
) -> bool:
    """:func:`forest_figure` of ``contrasts`` written atomically to ``path`` (PNG); False
    (and nothing written) without contrasts."""
    if not contrasts:
        return False
    fig = forest_figure(contrasts, title, scale=scale, unit=unit)
    atomic_write(Path(path), lambda tmp: FigureCanvasAgg(fig).print_png(str(tmp)))
    return True

"""The figures of a command grid (:mod:`preattn.ablate.commands`), from its report.

* ``metric.png``: each seed's metric per variant, the seed's runs joined by a line (the
  pairing), beside each variant's mean with its Student-t 95 % interval as an error bar;
* ``forest.png``: the decided contrasts (a ``primary`` declared in the grid), each paired
  difference with its interval, the ``±sesoi`` band and the verdict
  (:mod:`preattn.ablate.forest`), in the metric's own units.

Both are drawn from a :class:`~preattn.ablate.command_results.CommandReport` (or
``report.json``'s content read into one) on :class:`matplotlib.figure.Figure` objects and
written atomically.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .._io import atomic_write
from .command_results import CommandReport
from .forest import Contrast, save_forest

__all__ = ["command_contrasts", "metric_figure", "plot_command_report"]


def _typed(report: CommandReport | Mapping[str, Any]) -> CommandReport:
    return report if isinstance(report, CommandReport) else CommandReport.from_json(report)


def metric_figure(report: CommandReport | Mapping[str, Any], title: str) -> Figure:
    """Each seed's metric per variant, joined across variants, with the means' intervals."""
    rows = _typed(report).variants
    names = [row.variant for row in rows]
    fig = Figure(figsize=(max(4.0, 1.3 * len(names) + 2.0), 4.0))
    ax = fig.add_subplot()
    seeds = sorted({seed for row in rows for seed in row.per_seed})
    for seed in seeds:
        xs = [i for i, row in enumerate(rows) if seed in row.per_seed]
        ys = [rows[i].per_seed[seed] for i in xs]
        ax.plot(xs, ys, "o-", color="grey", alpha=0.5, lw=1, ms=4)
    for i, row in enumerate(rows):
        mean = row.summary.mean
        if mean is None:
            continue
        low, high = row.summary.ci95 or (mean, mean)
        ax.errorbar(
            [i + 0.15],
            [mean],
            yerr=[[mean - low], [high - mean]],
            fmt="s",
            color="black",
            capsize=4,
        )
    ax.set_xticks(range(len(names)), names)
    ax.set_xlim(-0.5, len(names) - 0.5)
    ax.set_ylabel(_typed(report).metric)
    ax.set_title(f"{title}: each seed (grey, joined) and the mean [95 %]")
    fig.tight_layout()
    return fig


def command_contrasts(report: CommandReport | Mapping[str, Any], grid: str) -> list[Contrast]:
    """The decided rows of a command grid's report as forest-plot contrasts."""
    typed = _typed(report)
    return [
        Contrast.of(grid, row.variant, typed.reference, typed.metric, row.difference, row.decision)
        for row in typed.variants
        if row.difference is not None and row.decision is not None
    ]


def plot_command_report(
    report: CommandReport | Mapping[str, Any], folder: Path, title: str
) -> list[Path]:
    """Write ``metric.png`` (and ``forest.png`` when a contrast is decided) into ``folder``;
    returns the paths written."""
    typed = _typed(report)
    fig = metric_figure(typed, title)
    written = [folder / "metric.png"]
    atomic_write(written[0], lambda tmp: FigureCanvasAgg(fig).print_png(str(tmp)))
    contrasts = command_contrasts(typed, title)
    if save_forest(contrasts, folder / "forest.png", title, scale=1.0, unit=typed.metric):
        written.append(folder / "forest.png")
    return written

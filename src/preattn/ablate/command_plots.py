"""The figures of a command grid (:mod:`preattn.ablate.commands`), from its report.

* ``metric.png``: each seed's metric per variant, the seed's runs joined by a line (the
  pairing), beside each variant's mean with its Student-t 95 % interval as an error bar;
* ``forest.png``: the decided contrasts (a ``primary`` declared in the grid), each paired
  difference with its interval, the ``±sesoi`` band and the verdict
  (:mod:`preattn.ablate.forest`), in the metric's own units.

Both are drawn on :class:`matplotlib.figure.Figure` objects and written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .._io import atomic_write
from .forest import Contrast, save_forest
from .results import PairedDifference, Verdict

__all__ = ["command_contrasts", "metric_figure", "plot_command_report"]


def metric_figure(report: dict[str, Any], title: str) -> Figure:
    """Each seed's metric per variant, joined across variants, with the means' intervals."""
    rows = report["variants"]
    names = [row["variant"] for row in rows]
    fig = Figure(figsize=(max(4.0, 1.3 * len(names) + 2.0), 4.0))
    ax = fig.add_subplot()
    seeds = sorted({seed for row in rows for seed in row["per_seed"]}, key=int)
    for seed in seeds:
        xs = [i for i, row in enumerate(rows) if seed in row["per_seed"]]
        ys = [rows[i]["per_seed"][seed] for i in xs]
        ax.plot(xs, ys, "o-", color="grey", alpha=0.5, lw=1, ms=4)
    for i, row in enumerate(rows):
        summary = row["summary"]
        if summary["mean"] is None:
            continue
        low, high = summary["ci95"] or (summary["mean"], summary["mean"])
        ax.errorbar(
            [i + 0.15],
            [summary["mean"]],
            yerr=[[summary["mean"] - low], [high - summary["mean"]]],
            fmt="s",
            color="black",
            capsize=4,
        )
    ax.set_xticks(range(len(names)), names)
    ax.set_xlim(-0.5, len(names) - 0.5)
    ax.set_ylabel(report["metric"])
    ax.set_title(f"{title}: each seed (grey, joined) and the mean [95 %]")
    fig.tight_layout()
    return fig


def command_contrasts(report: dict[str, Any], grid: str) -> list[Contrast]:
    """The decided rows of a command grid's report as forest-plot contrasts."""
    out = []
    for row in report["variants"]:
        decision, diff = row.get("decision"), row.get("difference")
        if not decision or not diff:
            continue
        out.append(
            Contrast.of(
                grid,
                row["variant"],
                report["reference"],
                report["metric"],
                PairedDifference.from_json(diff),
                Verdict.from_json(decision),
            )
        )
    return out


def plot_command_report(report: dict[str, Any], folder: Path, title: str) -> list[Path]:
    """Write ``metric.png`` (and ``forest.png`` when a contrast is decided) into ``folder``;
    returns the paths written."""
    fig = metric_figure(report, title)
    written = [folder / "metric.png"]
    atomic_write(written[0], lambda tmp: FigureCanvasAgg(fig).print_png(str(tmp)))
    contrasts = command_contrasts(report, title)
    if save_forest(contrasts, folder / "forest.png", title, scale=1.0, unit=report["metric"]):
        written.append(folder / "forest.png")
    return written

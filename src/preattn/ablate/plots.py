"""PNG plots of a grid's finished runs, each titled with the grid's name.

* ``accuracy.png``: test accuracy per evaluated epoch, mean over seeds with its Student-t
  95 % band, clipped to [0, 100] %; where every variant was evaluated at its last epoch
  only, each seed's accuracy per variant instead, the seed's runs joined by a line (the
  pairing), beside the mean and its interval as an error bar;
* ``accuracy-<corruption>.png`` (e.g. ``accuracy-noise-0.2.png``): the same per-seed figure
  for the accuracy on each corrupted test set the runs were evaluated on after their last
  epoch (``eval_corrupt``), each character of the name other than letters, digits, ``.``,
  ``_`` and ``-`` written ``-``;
* ``lambda.png``: λ per block over training (mean over seeds), one panel per variant that
  has λ, the total change Δλ in each label, on a shared axis at least 0.1 tall (as a run's
  own ``lambda.png``: a change of 5·10⁻⁶ is drawn flat, as it is);
* ``modulation.png``: per attended block, each variant's modulation per epoch (log scale,
  with room around the points), whole epochs on the x axis, one legend for the figure;
* ``accuracy_vs_time.png``: mean test accuracy against mean elapsed seconds (training and
  evaluation); a variant evaluated once shows its accuracy interval and its seeds' range
  of seconds as error bars. Runs that held training images out (``holdout``) score the
  test set after their last epoch only; for them this figure plots the validation
  accuracy of every evaluated epoch instead;
* ``accuracy-validation.png`` (runs with ``holdout``): validation accuracy per evaluated
  epoch, as ``accuracy.png``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from .._figure import new_figure
from .._io import atomic_write
from ..modulation import MODULATION_FLOOR
from ..train.plots import lambda_limits
from .finals import (
    TEST,
    VALIDATION,
    Runs,
    corruption_names,
    final_accuracies,
    has_validation,
    metric_label,
)
from .grid import Grid
from .stats import summarise

__all__ = ["plot_grid"]


def _save(fig: Any, path: Path) -> Path:
    if fig.get_layout_engine() is None:  # a figure with its own layout keeps it
        fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    return path


def grid_name(grid: Grid, root: Path) -> str:
    """The name a figure's title gives the grid: its file's stem (``claim5-vs-cbam``), or
    the report folder's name for a grid built in code."""
    source = Path(grid.source.split(" (")[0])
    return source.stem if source.suffix in (".yaml", ".yml") else root.name


def _per_epoch(
    by_seed: dict[int, list[dict[str, Any]]],
    key: str,
    bounds: tuple[float, float] | None = None,
) -> dict[int, dict[str, Any]]:
    """``{epoch: summary over seeds of key}`` for the epochs whose records all hold ``key``
    (a grid evaluated only at the last epoch has test accuracy there alone)."""
    epochs = min(len(rows) for rows in by_seed.values())
    return {
        e + 1: summarise([rows[e][key] for rows in by_seed.values()], bounds)
        for e in range(epochs)
        if all(key in rows[e] for rows in by_seed.values())
    }


def _epoch_ticks(ax: Any, epochs: int) -> None:
    """Whole epochs on the x axis, with room around the first and the last point."""
    ax.set_xlim(0.5, epochs + 0.5)
    if epochs <= 20:
        ax.set_xticks(range(1, epochs + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _interval(stats: dict[str, Any], scale: float = 100.0) -> np.ndarray | None:
    """``[[mean − low], [high − mean]]`` of a summary's 95 % interval, for ``errorbar``."""
    if stats["ci95"] is None:
        return None
    low, high = stats["ci95"]
    return scale * np.array([[stats["mean"] - low], [high - stats["mean"]]])


def _plot_accuracy_per_seed(runs: Runs, name: str, epoch: int, metric: str = TEST) -> Any:
    """Where every variant was evaluated once (at its last epoch): x is the variant; each
    seed's accuracy on ``metric`` is a dot and one grey line joins a seed across the
    variants (the pairing the differences are taken over); beside the dots, the mean with
    its clipped 95 % interval."""
    finals = {v: final_accuracies(by_seed, metric) for v, by_seed in runs.items()}
    finals = {v: by_seed for v, by_seed in finals.items() if by_seed}
    variants = list(finals)
    seeds = sorted({s for by_seed in finals.values() for s in by_seed})
    fig = new_figure(figsize=(min(14.0, max(6.5, 1.1 * len(variants) + 2)), 4.8))
    ax = fig.subplots()
    x = np.arange(len(variants), dtype=float)
    for seed in seeds:
        values = [100 * by_seed.get(seed, np.nan) for by_seed in finals.values()]
        ax.plot(x, values, color="grey", alpha=0.5, lw=1, marker="o", ms=4, zorder=1)
    ax.plot([], [], color="grey", alpha=0.5, lw=1, marker="o", ms=4, label="one seed")
    for index, by_seed in enumerate(finals.values()):
        stats = summarise(list(by_seed.values()), (0.0, 1.0))
        ax.errorbar(
            x[index] + 0.15,
            100 * stats["mean"],
            yerr=_interval(stats),
            fmt="s",
            color=f"C{index}",
            capsize=4,
            zorder=2,
            label="mean, 95 % interval" if index == 0 else None,
        )
    many = len(variants) > 5  # names turned so that they do not overlap
    ax.set_xticks(
        x,
        [f"{v} (n={len(finals[v])})" for v in variants],
        rotation=30 if many else 0,
        ha="right" if many else "center",
    )
    ax.set_xlim(-0.5, len(variants) - 0.5)
    ax.ticklabel_format(axis="y", useOffset=False)
    measured = metric_label(metric).replace("`", "")
    ax.set(
        xlabel="variant",
        ylabel=f"{measured} (%)",
        title=f"{name}\n{measured} after epoch {epoch}; a line joins one seed's runs",
    )
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return fig


def _plot_accuracy_per_epoch(runs: Runs, name: str, metric: str = TEST) -> Any:
    """Mean accuracy on ``metric`` (``test_acc`` or ``val_acc``) per evaluated epoch with
    its clipped 95 % band; a variant evaluated at one epoch only gets an error bar there,
    beside the others'."""
    fig = new_figure(figsize=(7, 4.5))
    ax = fig.subplots()
    dodge = 0.08  # variants side by side where an epoch has one point each (error bars)
    for index, (variant, by_seed) in enumerate(runs.items()):
        per_epoch = _per_epoch(by_seed, metric, (0.0, 1.0))
        x = np.array(list(per_epoch), dtype=float)
        stats = list(per_epoch.values())
        mean = np.array([100 * s["mean"] for s in stats])
        label = f"{variant} (n={len(by_seed)})"
        known = all(s["ci95"] is not None for s in stats)
        if len(x) > 1:
            (line,) = ax.plot(x, mean, marker="o", label=label)
            if known:
                low = [100 * s["ci95"][0] for s in stats]
                high = [100 * s["ci95"][1] for s in stats]
                ax.fill_between(x, low, high, color=line.get_color(), alpha=0.15)
        else:
            x = x + dodge * (index - (len(runs) - 1) / 2)
            ax.errorbar(x, mean, yerr=_interval(stats[0]), fmt="o", capsize=4, label=label)
    _epoch_ticks(ax, max(min(len(r) for r in b.values()) for b in runs.values()))
    measured = metric_label(metric)
    ax.set(
        xlabel="epoch",
        ylabel=f"{measured} (%)",
        title=f"{name}: {measured}, mean and 95 % interval over seeds",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _plot_lambda(runs: Runs, name: str) -> Any | None:
    """One panel per variant with λ: each block's λ per epoch (mean over seeds), from its
    starting value at epoch 0; a shared linear axis without offset notation."""
    with_lambda = {
        v: by_seed
        for v, by_seed in runs.items()
        if any(rows[-1].get("lambda") for rows in by_seed.values())
    }
    if not with_lambda:
        return None
    cols = min(3, len(with_lambda))
    rows_n = -(-len(with_lambda) // cols)
    fig = new_figure(figsize=(4.2 * cols, 3.2 * rows_n + 0.4))
    axes = fig.subplots(rows_n, cols, squeeze=False, sharey=True)
    drawn: list[float] = []
    for ax, (variant, by_seed) in zip(axes.flat, with_lambda.items(), strict=False):
        first = next(iter(by_seed.values()))
        for block in first[-1]["lambda"]:
            start = np.mean([rows[0]["lambda_start"][block] for rows in by_seed.values()])
            per_epoch = [
                np.mean([rows[e]["lambda"][block] for rows in by_seed.values()])
                for e in range(min(len(r) for r in by_seed.values()))
            ]
            values = [float(start), *map(float, per_epoch)]
            label = f"{block}  (Δλ = {values[-1] - values[0]:+.3g})"
            ax.plot(range(len(values)), values, marker=".", label=label)
            drawn += [v for v in values if np.isfinite(v)]
        ax.set_title(variant, fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if drawn:  # shared: setting one panel's limits sets them all
        axes.flat[0].set_ylim(*lambda_limits(drawn))
    for ax in list(axes.flat)[len(with_lambda) :]:
        ax.set_visible(False)
    for row in axes:
        row[0].set_ylabel("λ (mean over seeds)")
    for ax in axes.flat:
        ax.ticklabel_format(axis="y", useOffset=False)
    fig.suptitle(f"{name}: λ per block over training")
    return fig


def _plot_modulation(runs: Runs, name: str) -> Any | None:
    """Per attended block, each variant's modulation per epoch (mean over seeds, in
    percent, log scale labelled at 1-2-5 steps), with the 2 % below which attention is
    effectively off; one legend for the whole figure."""
    blocks = sorted(
        {
            b
            for by_seed in runs.values()
            for rows in by_seed.values()
            for b in rows[-1].get("modulation", {})
        }
    )
    if not blocks:
        return None
    cols = min(4, len(blocks))  # wrapped: a MobileNet has 16 attended blocks
    rows_n = -(-len(blocks) // cols)
    fig = new_figure(figsize=(4.2 * cols, 3.3 * rows_n + 1.0), layout="constrained")
    axes = fig.subplots(rows_n, cols, squeeze=False)
    for ax in list(axes.flat)[len(blocks) :]:
        ax.set_visible(False)
    colours = {variant: f"C{index}" for index, variant in enumerate(runs)}
    for ax, block in zip(axes.flat, blocks, strict=False):
        drawn = [100 * MODULATION_FLOOR]
        last_epoch = 1
        for variant, by_seed in runs.items():
            if not all(block in rows[-1].get("modulation", {}) for rows in by_seed.values()):
                continue
            epochs = min(len(rows) for rows in by_seed.values())
            values = [
                100 * np.mean([rows[e]["modulation"][block] for rows in by_seed.values()])
                for e in range(epochs)
            ]
            ax.plot(range(1, epochs + 1), values, marker="o", color=colours[variant])
            drawn += [v for v in values if v > 0]
            last_epoch = max(last_epoch, epochs)
        ax.axhline(100 * MODULATION_FLOOR, color="grey", ls="--", lw=1)
        ax.set_yscale("log")
        ax.set_ylim(min(drawn) / 1.6, max(drawn) * 1.6)  # no point on the frame
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        _epoch_ticks(ax, last_epoch)
        ax.set(xlabel="epoch", ylabel="modulation (%, log scale)", title=f"{block}")
        ax.grid(alpha=0.3, which="both")
    handles = [
        Line2D([], [], color=colour, marker="o", label=variant)
        for variant, colour in colours.items()
        if any(
            b in rows[-1].get("modulation", {}) for rows in runs[variant].values() for b in blocks
        )
    ]
    handles.append(Line2D([], [], color="grey", ls="--", lw=1, label="2 % (off below)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(6, len(handles)), fontsize=8)
    fig.suptitle(f"{name}: how much attention changes its input, std(w)/mean(w), mean over seeds")
    return fig


def _plot_accuracy_vs_time(grid: Grid, runs: Runs, name: str, metric: str = TEST) -> Any:
    """Mean accuracy on ``metric`` (``test_acc`` or ``val_acc``) against mean elapsed
    seconds per evaluated epoch; a variant evaluated once is one point with its accuracy
    interval and its seeds' min-max seconds."""
    fig = new_figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for index, (variant, by_seed) in enumerate(runs.items()):
        acc = _per_epoch(by_seed, metric, (0.0, 1.0))
        seconds = _per_epoch(by_seed, "elapsed_s")
        epochs = [e for e in acc if e in seconds]
        if not epochs:  # no epoch that every seed evaluated and timed
            continue
        x = [seconds[e]["mean"] for e in epochs]
        y = [100 * acc[e]["mean"] for e in epochs]
        if len(epochs) > 1:
            ax.plot(x, y, marker="o", color=f"C{index}", label=variant)
            continue
        spent = [by_seed[s][epochs[0] - 1]["elapsed_s"] for s in by_seed]
        ax.errorbar(
            x,
            y,
            yerr=_interval(acc[epochs[0]]),
            xerr=[[x[0] - min(spent)], [max(spent) - x[0]]],
            fmt="o",
            capsize=4,
            color=f"C{index}",
            label=variant,
        )
    if grid.target_acc is not None:
        ax.axhline(100 * grid.target_acc, color="grey", linestyle="--", linewidth=1)
    ax.ticklabel_format(axis="both", useOffset=False)
    measured = metric_label(metric)
    ax.set(
        xlabel="seconds (training + evaluation, mean over seeds)",
        ylabel=f"{measured} (%)",
        title=f"{name}: {measured} against wall time",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_grid(grid: Grid, root: Path, runs: Runs) -> list[Path]:
    """Write the plots of ``runs`` (``{variant: {seed: metrics rows}}``) into ``root``."""
    runs = {v: by_seed for v, by_seed in runs.items() if by_seed}
    if not runs:
        return []
    name = grid_name(grid, root)
    validated = has_validation(runs)
    # the evaluated epochs, when every variant has the same ones
    evaluated = {tuple(_per_epoch(by_seed, TEST)) for by_seed in runs.values()}
    once = next(iter(evaluated)) if len(evaluated) == 1 else ()
    figures = {
        "accuracy.png": (
            _plot_accuracy_per_seed(runs, name, once[0])
            if len(once) == 1
            else _plot_accuracy_per_epoch(runs, name)
        ),
        "lambda.png": _plot_lambda(runs, name),
        "modulation.png": _plot_modulation(runs, name),
        "accuracy_vs_time.png": _plot_accuracy_vs_time(
            grid, runs, name, VALIDATION if validated else TEST
        ),
    }
    if validated:
        figures["accuracy-validation.png"] = _plot_accuracy_per_epoch(runs, name, VALIDATION)
    last = max(rows[-1]["epoch"] for by_seed in runs.values() for rows in by_seed.values())
    for corruption in corruption_names(runs):
        file = "accuracy-" + re.sub(r"[^A-Za-z0-9._-]", "-", corruption) + ".png"
        figures[file] = _plot_accuracy_per_seed(runs, name, last, corruption)
    return [_save(fig, root / file) for file, fig in figures.items() if fig is not None]

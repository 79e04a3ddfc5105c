"""PNG plots of a grid's finished runs.

* ``accuracy.png``: test accuracy per evaluated epoch, mean over seeds with its Student-t
  95 % band (an error bar where only the last epoch was evaluated);
* ``lambda.png``: λ per block over training (mean over seeds), one panel per variant that
  has λ;
* ``accuracy_vs_time.png``: mean test accuracy against mean elapsed seconds (training and
  evaluation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from .._io import atomic_write
from ..modulation import MODULATION_FLOOR
from .grid import Grid
from .stats import summarise

__all__ = ["plot_grid"]

Runs = dict[str, dict[int, list[dict[str, Any]]]]


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path


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


def _plot_modulation(runs: Runs, root: Path) -> Path | None:
    """``modulation.png``: per attended block, each variant's modulation per epoch (mean
    over seeds, in percent), with the 2 % below which attention is effectively off."""
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
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3.3 * rows_n + 0.5), squeeze=False)
    for ax in list(axes.flat)[len(blocks) :]:
        ax.set_visible(False)
    for ax, block in zip(axes.flat, blocks, strict=False):
        for variant, by_seed in runs.items():
            if not all(block in rows[-1].get("modulation", {}) for rows in by_seed.values()):
                continue
            epochs = min(len(rows) for rows in by_seed.values())
            values = [
                100 * np.mean([rows[e]["modulation"][block] for rows in by_seed.values()])
                for e in range(epochs)
            ]
            ax.plot(range(1, epochs + 1), values, marker="o", label=variant)
        ax.axhline(100 * MODULATION_FLOOR, color="grey", ls="--", lw=1, label="2 %")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="epoch", ylabel="modulation (%, log scale)", title=f"{block}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle("how much attention changes its input: std(w)/mean(w), mean over seeds")
    return _save(fig, root / "modulation.png")


def plot_grid(grid: Grid, root: Path, runs: Runs) -> list[Path]:
    """Write the plots of ``runs`` (``{variant: {seed: metrics rows}}``) into ``root``."""
    runs = {v: by_seed for v, by_seed in runs.items() if by_seed}
    if not runs:
        return []
    written = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    dodge = 0.08  # variants side by side where an epoch has one point each (error bars)
    for index, (variant, by_seed) in enumerate(runs.items()):
        per_epoch = _per_epoch(by_seed, "test_acc", (0.0, 1.0))
        x = np.array(list(per_epoch), dtype=float)
        stats = list(per_epoch.values())
        mean = np.array([100 * s["mean"] for s in stats])
        label = f"{variant} (n={len(by_seed)})"
        known = all(s["ci95"] is not None for s in stats)
        low = np.array([100 * s["ci95"][0] for s in stats]) if known else None
        high = np.array([100 * s["ci95"][1] for s in stats]) if known else None
        if len(x) > 1:
            (line,) = ax.plot(x, mean, marker="o", label=label)
            if known:
                ax.fill_between(x, low, high, color=line.get_color(), alpha=0.15)
        else:  # evaluated at the last epoch only: the interval as an error bar
            x = x + dodge * (index - (len(runs) - 1) / 2)
            bars = None if not known else np.vstack([mean - low, high - mean])
            ax.errorbar(x, mean, yerr=bars, fmt="o", capsize=4, label=label)
    _epoch_ticks(ax, max(min(len(r) for r in b.values()) for b in runs.values()))
    ax.set(
        xlabel="epoch",
        ylabel="test accuracy (%)",
        title="test accuracy, mean and 95 % interval over seeds",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    written.append(_save(fig, root / "accuracy.png"))

    with_lambda = {
        v: by_seed
        for v, by_seed in runs.items()
        if any(rows[-1].get("lambda") for rows in by_seed.values())
    }
    if with_lambda:
        cols = min(3, len(with_lambda))
        rows_n = -(-len(with_lambda) // cols)
        fig, axes = plt.subplots(
            rows_n, cols, figsize=(4.2 * cols, 3.2 * rows_n), squeeze=False, sharey=True
        )
        for ax, (variant, by_seed) in zip(axes.flat, with_lambda.items(), strict=False):
            first = next(iter(by_seed.values()))
            for block in first[-1]["lambda"]:
                start = np.mean([rows[0]["lambda_start"][block] for rows in by_seed.values()])
                per_epoch = [
                    np.mean([rows[e]["lambda"][block] for rows in by_seed.values()])
                    for e in range(min(len(r) for r in by_seed.values()))
                ]
                ax.plot(range(len(per_epoch) + 1), [start, *per_epoch], marker=".", label=block)
            ax.set_title(variant, fontsize=9)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(with_lambda) :]:
            ax.set_visible(False)
        axes[0][0].set_ylabel("λ (mean over seeds)")
        for ax in axes.flat:
            ax.ticklabel_format(axis="y", useOffset=False)
        written.append(_save(fig, root / "lambda.png"))
    modulation = _plot_modulation(runs, root)
    if modulation is not None:
        written.append(modulation)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for variant, by_seed in runs.items():
        acc = _per_epoch(by_seed, "test_acc")
        seconds = _per_epoch(by_seed, "elapsed_s")
        epochs = [e for e in acc if e in seconds]
        ax.plot(
            [seconds[e]["mean"] for e in epochs],
            [100 * acc[e]["mean"] for e in epochs],
            marker="o",
            label=variant,
        )
    if grid.target_acc is not None:
        ax.axhline(100 * grid.target_acc, color="grey", linestyle="--", linewidth=1)
    ax.set(
        xlabel="seconds (training + evaluation, mean over seeds)",
        ylabel="test accuracy (%)",
        title="accuracy against wall time",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    written.append(_save(fig, root / "accuracy_vs_time.png"))
    return written

"""PNG plots of a run: loss per step and epoch, accuracy, LR, λ per block, confusion.

Every figure says what it shows in its title (the run, its last epoch, its accuracy),
labels its axes, gives a colour bar wherever colour carries a value, uses perceptually
uniform colour maps (viridis), integer epoch ticks and no offset notation. The ``*_figure``
functions build the matplotlib figures; the ``plot_*`` functions write them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import MaxNLocator

from .._figure import new_figure
from ..modulation import MODULATION_FLOOR

__all__ = [
    "confusion_figure",
    "history_figure",
    "lambda_figure",
    "lambda_limits",
    "plot_confusion",
    "plot_history",
    "plot_lambda",
]

CMAP = "viridis"


def _epoch_axis(ax, last_epoch: float) -> None:
    """Integer epoch ticks from 0 to the last epoch, with a margin so end points show whole."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    span = max(last_epoch, 1)
    ax.set_xlim(-0.04 * span, span * 1.04)
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)


def _save(fig: Any, path: Path, dpi: int = 100) -> Path:
    fig.savefig(path, dpi=dpi)
    return path


def _smooth(values: Sequence[float], span: int) -> np.ndarray:
    """Exponential moving average with weight ``2 / (span + 1)``, debiased at the start."""
    alpha = 2.0 / (span + 1)
    out, avg, weight = [], 0.0, 0.0
    for v in values:
        avg = (1 - alpha) * avg + alpha * v
        weight = (1 - alpha) * weight + alpha
        out.append(avg / weight)
    return np.asarray(out)


def _run_title(history: Sequence[dict[str, Any]], name: str) -> str:
    """``"runs/fm: epoch 10, test accuracy 91.20 %"``."""
    last = history[-1] if history else {}
    where = f"{name}: " if name else ""
    if "test_acc" not in last:
        return f"{where}no epoch recorded"
    return f"{where}epoch {last['epoch']}, test accuracy {100 * last['test_acc']:.2f} %"


def plot_history(
    history: Sequence[dict[str, Any]],
    out_dir: Path,
    steps: Sequence[dict[str, Any]] = (),
    name: str = "",
) -> list[Path]:
    """Write ``curves.png`` (:func:`history_figure`) and ``lambda.png``
    (:func:`lambda_figure`) of run ``name``."""
    paths = [_save(history_figure(history, steps, name), out_dir / "curves.png")]
    paths.append(plot_lambda(history, out_dir / "lambda.png", name))
    return paths


def history_figure(
    history: Sequence[dict[str, Any]], steps: Sequence[dict[str, Any]] = (), name: str = ""
) -> Any:
    """Loss per step and epoch, accuracy per epoch, learning rate per step.

    ``steps`` are the per-step records (``step``, ``epoch``, ``loss``, ``lr``); steps of
    epoch ``e`` are drawn between ``e − 1`` and ``e`` on the epoch axis.
    """
    epochs = [r["epoch"] for r in history]
    last = max(epochs)
    fig = new_figure(figsize=(14, 4))
    ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)
    if steps:
        per_epoch = max(sum(1 for s in steps if s["epoch"] == steps[0]["epoch"]), 1)
        x = [s["step"] / per_epoch for s in steps]
        losses = [s["loss"] for s in steps]
        ax_loss.plot(x, losses, color="tab:blue", alpha=0.25, lw=0.8, label="train (step)")
        span = max(2, min(50, per_epoch // 5))
        ax_loss.plot(x, _smooth(losses, span), color="tab:blue", label=f"train (EMA {span})")
        ax_lr.plot(x, [s["lr"] for s in steps], color="tab:green")
    else:
        ax_lr.plot(epochs, [r["lr"] for r in history], "o-", color="tab:green")
    ax_loss.plot(
        epochs, [r["train_loss"] for r in history], "o", color="tab:blue", label="train (epoch)"
    )
    tested = [r for r in history if "test_acc" in r]  # evaluated epochs (eval_every)
    ax_loss.plot(
        [r["epoch"] for r in tested],
        [r["test_loss"] for r in tested],
        "o-",
        color="tab:orange",
        label="test (epoch)",
    )
    ax_loss.set(ylabel="cross-entropy (nats)", title="loss")
    ax_acc.plot(epochs, [r["train_acc"] for r in history], "o-", label="train")
    ax_acc.plot([r["epoch"] for r in tested], [r["test_acc"] for r in tested], "o-", label="test")
    validated = [r for r in history if "val_acc" in r]  # a validation set held out (holdout)
    if validated:
        at = [r["epoch"] for r in validated]
        ax_loss.plot(at, [r["val_loss"] for r in validated], "s--", color="tab:red", label="val")
        ax_acc.plot(at, [r["val_acc"] for r in validated], "s--", color="tab:red", label="val")
    ax_acc.set(ylabel="accuracy (fraction)", title="accuracy (end of each epoch)")
    ax_lr.set(ylabel="learning rate", title="learning rate per optimiser step")
    for ax in (ax_loss, ax_acc, ax_lr):
        _epoch_axis(ax, last)
    ax_acc.set_ylim(0, 1)
    ax_loss.legend(fontsize=7)
    ax_acc.legend(fontsize=7)
    fig.suptitle(_run_title(history, name), fontsize=10)
    fig.tight_layout()
    return fig


def _plot_modulation(ax: Any, history: Sequence[dict[str, Any]]) -> None:
    """Modulation per attended block and epoch, in percent, with the 2 % floor."""
    blocks = sorted({k for r in history for k in r.get("modulation", {})})
    for block in blocks:
        xs = [r["epoch"] for r in history if block in r.get("modulation", {})]
        ys = [100 * r["modulation"][block] for r in history if block in r.get("modulation", {})]
        ax.plot(xs, ys, "o-", label=block)
    ax.axhline(100 * MODULATION_FLOOR, color="grey", ls="--", lw=1, label="2 % (check warns)")
    if not blocks:
        ax.text(0.5, 0.5, "no modulation recorded", ha="center", transform=ax.transAxes)
    top = max([100 * v for r in history for v in r.get("modulation", {}).values()] + [3.0])
    ax.set_ylim(0, top * 1.15)
    ax.legend(fontsize=7)
    ax.set(
        ylabel="modulation (% of the input's scale)",
        title="how much attention changes its input (std(w)/mean(w))",
    )
    _epoch_axis(ax, max((r["epoch"] for r in history), default=1))


def lambda_limits(values: Sequence[float], least: float = 0.1) -> tuple[float, float]:
    """The λ axis's limits: the values' range with a 20 % margin, centred, and at least
    ``least`` tall, so a change of a few millionths is drawn as the flat line it is."""
    low, high = min(values), max(values)
    middle, half = (low + high) / 2, max((high - low) / 2 * 1.2, least / 2)
    return middle - half, middle + half


def plot_lambda(history: Sequence[dict[str, Any]], path: Path, name: str = "") -> Path:
    """Write ``lambda.png`` (:func:`lambda_figure`)."""
    return _save(lambda_figure(history, name), path)


def lambda_figure(history: Sequence[dict[str, Any]], name: str = "") -> Any:
    """Two panels: λ per block from its value at the start (epoch 0) to the end of each
    epoch, and the modulation per block (how much attention changes the tensor it acts on,
    :mod:`preattn.modulation`) at the end of each epoch, in percent.

    The λ axis spans at least 0.1, and each label gives the total change Δλ, so a change of
    a few ten-thousandths is drawn as the flat line it is. The modulation axis starts at 0
    and marks the 2 % below which ``preattn check`` calls attention effectively off.
    """
    first = history[0] if history else {}
    start = first.get("lambda_start") or {}
    blocks = sorted({k for r in history for k in r.get("lambda", {})})
    fig = new_figure(figsize=(12, 4))
    ax, ax_mod = fig.subplots(1, 2)
    _plot_modulation(ax_mod, history)
    values_all: list[float] = []
    for block in blocks:
        xs = ([0] if block in start else []) + [r["epoch"] for r in history]
        ys = ([start[block]] if block in start else []) + [
            r["lambda"].get(block, np.nan) for r in history
        ]
        delta = ys[-1] - ys[0]
        ax.plot(xs, ys, "o-", label=f"{block}  (Δλ = {delta:+.3g})")
        values_all += [v for v in ys if np.isfinite(v)]
    if values_all:
        ax.set_ylim(*lambda_limits(values_all))
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no λ-controlled block", ha="center", transform=ax.transAxes)
    ax.set(ylabel="λ (effective)", title="λ per block (epoch 0: at the start)")
    _epoch_axis(ax, max((r["epoch"] for r in history), default=1))
    ax.ticklabel_format(axis="y", useOffset=False)
    fig.suptitle(_run_title(history, name), fontsize=10)
    fig.tight_layout()
    return fig


def plot_confusion(
    matrix: np.ndarray, classes: Sequence[str], path: Path, title: str = "confusion matrix"
) -> Path:
    """Write ``confusion.png`` (:func:`confusion_figure`)."""
    return _save(confusion_figure(matrix, classes, title), path)


def confusion_figure(
    matrix: np.ndarray, classes: Sequence[str], title: str = "confusion matrix"
) -> Any:
    """The confusion matrix (rows: true class, columns: predicted): each cell shows its
    image count, its colour the share of the true class's images (row-normalised)."""
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    n = len(classes)
    size = max(5.0, 0.45 * n + 2)
    fig = new_figure(figsize=(size, size))
    ax = fig.subplots()
    image = ax.imshow(normalised, cmap=CMAP, vmin=0, vmax=1)
    if n <= 30:
        ax.set_xticks(range(n), classes, rotation=90, fontsize=7)
        ax.set_yticks(range(n), classes, fontsize=7)
        if n <= 15:
            for i in range(n):
                for j in range(n):
                    ax.text(
                        j,
                        i,
                        int(matrix[i, j]),
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="black" if normalised[i, j] > 0.5 else "white",
                    )
    ax.set(xlabel="predicted class", ylabel="true class", title=f"{title}\n(cells: images)")
    bar = fig.colorbar(image, ax=ax, fraction=0.046)
    bar.set_label("share of the true class's images")
    fig.tight_layout()
    return fig

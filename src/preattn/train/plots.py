"""PNG plots of a run: loss and accuracy per epoch, λ per block, a confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["plot_confusion", "plot_history"]


def plot_history(history: Sequence[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Write ``curves.png`` (loss, accuracy) and ``lambda.png`` (λ per block) from metrics."""
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], "o-", label="train")
    ax_loss.plot(epochs, [r["test_loss"] for r in history], "o-", label="test")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.plot(epochs, [r["train_acc"] for r in history], "o-", label="train")
    ax_acc.plot(epochs, [r["test_acc"] for r in history], "o-", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    paths = [out_dir / "curves.png"]
    fig.savefig(paths[0], dpi=100)
    plt.close(fig)

    blocks = sorted({k for r in history for k in r.get("lambda", {})})
    fig, ax = plt.subplots(figsize=(6, 4))
    for block in blocks:
        ax.plot(epochs, [r["lambda"].get(block, np.nan) for r in history], "o-", label=block)
    ax.set(xlabel="epoch", ylabel="λ (effective)", title="λ per block")
    ax.grid(alpha=0.3)
    if blocks:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no λ-controlled block", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    paths.append(out_dir / "lambda.png")
    fig.savefig(paths[1], dpi=100)
    plt.close(fig)
    return paths


def plot_confusion(matrix: np.ndarray, classes: Sequence[str], path: Path) -> Path:
    """Row-normalised confusion matrix (rows: true class, columns: predicted)."""
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    n = len(classes)
    size = max(5.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
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
                        color="white" if normalised[i, j] > 0.5 else "black",
                    )
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

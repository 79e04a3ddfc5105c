"""Evaluation: loss, accuracy, per-class accuracy and confusion matrix, across ranks."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._io import atomic_write
from .distributed import all_reduce_sum

__all__ = ["TEST_CORRECT_FILE", "EvalResult", "evaluate", "read_test_correct", "write_test_correct"]

# each test image's outcome at a run's last epoch: what a report's test-set error needs
TEST_CORRECT_FILE = "test_correct.npz"


@dataclass
class EvalResult:
    loss: float
    accuracy: float
    confusion: np.ndarray  # (num_classes, num_classes), rows true, columns predicted
    # (N,) uint8, 1 where the prediction is right, in the order the batches came (this
    # process's images); only when asked for (``keep_correct``)
    correct: np.ndarray | None = None

    @property
    def per_class_accuracy(self) -> np.ndarray:
        totals = self.confusion.sum(axis=1)
        return np.divide(
            np.diag(self.confusion), totals, out=np.full(len(totals), np.nan), where=totals > 0
        )


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    device: torch.device,
    *,
    channels_last: bool = False,
    amp_dtype: torch.dtype | None = None,
    keep_correct: bool = False,
    flip: bool = False,
) -> EvalResult:
    """Evaluate ``model`` in eval mode on ``batches``; sums are reduced over all ranks.
    ``keep_correct``: also return whether each image was classified right
    (:attr:`EvalResult.correct`, this process's images in batch order). ``flip``: score
    each image ``x`` (B, C, H, W) by ``p = (softmax(f(x)) + softmax(f(x[..., ::-1]))) / 2``
    (test-time augmentation with the horizontal mirror), the prediction ``argmax p`` and
    the loss ``-log p[label]``."""
    was_training = model.training
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.float64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    hits: list[torch.Tensor] = []
    for images, labels in batches:
        images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        labels = labels.to(device, non_blocking=True)
        with torch.autocast(
            device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
        ):
            logits = model(images)
            mirrored = model(images.flip(-1)) if flip else None
        if mirrored is None:
            loss_sum += nn.functional.cross_entropy(logits.float(), labels, reduction="sum")
            predicted = logits.argmax(dim=1)
        else:
            log_p = torch.logsumexp(
                torch.stack([logits.float().log_softmax(1), mirrored.float().log_softmax(1)]), 0
            ) - math.log(2)
            loss_sum += nn.functional.nll_loss(log_p, labels, reduction="sum")
            predicted = log_p.argmax(dim=1)
        index = labels * num_classes + predicted
        confusion += torch.bincount(index, minlength=num_classes**2).view_as(confusion)
        if keep_correct:
            hits.append((predicted == labels).to("cpu", torch.uint8))
    all_reduce_sum(confusion)
    all_reduce_sum(loss_sum)
    model.train(was_training)
    total = confusion.sum().item()
    matrix = confusion.cpu().numpy().astype(np.int64)
    return EvalResult(
        loss=loss_sum.item() / max(total, 1),
        accuracy=float(np.trace(matrix)) / max(total, 1),
        confusion=matrix,
        correct=torch.cat(hits).numpy() if keep_correct and hits else None,
    )


def write_test_correct(run: Any, correct: dict[str, np.ndarray]) -> None:
    """Save ``{metric: (N,) uint8}`` (``test_acc`` and corrupted sets' names) as
    ``RUN/test_correct.npz``, written atomically and recorded as the run's; nothing when
    ``correct`` is empty."""
    if not correct:
        return
    path = Path(run.path) / TEST_CORRECT_FILE
    arrays = {_key(name): np.asarray(v, dtype=np.uint8) for name, v in correct.items()}
    names = np.array(list(correct), dtype=np.str_)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, names=names, **arrays)

    atomic_write(path, write)
    run.record(path)


def read_test_correct(run_dir: str | Path) -> dict[str, np.ndarray]:
    """``{metric: (N,) uint8}`` from ``RUN/test_correct.npz`` ({} without one); read with
    ``allow_pickle=False``."""
    path = Path(run_dir) / TEST_CORRECT_FILE
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as data:
        names = [str(n) for n in data["names"]]
        return {name: data[_key(name)] for name in names}


def _key(name: str) -> str:
    """An npz key for a metric name (``noise:0.2`` -> ``m_noise_0.2``)."""
    return "m_" + "".join(c if c.isalnum() or c in "._" else "_" for c in name)

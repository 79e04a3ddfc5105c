"""Evaluation: loss, accuracy, per-class accuracy and confusion matrix, across ranks."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .distributed import all_reduce_sum

__all__ = ["EvalResult", "evaluate"]


@dataclass
class EvalResult:
    loss: float
    accuracy: float
    confusion: np.ndarray  # (num_classes, num_classes), rows true, columns predicted

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
) -> EvalResult:
    """Evaluate ``model`` in eval mode on ``batches``; sums are reduced over all ranks."""
    was_training = model.training
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.float64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    for images, labels in batches:
        images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        labels = labels.to(device, non_blocking=True)
        with torch.autocast(
            device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
        ):
            logits = model(images)
        loss_sum += nn.functional.cross_entropy(logits.float(), labels, reduction="sum")
        index = labels * num_classes + logits.argmax(dim=1)
        confusion += torch.bincount(index, minlength=num_classes**2).view_as(confusion)
    all_reduce_sum(confusion)
    all_reduce_sum(loss_sum)
    model.train(was_training)
    total = confusion.sum().item()
    matrix = confusion.cpu().numpy().astype(np.int64)
    return EvalResult(
        loss=loss_sum.item() / max(total, 1),
        accuracy=float(np.trace(matrix)) / max(total, 1),
        confusion=matrix,
    )

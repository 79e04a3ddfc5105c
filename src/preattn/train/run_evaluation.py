"""A saved run evaluated on its test set: :func:`evaluate_run`, for the ``eval`` command and
for Python callers alike; :meth:`RunEvaluation.record` is its ``eval.json``
(:class:`~preattn.train.eval_record.EvalRecord`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .distributed import init_distributed
from .eval_record import EvalRecord
from .evaluate import EvalResult, evaluate
from .load import load_run

__all__ = ["RunEvaluation", "evaluate_run"]


@dataclass(frozen=True)
class RunEvaluation:
    """What :func:`evaluate_run` measured: the run, its committed ``epoch``, the data set
    it was evaluated on, the class names and the :class:`EvalResult`."""

    run: Path
    epoch: int
    dataset: str
    classes: tuple[str, ...]
    result: EvalResult

    def record(self) -> EvalRecord:
        """What ``eval.json`` holds of this evaluation."""
        return EvalRecord(
            epoch=self.epoch,
            accuracy=self.result.accuracy,
            loss=self.result.loss,
            per_class_accuracy=dict(
                zip(self.classes, map(float, self.result.per_class_accuracy), strict=True)
            ),
            confusion=self.result.confusion.tolist(),
        )

    def to_json(self) -> dict[str, Any]:
        """The ``eval.json`` object (:meth:`EvalRecord.to_json` of :meth:`record`)."""
        return self.record().to_json()

    def title(self) -> str:
        """``RUN: epoch E, DATASET test, accuracy A %`` (the confusion figure's title)."""
        return (
            f"{self.run}: epoch {self.epoch}, {self.dataset} test, accuracy "
            f"{100 * self.result.accuracy:.2f} %"
        )

    def lines(self) -> list[str]:
        """The summary line and one line per class (accuracy, correct / images)."""
        confusion = self.result.confusion
        out = [
            f"{self.run} (epoch {self.epoch}) on {self.dataset} test, {int(confusion.sum())} "
            f"images: accuracy {self.result.accuracy:.4f}, loss {self.result.loss:.4f}",
            f"  {'class':>16s}  accuracy  (correct / test images of the class)",
        ]
        correct, totals = confusion.diagonal(), confusion.sum(axis=1)
        for name, acc, hit, seen in zip(
            self.classes, self.result.per_class_accuracy, correct, totals, strict=True
        ):
            out.append(f"  {name:>16s}  {acc:8.4f}  ({int(hit)} / {int(seen)})")
        return out


def evaluate_run(
    run_dir: str | Path,
    *,
    data_dir: str | None = None,
    limit_test: int | None = None,
    batch_size: int = 256,
    device: str = "auto",
) -> RunEvaluation:
    """Evaluate the committed weights of the run in ``run_dir`` on its test set (the run's
    data folder unless ``data_dir``; all its test images unless ``limit_test``), in eval
    mode and float32, ``batch_size`` images at a time on ``device``, scoring each image with
    its mirror image where the run did (``test_flip``). Writes nothing."""
    loaded = load_run(run_dir, data_dir=data_dir, limit_test=limit_test)
    config, splits, model, epoch = loaded.config, loaded.splits, loaded.model, loaded.epoch
    assert splits is not None  # load_run reads them
    ctx = init_distributed(device)
    model.to(ctx.device)
    loader = torch.utils.data.DataLoader(splits.test, batch_size=batch_size)
    result = evaluate(model, loader, splits.num_classes, ctx.device, flip=config.test_flip)
    return RunEvaluation(Path(run_dir), epoch, config.dataset, tuple(splits.classes), result)

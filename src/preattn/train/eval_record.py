"""A run's evaluation as a type: :class:`EvalRecord`, the ``eval.json`` that ``preattn eval``
writes (and any Python caller, through :meth:`EvalRecord.write`).

``eval.json``: ``{"epoch", "accuracy", "loss", "per_class_accuracy": {class: accuracy},
"confusion": [[count]]}``; ``confusion[i][j]`` counts the test images of class ``i``
predicted as class ``j``, so ``accuracy = trace(confusion) / sum(confusion)`` and
``per_class_accuracy[i] = confusion[i][i] / sum_j confusion[i][j]`` (NaN for a class
without test images). :meth:`EvalRecord.read` checks a file and names it and the field it
cannot use.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import atomic_write_text

__all__ = ["EVAL_FILE", "EvalRecord", "EvalRecordError"]

EVAL_FILE = "eval.json"


class EvalRecordError(ValueError):
    """An ``eval.json`` that is not an evaluation record; the message names the field."""


@dataclass(frozen=True)
class EvalRecord:
    """One evaluation of a run's committed weights on its test set.

    Attributes:
        epoch: the committed epoch evaluated (1-based).
        accuracy: correct / images, in [0, 1].
        loss: mean cross-entropy over the test images.
        per_class_accuracy: ``{class name: accuracy}``, in the order of the classes.
        confusion: (num_classes, num_classes) counts, rows true class, columns predicted.
    """

    epoch: int
    accuracy: float
    loss: float
    per_class_accuracy: dict[str, float]
    confusion: list[list[int]]

    def to_json(self) -> dict[str, Any]:
        """The ``eval.json`` object (module docstring)."""
        return {
            "epoch": self.epoch,
            "accuracy": self.accuracy,
            "loss": self.loss,
            "per_class_accuracy": dict(self.per_class_accuracy),
            "confusion": [list(row) for row in self.confusion],
        }

    def write(self, path: str | Path) -> Path:
        """Write the record to ``path`` at once (a reader never sees half of it)."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_json(), indent=1))
        return path

    @classmethod
    def from_json(cls, data: Any, where: str = "eval record") -> EvalRecord:
        """The record of an ``eval.json`` object; :class:`EvalRecordError` naming ``where``
        and the field that is missing or of the wrong kind."""
        if not isinstance(data, Mapping):
            raise EvalRecordError(f"{where} must hold a JSON object, got {_short(data)}")
        missing = [key for key in _CHECKS if key not in data]
        if missing:
            raise EvalRecordError(f"{where} has no {missing[0]!r}")
        for key, (fits, expected) in _CHECKS.items():
            if not fits(data[key]):
                raise EvalRecordError(
                    f"{where}: {key!r} must be {expected}, got {_short(data[key])}"
                )
        classes, confusion = data["per_class_accuracy"], data["confusion"]
        if len(confusion) != len(classes) or any(len(row) != len(classes) for row in confusion):
            raise EvalRecordError(
                f"{where}: 'confusion' must be {len(classes)} x {len(classes)} (one row and "
                f"column per class of 'per_class_accuracy'), got {len(confusion)} rows of "
                f"{sorted({len(row) for row in confusion})} counts"
            )
        return cls(
            epoch=data["epoch"],
            accuracy=float(data["accuracy"]),
            loss=float(data["loss"]),
            per_class_accuracy={str(k): float(v) for k, v in classes.items()},
            confusion=[list(row) for row in confusion],
        )

    @classmethod
    def read(cls, path: str | Path) -> EvalRecord:
        """The record in the ``eval.json`` at ``path``; :class:`EvalRecordError` naming the
        file (and the field) when it is not one, ``OSError`` when it cannot be read."""
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EvalRecordError(f"{path} is not JSON: {exc}") from None
        return cls.from_json(data, str(path))


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _fraction(value: Any) -> bool:
    return _number(value) and 0.0 <= value <= 1.0


def _class_accuracies(value: Any) -> bool:
    # NaN: a class without test images
    return isinstance(value, Mapping) and all(
        _number(v) and (math.isnan(v) or 0.0 <= v <= 1.0) for v in value.values()
    )


def _counts(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(row, list) and all(_int(n) and n >= 0 for n in row) for row in value
    )


# field -> (check, what it must be)
_CHECKS = {
    "epoch": (lambda v: _int(v) and v >= 0, "an int >= 0"),
    "accuracy": (_fraction, "a number in [0, 1]"),
    "loss": (_number, "a number"),
    "per_class_accuracy": (_class_accuracies, "a mapping of class names to numbers in [0, 1]"),
    "confusion": (_counts, "a list of rows of counts (ints >= 0)"),
}


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters (a confusion matrix is long)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

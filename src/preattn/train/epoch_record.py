"""One epoch of a run, as a type: :class:`EpochRecord`.

The training loop builds one per epoch, writes its JSON form as one line of the run's
``metrics.jsonl``, prints :meth:`EpochRecord.console_line`, hands the record to callbacks and
returns the last one; every reader of ``metrics.jsonl`` checks a line with
:meth:`EpochRecord.from_json`, which names the file, the line and the field it cannot use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["EpochRecord", "RecordError"]


class RecordError(ValueError):
    """A ``metrics.jsonl`` line is not an epoch record; the message names the field."""


# JSON key -> attribute, where they differ ("lambda" is a Python keyword)
_JSON_KEYS = {"lam": "lambda", "lam_start": "lambda_start"}


# mappings left out of a line when empty (the loop writes lambda, lambda_start and
# modulation always: {} for a network without attention)
_OMITTED_WHEN_EMPTY = ("test_acc_corrupt",)


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch of training measured (JSON keys as the field names, ``lam`` as
    ``lambda``).

    Attributes:
        epoch: 1-based epoch number.
        train_loss, train_acc: mean cross-entropy and accuracy (0-1) over the epoch's
            training batches (as trained: augmented, in training mode).
        lr: learning rate at the epoch's last step.
        lam, lam_start: λ_eff per λ-controlled block at the end and at the start of the
            epoch (``{block: float}``; the mean over channels for a per-channel λ).
        The fields after ``images_per_s`` may be absent from a record of an earlier version.
        modulation: per attended block, std(w)/mean(w) of the multiplier attention applies
            to its input on a fixed probe batch (:mod:`preattn.modulation`), a fraction.
        images_per_s: training images per second of the epoch (this process).
        epoch_time_s, eval_time_s: seconds of training and of evaluation in this epoch.
        elapsed_s: training and evaluation seconds of the run so far, across resumes.
        wall_start, wall_end: Unix times at which the epoch started and ended.
        step: optimiser steps so far.
        test_loss, test_acc: on the test set, in the epochs that evaluated (the last always).
        test_acc_corrupt: accuracy on each corrupted copy of the test set (last epoch).
        val_loss, val_acc: on the validation set held out of the training images
            (``holdout``), in the epochs that evaluated; the test set is then evaluated
            after the last epoch only.
    """

    epoch: int
    train_loss: float
    train_acc: float
    lr: float
    lam: dict[str, float]
    images_per_s: float
    # absent from the records of earlier versions: None (numbers) or empty (mappings)
    lam_start: dict[str, float] = field(default_factory=dict)
    modulation: dict[str, float] = field(default_factory=dict)
    epoch_time_s: float | None = None
    eval_time_s: float | None = None
    elapsed_s: float | None = None
    wall_start: float | None = None
    wall_end: float | None = None
    step: int | None = None
    test_loss: float | None = None
    test_acc: float | None = None
    test_acc_corrupt: dict[str, float] = field(default_factory=dict)
    val_loss: float | None = None
    val_acc: float | None = None

    @property
    def evaluated(self) -> bool:
        """Whether this epoch was evaluated on the test set."""
        return self.test_acc is not None

    def to_json(self) -> dict[str, Any]:
        """The ``metrics.jsonl`` line: plain values; the test fields only when evaluated,
        the corrupted accuracies only when measured."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or (f.name in _OMITTED_WHEN_EMPTY and not value):
                continue
            out[_JSON_KEYS.get(f.name, f.name)] = dict(value) if isinstance(value, dict) else value
        return out

    @classmethod
    def from_json(cls, row: Mapping[str, Any], where: str = "record") -> EpochRecord:
        """The record of one ``metrics.jsonl`` line; :class:`RecordError` naming ``where``
        and the field when one is missing or of the wrong type. Keys it does not know are
        ignored (a later version's fields)."""
        if not isinstance(row, Mapping):
            raise RecordError(f"{where} is not a JSON object: {row!r}")
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = _JSON_KEYS.get(f.name, f.name)
            if key not in row:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise RecordError(f"{where} has no {key!r}")
                continue
            values[f.name] = _checked(where, key, row[key], str(f.type))
        return cls(**values)

    def console_line(self, epochs: int) -> str:
        """``epoch 3/10  train loss 0.41 acc 0.85  test loss ... acc ...  lr ...  λ [...]  N
        img/s`` (``val loss ... acc ...`` before the test's where the run holds a validation
        set): λ (and modulation ``m``) per block, then the uncontrolled blocks' modulation."""
        lam_text = (
            ", ".join(
                f"{k}={v:.3f}"
                + (f" m={100 * self.modulation[k]:.1f}%" if k in self.modulation else "")
                for k, v in self.lam.items()
            )
            or "-"
        )
        uncontrolled = [k for k in self.modulation if k not in self.lam]
        if uncontrolled:
            lam_text += "; " + ", ".join(
                f"{k} m={100 * self.modulation[k]:.1f}%" for k in uncontrolled
            )
        evaluations = []
        if self.val_acc is not None and self.val_loss is not None:
            evaluations.append(f"val loss {self.val_loss:.4f} acc {self.val_acc:.4f}")
        if self.test_acc is not None and self.test_loss is not None:
            evaluations.append(f"test loss {self.test_loss:.4f} acc {self.test_acc:.4f}")
        test = "  ".join(evaluations) or "test: not evaluated (eval_every)"
        return (
            f"epoch {self.epoch}/{epochs}  train loss {self.train_loss:.4f}"
            f" acc {self.train_acc:.4f}  {test}  lr {self.lr:.4g}  λ [{lam_text}]  "
            f"{self.images_per_s:.0f} img/s"
        )


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _checked(where: str, key: str, value: Any, annotation: str) -> Any:
    """``value`` if it fits the field's annotation (int, float, ``dict[str, float]``)."""
    kind = annotation.split("|")[0].strip()
    if kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "float":
        ok = _number(value)
    else:  # dict[str, float]
        ok = isinstance(value, dict) and all(_number(v) for v in value.values())
        if ok:
            value = {str(k): v for k, v in value.items()}
    if not ok:
        expected = (
            "an int"
            if kind == "int"
            else "a number"
            if kind == "float"
            else "a mapping of names to numbers"
        )
        raise RecordError(f"{where}: {key!r} must be {expected}, got {value!r}")
    return value

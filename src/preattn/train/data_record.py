"""The ``data`` record of a saved run, checked as strictly as the options that made it.

A run's ``config.yaml`` holds, besides its options, the description of the data set it
was trained on (:class:`~preattn.data.registry.DatasetInfo`), from which every reader
rebuilds the network. A record edited by hand, or damaged, must not build a network the
options could never have asked for (``image_size: 100000`` is a 30 GB input), so each
field is held to the value the run's options imply:

- ``name``, ``in_chans``: the data set's (``config.dataset``);
- ``image_size``: :meth:`~preattn.data.registry.DatasetSpec.image_size_for` of the run's
  ``image_size`` option (the one rule the flags follow);
- ``classes``: a non-empty list of distinct names; for a set with fixed classes, as many as
  it has;
- ``mean``, ``std``: ``None``, or ``in_chans`` finite numbers (``std`` > 0).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..data.registry import DATASET_SPECS, DatasetInfo
from .config import ConfigError, TrainConfig

__all__ = ["read_data_record"]


def read_data_record(values: Any, config: TrainConfig, path: Path) -> DatasetInfo:
    """The :class:`DatasetInfo` in ``values`` (the ``data`` mapping of ``path``), once every
    field agrees with ``config``; else :class:`ConfigError` naming the file and the field."""

    def bad(field: str, expected: str, got: Any) -> ConfigError:
        shown = repr(got) if len(repr(got)) < 80 else repr(got)[:77] + "..."
        return ConfigError(f"{path}: data.{field} must be {expected}, got {shown}")

    if not isinstance(values, dict):
        raise ConfigError(f"{path}: data must be a mapping, got {type(values).__name__}")
    spec = DATASET_SPECS[config.dataset]
    size = spec.image_size_for(config.image_size)
    expected: dict[str, Any] = {"name": spec.name, "in_chans": spec.in_chans, "image_size": size}
    for field, value in expected.items():
        got = values.get(field)
        if type(got) is not type(value) or got != value:
            raise bad(field, f"{value!r} (dataset {spec.name!r}, image_size {size})", got)
    classes = values.get("classes")
    count = len(spec.classes) if spec.classes is not None else None
    wanted = f"{count} distinct names" if count else "a non-empty list of distinct names"
    if (
        not isinstance(classes, list)
        or not classes
        or not all(isinstance(c, str | int) and not isinstance(c, bool) for c in classes)
        or len({str(c) for c in classes}) != len(classes)
        or (count is not None and len(classes) != count)
    ):
        raise bad("classes", wanted, classes)
    for field in ("mean", "std"):
        numbers = values.get(field)
        if numbers is None:
            continue
        ok = (
            isinstance(numbers, list)
            and len(numbers) == spec.in_chans
            and all(
                isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
                for x in numbers
            )
            and (field == "mean" or all(x > 0 for x in numbers))
        )
        if not ok:
            positive = " > 0" if field == "std" else ""
            raise bad(field, f"null or {spec.in_chans} finite numbers{positive}", numbers)
    unknown = sorted(set(values) - {*expected, "classes", "mean", "std"})
    if unknown:
        raise ConfigError(f"{path}: unknown keys {unknown} in data")
    return DatasetInfo.from_dict(values)

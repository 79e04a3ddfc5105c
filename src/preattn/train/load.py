"""Reading a saved run back: its network with the committed weights.

Every reader of a run (``preattn eval``, ``predict``, ``viz``, ``check``, ``export``,
``ablate``'s report, :func:`preattn.timm.create_model_from_run`) comes through here, and
the network is always built by :func:`~preattn.train.build.build_model` from the run's
``config.yaml`` and its data set description (:func:`run_data_info`), exactly as
training built it.

- :func:`load_model`: the network alone, without reading the data set;
- :func:`load_run`: the network and the run's data splits (for evaluation); data that no
  longer matches what the run was trained on (another class count, say) is refused.

Both return one type, :class:`LoadedModel` (``splits`` is set by :func:`load_run` only);
:class:`SavedRun` is the step before it, the files read and no network built (for
callers that build the network themselves, :func:`preattn.timm.create_model_from_run`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from ..data.registry import DATASET_SPECS, DatasetInfo, DataSplits
from .build import build_data, build_model
from .config import TrainConfig
from .rundir import RunDir, RunError

__all__ = [
    "LoadedModel",
    "SavedRun",
    "check_same_data",
    "load_model",
    "load_run",
    "read_saved_run",
    "run_data_info",
]


@dataclass
class LoadedModel:
    """A run read back: its network with the committed weights, the epoch they are from,
    what it was trained on, and (from :func:`load_run`) the data splits to evaluate it on."""

    config: TrainConfig
    model: nn.Module
    epoch: int
    info: DatasetInfo
    splits: DataSplits | None = None

    @property
    def classes(self) -> tuple[str, ...]:
        return self.info.classes

    @property
    def image_size(self) -> int:
        return self.info.image_size

    @property
    def in_chans(self) -> int:
        return self.info.in_chans


def run_data_info(
    run: RunDir, config: TrainConfig, weights: dict[str, torch.Tensor] | None = None
) -> DatasetInfo:
    """The data set description of ``run``: the one recorded at training time; for a run
    written before it was recorded, the data set's table entry, with the class count of an
    image folder taken from the classifier's weights (``fc.weight``) and the names from its
    ``train/`` folder when that still matches."""
    recorded = run.read_data_info()
    if recorded is not None:
        return recorded
    spec = DATASET_SPECS[config.dataset]
    if spec.classes is not None:
        return spec.info(config.image_size)
    head = (weights or {}).get("fc.weight")
    if head is None:
        raise RunError(
            f"{run.path}: the run records no data description and its weights have no "
            "'fc.weight' to count the classes; evaluate it with `preattn eval` (reads the data)"
        )
    count = int(head.shape[0])
    folder = Path(config.data_dir or "") / "train"
    names = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    classes = names if len(names) == count else [str(i) for i in range(count)]
    return spec.info(config.image_size, classes)


def check_same_data(run: RunDir, trained: DatasetInfo, found: DatasetInfo) -> None:
    """Raise :class:`RunError` when the data ``found`` now differs from what ``run`` was
    trained on in anything that shapes the network or names its outputs."""
    fields = ("in_chans", "image_size", "classes")
    changed = [
        f"{name} {getattr(trained, name)!r} -> {getattr(found, name)!r}"
        for name in fields
        if getattr(trained, name) != getattr(found, name)
    ]
    if changed:
        listing = "; ".join(c if len(c) < 120 else c.split(" ")[0] + " differ" for c in changed)
        raise RunError(
            f"{run.path}: the data set is not the one the run was trained on ({listing})"
        )


def _load_into(model: nn.Module, weights: dict[str, torch.Tensor], run: RunDir) -> None:
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise RunError(
            f"{run.path}: the weights do not fit the configured model ({first})"
        ) from None


@dataclass
class SavedRun:
    """What a run directory holds for rebuilding its network: the config, the committed
    weights and their epoch, and the data set description."""

    run: RunDir
    config: TrainConfig
    weights: dict[str, torch.Tensor]
    epoch: int
    info: DatasetInfo


def read_saved_run(run_dir: str | Path) -> SavedRun:
    """The config, committed weights and data description of the run in ``run_dir``."""
    run = RunDir(run_dir)
    config, _ = run.read_config()
    weights, epoch = run.load_weights()
    return SavedRun(run, config, weights, epoch, run_data_info(run, config, weights))


def load_model(run_dir: str | Path) -> LoadedModel:
    """Rebuild a run's network from its config and weights alone (no data set is read)."""
    saved = read_saved_run(run_dir)
    model = build_model(saved.config, saved.info)
    _load_into(model, saved.weights, saved.run)
    return LoadedModel(saved.config, model, saved.epoch, saved.info)


def load_run(
    run_dir: str | Path, *, data_dir: str | None = None, limit_test: int | None = None
) -> LoadedModel:
    """Rebuild a run's network with its committed weights, and read its data splits
    (``splits``; ``config`` is then the config they were read with).

    ``data_dir`` overrides the run's data folder; ``limit_test`` its test subset (default:
    the run's own). The training split is limited to one sample (it is not needed).
    """
    loaded = load_model(run_dir)
    config = loaded.config
    if data_dir:
        config = config.replace(data_dir=str(Path(data_dir).resolve()))
    splits = build_data(config, limit_train=1, limit_test=limit_test)
    check_same_data(RunDir(run_dir), loaded.info, splits.info)
    return replace(loaded, config=config, splits=splits)

"""The configuration of a training run, read from flags and/or a YAML file."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from .. import _validate
from ..blocks import PLACEMENTS
from ..data.registry import DATASETS
from ..mixing import LAMBDA_PARAMS

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig:
    """Everything that determines a run; saved as ``config.yaml`` in the run directory."""

    dataset: str = "synthetic"
    data_dir: str | None = None
    model: str = "simplecnn"
    placement: str = "pre"
    attention: str = "cbam"
    lam: float | None = 0.1
    lam_param: str = "sigmoid"
    lam_learnable: bool = True
    lam_warmup_steps: int = 0
    stages: list[int] | None = None
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    warmup_epochs: float = 0.0
    limit_train: int | None = None
    limit_test: int | None = None
    image_size: int | None = None
    seed: int = 0
    out: str = "runs/latest"
    device: str = "auto"
    amp: bool = False
    channels_last: bool = False
    sync_bn: bool = False
    workers: int = 0

    def validate(self) -> TrainConfig:
        """Check every field; raise ``ValueError`` naming the first bad one."""
        _validate.choice("dataset", self.dataset, DATASETS)
        _validate.choice("placement", self.placement, PLACEMENTS)
        _validate.choice("lam_param", self.lam_param, LAMBDA_PARAMS)
        _validate.choice("optimizer", self.optimizer, ("sgd", "adamw"))
        if self.lam is not None:
            _validate.unit_interval("lam", self.lam)
        _validate.positive_int("epochs", self.epochs)
        _validate.positive_int("batch_size", self.batch_size)
        _validate.non_negative_int("lam_warmup_steps", self.lam_warmup_steps)
        _validate.non_negative_int("workers", self.workers)
        for name in ("lr", "weight_decay", "momentum", "warmup_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        for name in ("limit_train", "limit_test", "image_size"):
            if getattr(self, name) is not None:
                _validate.positive_int(name, getattr(self, name))
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known keys are {sorted(known)}")
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"config file {path} not found")
        values = yaml.safe_load(path.read_text()) or {}
        if not isinstance(values, dict):
            raise ValueError(f"config file {path} must hold a mapping, got {type(values).__name__}")
        return cls.from_dict({k.replace("-", "_"): v for k, v in values.items()})

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

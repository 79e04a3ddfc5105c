"""The configuration of a training run, read from flags and/or a YAML file.

:class:`TrainConfig` declares each option once, with its help text and command-line
parser (:func:`preattn._options.option`); the attention options are the fields of
:class:`~preattn.AttentionSpec`, held as ``config.spec``. In ``config.yaml`` and on the
command line both appear as one flat set of keys (``placement: pre``, ``lr: 0.1``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import yaml

from .. import _validate, _yaml
from .._options import (
    check_type,
    option,
    parse_bool,
    parse_kwargs,
    parse_optional_int,
)
from .._yaml import YamlError
from ..data.canvas import CanvasOptions
from ..data.corrupt import Corruption, parse_corruptions
from ..data.registry import DATASET_SPECS
from ..models.config import MAX_WIDTH, ModelConfig
from ..spec import AttentionSpec
from .precision import AMP_MODES, parse_amp

__all__ = ["MAX_WIDTH", "OPTIMIZERS", "ConfigError", "TrainConfig"]

OPTIMIZERS = ("sgd", "adamw")
# the largest seed (numpy's range; torch.manual_seed takes the per-epoch seeds derived from it)
MAX_SEED = 2**32 - 1
CLUTTERED = "cluttered-fashion-mnist"


class ConfigError(ValueError):
    """A configuration file or value is invalid; the message names the field or line."""


def load_yaml(path: Path, what: str) -> Any:
    """The YAML document in ``path`` (:func:`preattn._yaml.load_yaml`); every problem is a
    ConfigError naming ``what``, the file and the line."""
    try:
        return _yaml.load_yaml(path, what)
    except YamlError as exc:
        raise ConfigError(str(exc)) from None


@dataclass(init=False)
class TrainConfig:
    """Everything that determines a run; saved as ``config.yaml`` in the run directory.

    ``TrainConfig(dataset="fashion-mnist", placement="branch", lam=None)``: the keyword
    arguments are the options below, the model section's options and the
    :class:`~preattn.AttentionSpec` fields; those that shape the network form
    ``config.network``, a :class:`~preattn.models.ModelConfig` (its attention spec on top of
    ``spec`` when one is given), and read as the run's own (``config.model``,
    ``config.width``, ``config.spec``). The options a resume may change are declared
    ``resumable`` (:meth:`resumable`).
    """

    dataset: str = option("synthetic", "data set", choices=DATASET_SPECS)
    data_dir: str | None = option(
        None, "folder with the data files (also $PREATTN_DATA)", resumable=True
    )
    network: ModelConfig = field(default_factory=ModelConfig)
    epochs: int = option(10, "training epochs", int, resumable=True)
    batch_size: int = option(128, "batch size per process", int)
    lr: float = option(0.1, "peak learning rate", float)
    optimizer: str = option(
        "sgd", "optimiser (SGD with Nesterov momentum, or AdamW)", choices=OPTIMIZERS
    )
    momentum: float = option(0.9, "SGD momentum, in [0, 1)", float)
    weight_decay: float = option(5e-4, "weight decay (never on λ, BatchNorm or biases)", float)
    lam_lr_scale: float = option(
        1.0, "learning-rate multiplier for λ (its own parameter group, no weight decay)", float
    )
    label_smoothing: float = option(0.0, "label smoothing of the cross-entropy, in [0, 1)", float)
    warmup_epochs: float = option(0.0, "linear learning-rate warm-up, in epochs", float)
    limit_train: int | None = option(None, "use the first N training images", parse_optional_int)
    limit_test: int | None = option(None, "use the first N test images", parse_optional_int)
    image_size: int | None = option(
        None,
        "image size for imagefolder (224), synthetic (32) and the canvas side of "
        "cluttered-fashion-mnist (60)",
        parse_optional_int,
    )
    canvas: dict[str, Any] = option(
        {},
        "cluttered-fashion-mnist's distractors, e.g. patches=4,patch=8,items=0,item_size=16,"
        "copies=1 (preattn.data.canvas.CanvasOptions); its canvas side is image_size",
        parse_kwargs,
    )
    train_corrupt: list[str] = option(
        [], "corruptions of the training images, e.g. noise:0.2,occlude:0.25", parse_corruptions
    )
    eval_corrupt: list[str] = option(
        [],
        "corrupted copies of the test set to evaluate after the last epoch, e.g. "
        "noise:0.2,clutter:0.3",
        parse_corruptions,
    )
    seed: int = option(0, "random seed, 0 to 2**32 - 1", int)
    out: str | None = option(None, "run directory (default: a new runs/<date>-<time>-<model>)")
    device: str = option(
        "auto", "auto, cpu, cuda, cuda:N, or any torch device name", resumable=True
    )
    amp: str = option(
        "off",
        "mixed precision: off, bf16, fp16 (CUDA, with loss scaling) or auto (bf16 where the "
        "device computes it natively, fp16 on older GPUs, off on other CPUs); --amp alone "
        "is auto (default: off)",
        parse_amp,
        choices=AMP_MODES,
        const="auto",
    )
    channels_last: bool = option(False, "channels-last memory format", parse_bool)
    compile: bool = option(
        False,
        "torch.compile the network for training (evaluation stays eager); the first steps "
        "take longer while it compiles",
        parse_bool,
        resumable=True,
    )
    sync_bn: bool = option(False, "SyncBatchNorm under DDP (CUDA only)", parse_bool)
    device_data: bool = option(
        False,
        "hold the training and test images on the device and crop, flip and normalise whole "
        "batches there (in-memory sets: fashion-mnist, mnist, cifar); other sets use the "
        "data loader",
        parse_bool,
    )
    deterministic: bool = option(
        False,
        "deterministic kernels (cuDNN, cuBLAS), as exact resume on CUDA needs; off lets "
        "cuDNN pick the fastest convolution algorithms",
        parse_bool,
        resumable=True,
    )
    eval_every: int = option(
        1,
        "evaluate on the test set every N epochs and after the last one (0: only after the "
        "last; ablate's default)",
        int,
        resumable=True,
    )
    workers: int = option(0, "data-loader worker processes", int, resumable=True)
    plots: bool = option(
        True, "write curves.png and lambda.png when the run ends", parse_bool, resumable=True
    )

    def __init__(self, spec: AttentionSpec | None = None, **options: Any) -> None:
        model_keys = set(ModelConfig.keys())
        network = {k: options.pop(k) for k in list(options) if k in model_keys}
        known = {f.name: f for f in self._own_fields()}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise TypeError(f"unknown TrainConfig option(s) {unknown}; known: {self.keys()}")
        if isinstance(options.get("amp"), bool):  # the option's earlier boolean form
            options["amp"] = parse_amp(options["amp"])
        for name, f in known.items():
            default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
            setattr(self, name, options.get(name, default))
        self.network = ModelConfig.from_flat(network, spec=spec)

    # the model section's fields, read as the run's own (config.model, config.spec, ...)
    @property
    def model(self) -> str:
        return self.network.model

    @property
    def spec(self) -> AttentionSpec:
        return self.network.spec

    @property
    def width(self) -> float:
        return self.network.width

    @property
    def stages(self) -> list[int] | None:
        return self.network.stages

    @property
    def stem(self) -> str | None:
        return self.network.stem

    @property
    def dw_attention(self) -> str:
        return self.network.dw_attention

    @property
    def dw_attention_kwargs(self) -> dict[str, Any]:
        return self.network.dw_attention_kwargs

    @classmethod
    def _own_fields(cls) -> list[dataclasses.Field]:
        return [f for f in fields(cls) if f.name != "network"]

    @classmethod
    def option_fields(cls) -> list[dataclasses.Field]:
        """The fields that are options, in the order of the flat form: the run's own, with
        the model section's (:class:`~preattn.models.ModelConfig`'s, but ``spec``) in the
        place of ``network``."""
        out: list[dataclasses.Field] = []
        for f in fields(cls):
            out.extend(ModelConfig.option_fields() if f.name == "network" else [f])
        return out

    @classmethod
    def keys(cls) -> list[str]:
        """Every key of the flat form: the options and the AttentionSpec fields."""
        return [f.name for f in cls.option_fields()] + list(AttentionSpec.names())

    @classmethod
    def resumable(cls) -> tuple[str, ...]:
        """The options a resumed run may change (declared ``resumable``): the runtime ones."""
        return tuple(f.name for f in cls._own_fields() if f.metadata.get("resumable"))

    def validate(self) -> TrainConfig:
        """Check every field's type and range; raise naming the first bad one."""
        if not isinstance(self.network, ModelConfig):
            raise TypeError(f"network must be a ModelConfig, got {type(self.network).__name__}")
        if not isinstance(self.spec.attention, str):
            raise TypeError(
                "a training configuration needs a registered attention name (it is saved "
                f"to YAML), got {self.spec.attention!r}"
            )
        self.network.validate()
        for f in self._own_fields():
            check_type(f.name, getattr(self, f.name), str(f.type))
            if f.metadata.get("choices") is not None:
                _validate.choice(f.name, getattr(self, f.name), f.metadata["choices"])
        for name in ("epochs", "batch_size"):
            _validate.positive_int(name, getattr(self, name))
        for name in ("seed", "workers", "eval_every"):
            _validate.non_negative_int(name, getattr(self, name))
        if self.seed > MAX_SEED:
            raise ValueError(f"seed must be an int in [0, {MAX_SEED}], got {self.seed}")
        if not self.lr > 0:
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        if not self.lam_lr_scale > 0:
            raise ValueError(f"lam_lr_scale must be a finite number > 0, got {self.lam_lr_scale}")
        for name in ("train_corrupt", "eval_corrupt"):
            values = [Corruption.parse(v, name=name).name for v in getattr(self, name)]
            if len(set(values)) != len(values):
                raise ValueError(f"{name} must not repeat a corruption, got {values}")
        for name in ("weight_decay", "warmup_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("momentum", "label_smoothing"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("limit_train", "limit_test"):
            if getattr(self, name) is not None:
                _validate.positive_int(name, getattr(self, name))
        size = DATASET_SPECS[self.dataset].image_size_for(self.image_size)
        canvas = CanvasOptions.from_dict(self.canvas)
        if self.dataset == CLUTTERED:
            canvas.check_canvas(size, 28)
        elif self.canvas:
            raise ValueError(f"canvas applies to {CLUTTERED}, got dataset {self.dataset!r}")
        if self.out is not None and not self.out.strip():
            raise ValueError("out must name a run directory, got ''")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except RuntimeError:
                raise ValueError(
                    f"device must be auto, cpu, cuda, cuda:N or another torch device, "
                    f"got {self.device!r}"
                ) from None
        return self

    def to_dict(self) -> dict[str, Any]:
        """The flat form: every option and every AttentionSpec field, plain values."""
        out = self.network.to_flat()
        out.update({f.name: getattr(self, f.name) for f in self._own_fields()})
        return {k: out[k] for k in self.keys()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from the flat form (unknown keys are an error naming them)."""
        values = {str(k).replace("-", "_"): v for k, v in values.items()}
        known = cls.keys()
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; known keys are {sorted(known)}")
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` in the flat form (``placement=`` reaches the spec)."""
        return type(self).from_dict({**self.to_dict(), **changes})

    @classmethod
    def from_yaml(
        cls,
        path: str | Path,
        *,
        prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> TrainConfig:
        """Read a YAML mapping of flat keys; syntax errors name the file and the line.

        A run directory's ``config.yaml`` also holds the run's ``history`` of resumes: it is
        left out (``prepare`` may take it, or other keys, out of the mapping first)."""
        path = Path(path)
        values = load_yaml(path, "config file") or {}
        if not isinstance(values, dict):
            raise ConfigError(
                f"config file {path} must hold a mapping, got {type(values).__name__}"
            )
        try:
            values = prepare(values) if prepare else values
            for record in ("history", "data"):  # a run directory's records, not options
                values.pop(record, None)
            return cls.from_dict(values)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

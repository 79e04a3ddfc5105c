"""The sections of a training run's configuration, besides the network's.

A :class:`~preattn.train.TrainConfig` holds five sections, each a frozen dataclass of
declared options (:func:`preattn._options.option`) that checks its own values:

- :class:`DataConfig`: which images the network sees (the data set, its size, subsets,
  corruptions);
- the network, :class:`~preattn.models.ModelConfig`;
- :class:`OptimConfig`: how it is trained (epochs, batch, optimiser, schedule, seed);
- :class:`ComputeConfig`: how each step is computed (precision, memory format, where the
  augmentation runs) — fixed for a run, as changing it would continue another computation;
- :class:`RuntimeConfig`: where and how the run executes without changing what it computes
  (device, folders, compilation, evaluation cadence, workers, plots) — every one may change
  when a run is resumed.

In ``config.yaml`` and on the command line the sections' options appear as one flat set of
keys (``lr: 0.1``, ``amp: bf16``); each key belongs to exactly one section.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .. import _validate
from .._options import (
    OptionSection,
    option,
    parse_bool,
    parse_kwargs,
    parse_optional_int,
)
from ..data.canvas import CanvasOptions
from ..data.corrupt import Corruption, parse_corruptions
from ..data.registry import DATASET_SPECS
from .precision import AMP_MODES, parse_amp

__all__ = [
    "CLUTTERED",
    "MAX_SEED",
    "OPTIMIZERS",
    "ComputeConfig",
    "DataConfig",
    "OptimConfig",
    "RuntimeConfig",
]

OPTIMIZERS = ("sgd", "adamw")
# the largest seed (numpy's range; torch.manual_seed takes the per-epoch seeds derived from it)
MAX_SEED = 2**32 - 1
CLUTTERED = "cluttered-fashion-mnist"
# the side of the item a cluttered canvas carries (a Fashion-MNIST image)
_ITEM_SIDE = 28


@dataclass(frozen=True)
class DataConfig(OptionSection):
    """Which images the network sees: the data set, its image size, the subsets used and
    the corruptions of the training and evaluation images."""

    dataset: str = option("synthetic", "data set", choices=DATASET_SPECS)
    limit_train: int | None = option(None, "use the first N training images", parse_optional_int)
    limit_test: int | None = option(None, "use the first N test images", parse_optional_int)
    holdout: int = option(
        0,
        "hold out N of the training images (of limit_train's; evenly spaced, the same for "
        "every seed) as a validation set, read as the test set is: the epochs are evaluated "
        "on it (val_acc) and the test set only after the last epoch, so a recipe can be "
        "chosen without the test set",
        int,
    )
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
    test_flip: bool = option(
        False,
        "score every evaluated image (validation, test and corrupted sets) by the mean of the "
        "softmax of it and of its mirror image (test-time augmentation), for data sets "
        "trained with horizontal flips",
        parse_bool,
    )

    def validate(self) -> DataConfig:
        """Check every option's type and range; raise naming the first bad one."""
        self.check_fields()
        for name in ("limit_train", "limit_test"):
            if getattr(self, name) is not None:
                _validate.positive_int(name, getattr(self, name))
        _validate.non_negative_int("holdout", self.holdout)
        if self.limit_train is not None and self.holdout >= self.limit_train:
            raise ValueError(
                f"holdout must be smaller than limit_train ({self.limit_train}), got {self.holdout}"
            )
        for name in ("train_corrupt", "eval_corrupt"):
            values = [Corruption.parse(v, name=name).name for v in getattr(self, name)]
            if len(set(values)) != len(values):
                raise ValueError(f"{name} must not repeat a corruption, got {values}")
        if self.test_flip and not DATASET_SPECS[self.dataset].flip:
            raise ValueError(
                f"test_flip applies to data sets trained with horizontal flips; {self.dataset} "
                "is not (its mirror images are not its images)"
            )
        size = DATASET_SPECS[self.dataset].image_size_for(self.image_size)
        canvas = CanvasOptions.from_dict(self.canvas)
        if self.dataset == CLUTTERED:
            canvas.check_canvas(size, _ITEM_SIDE)
        elif self.canvas:
            raise ValueError(f"canvas applies to {CLUTTERED}, got dataset {self.dataset!r}")
        return self


@dataclass(frozen=True)
class OptimConfig(OptionSection):
    """How the network is trained: length, batch, optimiser, learning-rate schedule,
    regularisation and the seed of initialisation, data order and augmentation.
    ``epochs`` may grow when a run is resumed (the schedule is re-planned)."""

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
    seed: int = option(0, "random seed, 0 to 2**32 - 1", int)

    def validate(self) -> OptimConfig:
        """Check every option's type and range; raise naming the first bad one."""
        self.check_fields()
        for name in ("epochs", "batch_size"):
            _validate.positive_int(name, getattr(self, name))
        _validate.non_negative_int("seed", self.seed)
        if self.seed > MAX_SEED:
            raise ValueError(f"seed must be an int in [0, {MAX_SEED}], got {self.seed}")
        for name in ("lr", "lam_lr_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a finite number > 0, got {getattr(self, name)}")
        for name in ("weight_decay", "warmup_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("momentum", "label_smoothing"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        return self


@dataclass(frozen=True)
class ComputeConfig(OptionSection):
    """How each training step is computed: its precision, memory format, batch-norm
    statistics across processes and where the augmentation runs. Fixed for a run."""

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
    sync_bn: bool = option(False, "SyncBatchNorm under DDP (CUDA only)", parse_bool)
    device_data: bool = option(
        False,
        "hold the training and test images on the device and crop, flip and normalise whole "
        "batches there (in-memory sets: fashion-mnist, mnist, cifar); other sets use the "
        "data loader",
        parse_bool,
    )

    def validate(self) -> ComputeConfig:
        """Check every option's type and choices; raise naming the first bad one."""
        self.check_fields()
        return self


@dataclass(frozen=True)
class RuntimeConfig(OptionSection):
    """Where and how the run executes, without changing what it computes: every option
    here may change when a run is resumed."""

    RESUMABLE = True

    data_dir: str | None = option(None, "folder with the data files (also $PREATTN_DATA)")
    out: str | None = option(None, "run directory (default: a new runs/<date>-<time>-<model>)")
    device: str = option("auto", "auto, cpu, cuda, cuda:N, or any torch device name")
    compile: bool = option(
        False,
        "torch.compile the network for training (evaluation stays eager); the first steps "
        "take longer while it compiles",
        parse_bool,
    )
    deterministic: bool = option(
        False,
        "deterministic kernels (cuDNN, cuBLAS), as exact resume on CUDA needs; off lets "
        "cuDNN pick the fastest convolution algorithms",
        parse_bool,
    )
    eval_every: int = option(
        1,
        "evaluate on the test set every N epochs and after the last one (0: only after the "
        "last; ablate's default)",
        int,
    )
    workers: int = option(0, "data-loader worker processes", int)
    plots: bool = option(True, "write curves.png and lambda.png when the run ends", parse_bool)

    def validate(self) -> RuntimeConfig:
        """Check every option's type and range; raise naming the first bad one."""
        self.check_fields()
        for name in ("workers", "eval_every"):
            _validate.non_negative_int(name, getattr(self, name))
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

"""What a :class:`TrainConfig` describes: its data splits and its network.

The one place that turns a configuration into objects; ``train``, ``eval``, ``export``
and ``load_run`` all go through it.
"""

from __future__ import annotations

import dataclasses

from torch import nn
from torch.utils.data import Dataset

from ..data.corrupt import CorruptedDataset
from ..data.registry import DataSplits, build_datasets
from ..models.factory import create_model
from .config import TrainConfig

__all__ = ["build_data", "build_model_for", "corrupted_test_sets"]


def build_data(
    config: TrainConfig,
    *,
    limit_train: int | None = None,
    limit_test: int | None = None,
) -> DataSplits:
    """The splits of ``config``; ``limit_train`` / ``limit_test`` override the config's.

    With ``config.train_corrupt`` the training images are corrupted (after augmentation;
    :class:`~preattn.data.corrupt.CorruptedDataset`, seeded by ``config.seed``)."""
    splits = build_datasets(
        config.dataset,
        config.data_dir,
        limit_train=limit_train if limit_train is not None else config.limit_train,
        limit_test=limit_test if limit_test is not None else config.limit_test,
        image_size=config.image_size,
        seed=config.seed,
    )
    if config.train_corrupt:
        train = CorruptedDataset(
            splits.train,
            config.train_corrupt,
            seed=config.seed,
            mean=splits.mean,
            std=splits.std,
        )
        splits = dataclasses.replace(splits, train=train)
    return splits


def corrupted_test_sets(config: TrainConfig, splits: DataSplits) -> dict[str, Dataset]:
    """One corrupted copy of the test set per entry of ``config.eval_corrupt``, by name."""
    return {
        name: CorruptedDataset(
            splits.test, [name], seed=config.seed, mean=splits.mean, std=splits.std
        )
        for name in config.eval_corrupt
    }


def build_model_for(config: TrainConfig, splits: DataSplits) -> nn.Module:
    """The network ``config`` describes, for the data set ``splits`` (classes, channels and
    image size, which decides the ResNets' stem)."""
    return create_model(
        config.model,
        image_size=splits.image_size,
        num_classes=splits.num_classes,
        in_chans=splits.in_chans,
        stages=config.stages,
        spec=config.spec,
        width=config.width,
    )

"""What a :class:`TrainConfig` describes: its data splits and its network.

The one place that turns a configuration into objects; ``train``, ``eval``, ``export``
and ``load_run`` all go through it.
"""

from __future__ import annotations

from torch import nn

from ..data.registry import DataSplits, build_datasets
from ..models.factory import create_model
from .config import TrainConfig

__all__ = ["build_data", "build_model_for"]


def build_data(
    config: TrainConfig,
    *,
    limit_train: int | None = None,
    limit_test: int | None = None,
) -> DataSplits:
    """The splits of ``config``; ``limit_train`` / ``limit_test`` override the config's."""
    return build_datasets(
        config.dataset,
        config.data_dir,
        limit_train=limit_train if limit_train is not None else config.limit_train,
        limit_test=limit_test if limit_test is not None else config.limit_test,
        image_size=config.image_size,
        seed=config.seed,
    )


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
    )

"""What a :class:`TrainConfig` describes: its data splits and its network.

The one place that turns a configuration into objects. :func:`build_model` is the one
construction path of a run's network: training, resuming, every reader of a saved run
(:mod:`preattn.train.load`: ``eval``, ``predict``, ``viz``, ``check``, ``export``,
``ablate``'s report) and :func:`preattn.timm.create_model_from_run` build it from the run's
model section, ``config.network`` (:class:`~preattn.models.ModelConfig`: every option that
shapes a network is one of its fields), so a model-shaping option cannot be dropped by one
of them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from ..data.corrupt import CorruptedDataset
from ..data.registry import DatasetInfo, DataSplits, build_datasets
from .config import TrainConfig
from .paired_init import initialise_paired

__all__ = ["build_data", "build_model", "corrupted_test_sets", "model_arguments"]


def build_data(
    config: TrainConfig,
    *,
    limit_train: int | None = None,
    limit_test: int | None = None,
) -> DataSplits:
    """The splits of ``config``; ``limit_train`` / ``limit_test`` override the config's
    (a ``limit_train`` given here also drops ``config.holdout``'s validation set).

    With ``config.train_corrupt`` the training images are corrupted (after augmentation;
    :class:`~preattn.data.corrupt.CorruptedDataset`, seeded by ``config.seed``)."""
    splits = build_datasets(
        config.dataset,
        config.data_dir,
        limit_train=limit_train if limit_train is not None else config.limit_train,
        limit_test=limit_test if limit_test is not None else config.limit_test,
        image_size=config.image_size,
        seed=config.seed,
        canvas=config.canvas,
        # a reader's own limit_train wants the test set, not the run's training split
        holdout=config.holdout if limit_train is None else 0,
    )
    if config.train_corrupt:
        train = CorruptedDataset(
            splits.train,
            config.train_corrupt,
            seed=config.seed,
            split="train",
            mean=splits.mean,
            std=splits.std,
        )
        splits = dataclasses.replace(splits, train=train)
    return splits


def corrupted_test_sets(config: TrainConfig, splits: DataSplits) -> dict[str, Dataset]:
    """One corrupted copy of the test set per entry of ``config.eval_corrupt``, by name."""
    return {
        name: CorruptedDataset(
            splits.test, [name], seed=config.seed, split="test", mean=splits.mean, std=splits.std
        )
        for name in config.eval_corrupt
    }


def model_arguments(config: TrainConfig, info: DatasetInfo) -> dict[str, Any]:
    """The builder arguments of ``config.model`` for data described by ``info``: those of
    the run's model section, :meth:`ModelConfig.arguments <preattn.models.ModelConfig.arguments>`.
    ``create_model(config.model, **arguments)`` builds the run's network; timm's
    ``preattn_<model>`` takes the same arguments."""
    return config.network.arguments(info)


def build_model(config: TrainConfig, info: DatasetInfo, *, initialise: bool = False) -> nn.Module:
    """The network ``config`` describes, for the data set ``info`` describes.

    ``initialise=True`` (a run's start): initialised from ``config.seed`` with paired
    initialisation (:mod:`preattn.train.paired_init`: the layers every variant shares
    start from the plain network of that seed, attention from its own stream). Otherwise
    freshly built from the global random state (the readers of :mod:`preattn.train.load`
    then load a run's weights)."""
    if not initialise:
        return config.network.build(info)
    plain = dataclasses.replace(config.network, spec=config.spec.replace(placement="none"))
    return initialise_paired(
        lambda: config.network.build(info), lambda: plain.build(info), config.seed
    )

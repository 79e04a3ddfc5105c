"""The preprocessing of in-memory image sets (Fashion-MNIST, MNIST, CIFAR), described by
its parameters so that two implementations can apply it: torchvision's per-sample
transforms (:meth:`ArrayTransform.__call__`, in the data loader) and the batched one on the
training device (:mod:`preattn.data.device_batches`).

For a uint8 image ``u`` (C, H, W): ``x = u / 255``; in training, a random ``size x size``
crop of ``x`` zero-padded by ``pad`` on each side (top and left uniform in ``[0, 2·pad]``)
and, with ``flip``, a horizontal flip with probability 1/2; then ``(x − mean) / std`` per
channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torchvision.transforms import v2

__all__ = ["ArrayTransform"]


@dataclass(frozen=True)
class ArrayTransform:
    """uint8 (C, H, W) -> normalised float32 (C, size, size); see the module docstring."""

    mean: Sequence[float]
    std: Sequence[float]
    size: int
    pad: int = 0
    flip: bool = False
    train: bool = False
    _compose: v2.Compose = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        steps: list = [v2.ToDtype(torch.float32, scale=True)]
        if self.train:
            steps.append(v2.RandomCrop(self.size, padding=self.pad))
            if self.flip:
                steps.append(v2.RandomHorizontalFlip())
        steps.append(v2.Normalize(list(self.mean), list(self.std)))
        object.__setattr__(self, "_compose", v2.Compose(steps))

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return self._compose(image)

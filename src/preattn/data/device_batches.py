"""Batches made on the training device from an in-memory image set (``--device-data``).

The whole set stays on the device as uint8 (Fashion-MNIST: 47 MB; CIFAR: 150 MB), padded
once for the random crops. Each epoch draws, on the CPU from one seeded generator, a
permutation of the set and per image a crop offset and a flip; each batch is then one
gather on the device (crop and flip are index arithmetic) and one multiply-add that
normalises it. No worker processes, no per-sample Python, no host-to-device copy of images.

The result is the preprocessing :class:`~preattn.data.transforms.ArrayTransform` describes
(same crop and flip distributions, same normalisation), drawn from a different random
stream than the data loader's, so a run chooses one path and keeps it (``device_data`` is
fixed on resume). An epoch's draws depend only on its generator's seed, so a resumed run
repeats an uninterrupted one.

Under DDP every process draws the same permutation and takes its strided share
``order[rank::world_size]``, cut to the same number of full batches on every process.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.nn import functional as F
from torch.utils.data import Dataset, Subset

from .transforms import ArrayTransform

__all__ = ["DeviceBatches", "DeviceImages", "crop_offsets"]


def crop_offsets(
    count: int, pad: int, flip: bool, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(top, left, flipped)`` for ``count`` images: offsets uniform in ``[0, 2·pad]`` into
    the padded image (as ``RandomCrop(size, padding=pad)`` draws them) and flips with
    probability 1/2 (all False without ``flip``)."""
    top = torch.randint(0, 2 * pad + 1, (count,), generator=generator)
    left = torch.randint(0, 2 * pad + 1, (count,), generator=generator)
    if flip:
        flipped = torch.rand(count, generator=generator) < 0.5
    else:
        flipped = torch.zeros(count, dtype=torch.bool)
    return top, left, flipped


def _array_source(dataset: Dataset) -> tuple[Dataset, torch.Tensor] | None:
    """The in-memory set under ``dataset`` (through any Subsets) and the indices into it."""
    from .registry import ArrayImageDataset

    indices: torch.Tensor | None = None
    while isinstance(dataset, Subset):
        here = torch.as_tensor(list(dataset.indices), dtype=torch.long)
        indices = here if indices is None else here[indices]
        dataset = dataset.dataset
    if not isinstance(dataset, ArrayImageDataset):
        return None
    if not isinstance(dataset.transform, ArrayTransform):
        return None
    if indices is None:
        indices = torch.arange(len(dataset))
    return dataset, indices


class DeviceImages:
    """An in-memory image set on ``device`` with its :class:`ArrayTransform`.

    ``images``: uint8 (N, C, H, W); ``labels``: int (N,). :meth:`epoch` yields float32
    batches (B, C, size, size) in channels-last layout and int64 labels (B,).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        transform: ArrayTransform,
        device: torch.device,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        self.transform = transform
        self.pad = transform.pad if transform.train else 0
        self.size = images.shape[-1] if not transform.train else transform.size
        self.padded = F.pad(images, (self.pad,) * 4).to(device)
        self.labels = labels.to(device=device, dtype=torch.long)
        self.device = device
        channels = images.shape[1]
        mean = torch.tensor(transform.mean, dtype=torch.float32).view(1, channels, 1, 1)
        std = torch.tensor(transform.std, dtype=torch.float32).view(1, channels, 1, 1)
        self.mean, self.std = mean.to(device), std.to(device)
        self.steps = torch.arange(self.size, device=device)

    @classmethod
    def of(cls, dataset: Dataset, device: torch.device) -> DeviceImages | None:
        """The set behind ``dataset`` on ``device``, or None when it is not an in-memory
        image set with an :class:`ArrayTransform` (image folders, generated or corrupted
        sets: those keep the data loader)."""
        found = _array_source(dataset)
        if found is None:
            return None
        base, indices = found
        labels = torch.as_tensor(base.targets, dtype=torch.long)[indices]  # type: ignore[attr-defined]
        return cls(base.images[indices], labels, base.transform, device)  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return len(self.labels)

    def batch(
        self, index: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flipped: torch.Tensor
    ) -> torch.Tensor:
        """The crops ``[top, top + size) x [left, left + size)`` of the padded images
        ``index`` (flipped where ``flipped``), normalised: float32 (B, C, size, size)."""
        rows = top[:, None] + self.steps  # (B, size)
        forward = left[:, None] + self.steps
        backward = left[:, None] + (self.size - 1) - self.steps
        cols = torch.where(flipped[:, None], backward, forward)  # (B, size)
        # advanced indices around a slice: the result is (B, size, size, C)
        pixels = self.padded[index[:, None, None], :, rows[:, :, None], cols[:, None, :]]
        x = pixels.permute(0, 3, 1, 2).float().div_(255)
        return x.sub_(self.mean).div_(self.std)

    def epoch(
        self,
        batch_size: int,
        *,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> DeviceBatches:
        """One pass: shuffled and augmented from ``generator`` when the transform trains
        (``generator`` required then), else in order; this process's share under DDP."""
        count = len(self)
        if self.transform.train:
            if generator is None:
                raise ValueError("a training set's epoch needs a generator (its random draws)")
            order = torch.randperm(count, generator=generator)
            top, left, flipped = crop_offsets(count, self.pad, self.transform.flip, generator)
            top, left, flipped = top[order], left[order], flipped[order]
        else:
            order = torch.arange(count)
            top = left = torch.zeros(count, dtype=torch.long)
            flipped = torch.zeros(count, dtype=torch.bool)
        share = slice(rank, None, world_size)
        order, top, left, flipped = order[share], top[share], left[share], flipped[share]
        if drop_last:
            # the same number of full batches on every process
            keep = (count // world_size) // batch_size * batch_size
            order, top, left, flipped = order[:keep], top[:keep], left[:keep], flipped[:keep]
        draws = [t.to(self.device, non_blocking=True) for t in (order, top, left, flipped)]
        return DeviceBatches(self, batch_size, *draws)


@dataclass
class DeviceBatches:
    """The batches of one epoch of :class:`DeviceImages` (iterable, with a length)."""

    images: DeviceImages
    batch_size: int
    order: torch.Tensor
    top: torch.Tensor
    left: torch.Tensor
    flipped: torch.Tensor

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self.order), self.batch_size):
            part = slice(start, start + self.batch_size)
            index = self.order[part]
            images = self.images.batch(index, self.top[part], self.left[part], self.flipped[part])
            yield images, self.images.labels[index]

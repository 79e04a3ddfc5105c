"""A procedurally generated shape-classification task that needs no download.

Each image shows one shape of a random colour, size, position and rotation on a
random-coloured background, with Gaussian pixel noise and a faint distractor blob:

    0 disk   1 square   2 triangle   3 plus   4 ring   5 striped disk

Sample ``i`` of a split is a pure function of ``(seed, split, i)``, so the set is
identical on every machine and in every process (DDP ranks agree without communication).
Images are float tensors (in_chans, size, size) with values roughly in [-1, 1].
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from .. import _validate

__all__ = ["SYNTHETIC_CLASSES", "SyntheticShapes"]

SYNTHETIC_CLASSES = ("disk", "square", "triangle", "plus", "ring", "striped disk")
_SPLIT_STREAM = {"train": 0, "test": 1}


def _shape_mask(label: int, u: np.ndarray, v: np.ndarray, r: float, phase: float) -> np.ndarray:
    """Boolean mask of shape ``label`` in rotated coordinates (u, v) centred on the shape."""
    d = np.hypot(u, v)
    if label == 0:
        return d < r
    if label == 1:
        return np.maximum(np.abs(u), np.abs(v)) < 0.8 * r
    if label == 2:
        angles = np.pi / 2 + 2 * np.pi * np.arange(3) / 3
        inside = np.ones_like(u, dtype=bool)
        for a in angles:
            inside &= u * np.cos(a) + v * np.sin(a) < 0.5 * r
        return inside
    if label == 3:
        arm = 0.3 * r
        return ((np.abs(u) < arm) & (np.abs(v) < r)) | ((np.abs(v) < arm) & (np.abs(u) < r))
    if label == 4:
        return np.abs(d - 0.75 * r) < 0.22 * r
    return (d < r) & (np.sin(u * 9.0 / r + phase) > 0)


class SyntheticShapes(Dataset[tuple[torch.Tensor, int]]):
    """Six shape classes under noise; ``len`` samples per split, balanced labels.

    Args:
        num_samples: number of images in this split.
        train: the training split (else the held-out test split; the two never overlap).
        image_size: height and width in pixels.
        in_chans: 3 (RGB) or 1 (grey).
        noise: standard deviation of the additive Gaussian pixel noise.
        seed: selects the whole data set.
    """

    classes = SYNTHETIC_CLASSES

    def __init__(
        self,
        num_samples: int = 6000,
        *,
        train: bool = True,
        image_size: int = 32,
        in_chans: int = 3,
        noise: float = 0.2,
        seed: int = 0,
    ) -> None:
        self.num_samples = _validate.positive_int("num_samples", num_samples)
        self.image_size = _validate.positive_int("image_size", image_size)
        self.in_chans = _validate.choice("in_chans", in_chans, (1, 3))
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        self.noise = float(noise)
        self.seed = int(seed)
        self.split = "train" if train else "test"
        self.targets = [i % len(SYNTHETIC_CLASSES) for i in range(num_samples)]
        self._images = torch.stack([self._render(i) for i in range(num_samples)])

    def _render(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, _SPLIT_STREAM[self.split], index])
        label = self.targets[index]
        n = self.image_size
        coords = (np.arange(n) + 0.5) / n * 2 - 1
        yy, xx = np.meshgrid(coords, coords, indexing="ij")
        cx, cy = rng.uniform(-0.35, 0.35, size=2)
        r = rng.uniform(0.35, 0.6)
        theta = rng.uniform(0, 2 * np.pi)
        u = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
        v = -(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)
        mask = _shape_mask(label, u, v, r, rng.uniform(0, 2 * np.pi))

        background = rng.uniform(-0.8, 0.8, size=(3, 1, 1))
        contrast = rng.choice([-1.0, 1.0], size=(3, 1, 1)) * rng.uniform(0.5, 1.0, size=(3, 1, 1))
        foreground = np.clip(background + contrast, -1.0, 1.0)
        image = np.where(mask[None], foreground, background)
        bx, by = rng.uniform(-1, 1, size=2)
        blob = np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / 0.05)
        image = image + rng.uniform(-0.5, 0.5) * blob[None]
        image = image + rng.normal(0.0, self.noise, size=image.shape)
        if self.in_chans == 1:
            image = image.mean(axis=0, keepdims=True)
        return torch.from_numpy(image.astype(np.float32))

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self._images[index], self.targets[index]

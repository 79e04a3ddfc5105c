"""Deterministic image corruptions, for training on or evaluating against damaged inputs.

A corruption is written ``kind:severity`` and acts on an image ``x`` (C, H, W) on the
[0, 1] pixel scale (the dataset's normalisation is undone first and redone after):

=========  ===========================================================================
kind       effect (severity ``s``)
=========  ===========================================================================
noise      ``clamp(x + s·ε, 0, 1)``, ``ε ~ N(0, 1)`` per pixel: Gaussian noise of σ = s
occlude    a square of area ``s·H·W`` at a random position set to grey (0.5)
clutter    4 squares of area ``s·H·W / 4`` each, copied from random positions of other
           images of the same set and pasted at random positions
=========  ===========================================================================

Every random choice is drawn from a generator seeded by ``(seed, split, sample index, kind)``:
the same sample gets the same damage in every run with that seed, whatever the model,
so runs that differ only in the model see identical inputs (paired comparisons); the
training and test splits draw from separate streams, so test image ``i`` carries none of
the noise field (or patch positions) of training image ``i``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

__all__ = ["CORRUPTIONS", "SPLITS", "CorruptedDataset", "Corruption", "parse_corruptions"]

CORRUPTIONS = ("noise", "occlude", "clutter")
SPLITS = ("train", "test")
_CLUTTER_PATCHES = 4
_OCCLUDE_FILL = 0.5


@dataclass(frozen=True)
class Corruption:
    """One corruption: ``kind`` (one of :data:`CORRUPTIONS`) and its ``severity``."""

    kind: str
    severity: float

    @classmethod
    def parse(cls, text: str, *, name: str = "corruption") -> Corruption:
        """``"noise:0.2"`` -> ``Corruption("noise", 0.2)``; errors name ``name``."""
        kind, sep, value = str(text).strip().partition(":")
        if not sep or kind not in CORRUPTIONS:
            raise ValueError(
                f"{name} entries must be kind:severity with kind one of {list(CORRUPTIONS)}, "
                f"got {text!r}"
            )
        try:
            severity = float(value)
        except ValueError:
            raise ValueError(f"{name}: severity of {text!r} must be a number") from None
        upper = math.inf if kind == "noise" else 1.0
        if not (0.0 < severity <= upper and math.isfinite(severity)):
            bound = "> 0" if kind == "noise" else "in (0, 1] (an area fraction)"
            raise ValueError(f"{name}: severity of {kind} must be {bound}, got {severity}")
        return cls(kind, severity)

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.severity:g}"

    def generator(self, seed: int, index: int, split: str) -> torch.Generator:
        """The generator of sample ``index`` of ``split`` (one of :data:`SPLITS`) under ``seed``
        (independent per kind and per split)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
        kind_id, split_id = CORRUPTIONS.index(self.kind), SPLITS.index(split)
        key = ((seed * 1_000_003 + index) * 7 + kind_id) * 3 + split_id
        return torch.Generator().manual_seed(key % 2**63)

    def apply(
        self, image: torch.Tensor, generator: torch.Generator, others: _ImageSource | None = None
    ) -> torch.Tensor:
        """The corrupted copy of ``image`` (C, H, W) in [0, 1]; ``others`` gives the clean
        [0, 1] images that ``clutter`` copies patches from."""
        _, height, width = image.shape
        if self.kind == "noise":
            noise = torch.randn(image.shape, generator=generator, dtype=image.dtype)
            return (image + self.severity * noise).clamp_(0.0, 1.0)
        out = image.clone()
        if self.kind == "occlude":
            side = _side(self.severity, height, width)
            top, left = _position(generator, height, width, side)
            out[:, top : top + side, left : left + side] = _OCCLUDE_FILL
            return out
        if others is None:
            raise ValueError("clutter needs the other images of the data set (others=)")
        side = _side(self.severity / _CLUTTER_PATCHES, height, width)
        for _ in range(_CLUTTER_PATCHES):
            source = others.clean(int(torch.randint(len(others), (1,), generator=generator)))
            src_top, src_left = _position(generator, height, width, side)
            top, left = _position(generator, height, width, side)
            patch = source[:, src_top : src_top + side, src_left : src_left + side]
            out[:, top : top + side, left : left + side] = patch.to(out.dtype)
        return out


def _side(fraction: float, height: int, width: int) -> int:
    return max(1, min(height, width, round(math.sqrt(fraction * height * width))))


def _position(generator: torch.Generator, height: int, width: int, side: int) -> tuple[int, int]:
    top = int(torch.randint(height - side + 1, (1,), generator=generator))
    left = int(torch.randint(width - side + 1, (1,), generator=generator))
    return top, left


def parse_corruptions(text: str) -> list[str]:
    """``"noise:0.2,occlude:0.25"`` -> ``["noise:0.2", "occlude:0.25"]``; ``none`` -> []."""
    if str(text).strip().lower() in ("", "none", "off"):
        return []
    return [Corruption.parse(item).name for item in str(text).split(",") if item.strip()]


class _ImageSource:
    """Clean images of a normalised data set on the [0, 1] scale, by index."""

    def __init__(self, dataset: Dataset, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.dataset, self.mean, self.std = dataset, mean, std

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def clean(self, index: int) -> torch.Tensor:
        # reading a sample may draw augmentation from the global RNG: keep that stream intact
        with torch.random.fork_rng(devices=[]):
            image, _ = self.dataset[index]
        return image * self.std + self.mean


class CorruptedDataset(Dataset[tuple[torch.Tensor, int]]):
    """``dataset`` with ``corruptions`` applied to each image, in order, after its own
    transform (augmentation and normalisation with ``mean``/``std`` per channel).

    Sample ``i`` is ``normalise(c_k(... c_1(denormalise(x_i))))``; each ``c_j`` draws from
    :meth:`Corruption.generator` ``(seed, i, split)``, ``split`` naming which split
    ``dataset`` is (``"train"`` or ``"test"``).
    """

    def __init__(
        self,
        dataset: Dataset,
        corruptions: Sequence[str | Corruption],
        *,
        seed: int,
        split: str,
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
    ) -> None:
        self.dataset = dataset
        self.corruptions = [
            c if isinstance(c, Corruption) else Corruption.parse(c) for c in corruptions
        ]
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
        self.seed, self.split = seed, split
        self.mean = torch.tensor(mean if mean is not None else (0.0,)).view(-1, 1, 1)
        self.std = torch.tensor(std if std is not None else (1.0,)).view(-1, 1, 1)
        self._source = _ImageSource(dataset, self.mean, self.std)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.dataset[index]
        pixels = image * self.std + self.mean
        for corruption in self.corruptions:
            pixels = corruption.apply(
                pixels, corruption.generator(self.seed, index, self.split), others=self._source
            )
        return (pixels - self.mean) / self.std, label

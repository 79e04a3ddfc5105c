"""Run a trained model on image files: the training's test preprocessing, top-k classes.

``preprocess_image(path, info)`` reads an image file and applies what the run's data set
(:class:`~preattn.data.registry.DatasetInfo`) does to its test split: grayscale or RGB to
the data set's channels, the image size (resize to the side length; image folders: resize
to ``size / 0.875`` then centre crop), scaling to [0, 1] and the data set's mean/std (the
synthetic set: [-1, 1]).

Each prediction carries two signs that the image may lie outside what the run was trained
on, and a ``hint`` when either fires: the normalised entropy of the class probabilities
(``H / log K``, 0 for certainty, 1 for a uniform guess; hint above
:data:`UNCERTAIN_ENTROPY`), and the image's pixel mean against the training set's (hint
when they differ by more than the training set's pixel standard deviation).

Files are decoded and predicted in batches (:func:`iter_predictions`), so the memory is that
of one batch however many files there are; ``preattn predict`` prints each batch's lines as
they are computed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision.transforms import v2

from . import _validate
from .data.errors import DatasetError
from .data.images import open_image
from .data.registry import DatasetInfo

__all__ = [
    "DEFAULT_BATCH",
    "UNCERTAIN_ENTROPY",
    "Prediction",
    "image_files",
    "iter_predictions",
    "predict",
    "preprocess_image",
]

UNCERTAIN_ENTROPY = 0.6
# images decoded and run through the network at once: the memory bound of a prediction
DEFAULT_BATCH = 64


@dataclass
class Prediction:
    """Top-k classes of one image, most probable first."""

    path: str
    classes: list[str]
    indices: list[int]
    probabilities: list[float]
    entropy: float = 0.0  # of all K probabilities, divided by log K: in [0, 1]
    hint: str | None = None  # why the image may lie outside the training data

    def to_dict(self) -> dict:
        return {
            "file": self.path,
            "top": [
                {"class": c, "index": i, "probability": p}
                for c, i, p in zip(self.classes, self.indices, self.probabilities, strict=True)
            ],
            "entropy": self.entropy,
            "hint": self.hint,
        }

    def __str__(self) -> str:
        shown = ", ".join(
            f"{c} {100 * p:.1f}%" for c, p in zip(self.classes, self.probabilities, strict=True)
        )
        return f"{self.path}: {shown}" + (f"  [{self.hint}]" if self.hint else "")


def _hint(x: torch.Tensor, entropy: float, info: DatasetInfo) -> str | None:
    """Why the preprocessed image ``x`` may lie outside the data ``info`` describes."""
    reasons = []
    if info.mean is not None and info.std is not None:
        mean, std = torch.tensor(info.mean), torch.tensor(info.std)
        pixels = x * std[:, None, None] + mean[:, None, None]  # back in [0, 1]
        image_mean, train_mean = float(pixels.mean()), float(mean.mean())
        if abs(image_mean - train_mean) > float(std.mean()):
            reasons.append(
                f"unlike the training images: pixel mean {image_mean:.2f} vs {train_mean:.2f}"
            )
    if entropy > UNCERTAIN_ENTROPY:
        reasons.append(f"uncertain: entropy {100 * entropy:.0f} % of the maximum")
    return "; ".join(reasons) or None


def preprocess_image(path: str | Path, info: DatasetInfo) -> torch.Tensor:
    """The image at ``path`` as the model's test input (C, H, W), float32."""
    size = info.image_size
    image = v2.functional.pil_to_tensor(open_image(path, info.in_chans))  # uint8 (C, H, W)
    if info.name == "imagefolder":
        image = v2.functional.resize(image, round(size / 0.875), antialias=True)
        image = v2.functional.center_crop(image, size)
    else:
        image = v2.functional.resize(image, [size, size], antialias=True)
    x = image.float() / 255.0
    if info.mean is not None and info.std is not None:
        x = v2.functional.normalize(x, list(info.mean), list(info.std))
    else:  # the synthetic set's images lie in [-1, 1]
        x = x * 2.0 - 1.0
    return x


def predict(
    model: nn.Module,
    paths: Iterable[str | Path],
    info: DatasetInfo,
    *,
    top_k: int = 5,
    on_error: Callable[[str | Path, DatasetError], None] | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> list[Prediction]:
    """Top-``top_k`` predictions of ``model`` (eval mode) for each file in ``paths``, with
    the class names of ``info`` (the data set the model was trained on): the list of
    :func:`iter_predictions`.

    A file that cannot be read raises its :class:`~preattn.data.errors.DatasetError`; with
    ``on_error`` it is passed to ``on_error(path, error)`` instead and left out of the
    result (each file is decoded once either way)."""
    return list(
        iter_predictions(model, paths, info, top_k=top_k, on_error=on_error, batch_size=batch_size)
    )


def iter_predictions(
    model: nn.Module,
    paths: Iterable[str | Path],
    info: DatasetInfo,
    *,
    top_k: int = 5,
    on_error: Callable[[str | Path, DatasetError], None] | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> Iterator[Prediction]:
    """The predictions of :func:`predict`, yielded batch by batch as they are computed.

    ``paths`` is read lazily and at most ``batch_size`` decoded images are held at a time,
    so the memory is bounded by one batch (``batch_size`` x C x H x W floats and one
    forward pass) whatever the number of files: a folder of 100,000 photos streams."""
    _validate.positive_int("top_k", top_k)
    _validate.positive_int("batch_size", batch_size)
    images: list[torch.Tensor] = []
    kept: list[str | Path] = []
    for path in paths:
        try:
            images.append(preprocess_image(path, info))
        except DatasetError as exc:
            if on_error is None:
                raise
            on_error(path, exc)
            continue
        kept.append(path)
        if len(images) == batch_size:
            yield from _predict_batch(model, images, kept, info, top_k)
            images, kept = [], []
    if images:
        yield from _predict_batch(model, images, kept, info, top_k)


@torch.no_grad()
def _predict_batch(
    model: nn.Module,
    images: list[torch.Tensor],
    paths: list[str | Path],
    info: DatasetInfo,
    top_k: int,
) -> list[Prediction]:
    """The predictions of ``model`` (in eval mode for the pass) on one batch of images."""
    batch = torch.stack(images)
    parameter = next(model.parameters(), None)
    if parameter is not None:
        batch = batch.to(parameter.device)
    was_training = model.training
    model.eval()
    try:
        probabilities = model(batch).float().softmax(dim=1).cpu()
    finally:
        model.train(was_training)
    k = min(top_k, probabilities.shape[1])
    values, indices = probabilities.topk(k, dim=1)
    count = probabilities.shape[1]
    plogp = probabilities * probabilities.clamp_min(1e-12).log()
    entropies = (-plogp.sum(dim=1) / math.log(count)).tolist() if count > 1 else [0.0] * len(paths)
    return [
        Prediction(
            str(path),
            [info.classes[i] for i in idx.tolist()],
            idx.tolist(),
            [float(v) for v in vals],
            entropy,
            _hint(x, entropy, info),
        )
        for path, vals, idx, entropy, x in zip(
            paths, values, indices, entropies, images, strict=True
        )
    ]


def image_files(arguments: Iterable[str | Path]) -> Iterator[Path]:
    """The files the command line names: a file as given, a folder as the image files in it
    (by name, not recursively; suffixes PIL reads), each yielded as it is reached."""
    from PIL import Image

    suffixes = {s.lower() for s in Image.registered_extensions()}
    for argument in arguments:
        path = Path(argument)
        if not path.is_dir():
            yield path
            continue
        names = sorted(e.name for e in os.scandir(path) if Path(e.name).suffix.lower() in suffixes)
        for name in names:
            yield path / name

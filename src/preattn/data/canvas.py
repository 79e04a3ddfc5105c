"""Cluttered canvases: each item of an image set at a random position of a larger, empty
canvas, among distractors cut from other items — the *cluttered* task of the recurrent-
attention (Mnih et al. 2014, "cluttered translated MNIST") and spatial-transformer (Jaderberg
et al. 2015, "cluttered MNIST") papers, built here from Fashion-MNIST.

A task is described by :class:`CanvasOptions`. For item ``i`` of a split (a uint8 image
``u_i`` of side ``s0``, resized to ``item_size`` = ``s`` first when ``s != s0``) the canvas
``c_i`` (``S x S``, ``S`` = the data set's ``image_size``) is built from zeros::

    for k in 1..patches:  c[r:r+p, q:q+p] = max(c[r:r+p, q:q+p], u_{j_k}[a:a+p, b:b+p])
    for k in 1..items:    c[r:r+z, q:q+z] = max(c[...], resize(u_{m_k}, z))  # y_{m_k} != y_i
    c[t:t+s, l:l+s] = max(c[t:t+s, l:l+s], u_i)

with ``p`` = ``patch`` (the side of a distractor patch), ``z = round(item_scale·s)``,
``j_k`` / ``m_k`` other items of the same split drawn uniformly (whole distractor items are
of another class than ``y_i``), and every position uniform over the places where the piece
fits. Composition by pixel-wise maximum keeps the item whole where a distractor overlaps it
(the images are bright objects on black). The label of ``c_i`` is ``y_i``.

Every draw comes from a generator seeded by ``(split, i)`` only: a canvas is the same in every
run, whatever the run's seed or model (a fixed data set, like the real one), and the
training and test splits draw from separate streams (test canvas ``i`` shares no random
field with training canvas ``i``). Distractors of a test canvas come from test items only.

``copies`` > 1 puts each test item on that many canvases (index ``i`` shows item
``i mod N`` in its copy ``i // N``), a larger test set whose accuracy has a smaller sampling
error from placement and clutter (not from the items themselves).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

__all__ = ["CanvasOptions", "compose_canvases", "resize_items"]

_SPLIT_IDS = {"train": 1, "test": 2}
# a constant that keeps these streams apart from any other use of (split, index) seeds
_STREAM = 0x636C7574


@dataclass(frozen=True)
class CanvasOptions:
    """The distractors and sizes of a cluttered task (see the module docstring).

    ``patches``: distractor patches per canvas; ``patch``: their side in pixels (of the
    resized items); ``items``: whole distractor items of other classes, each resized to
    ``item_scale`` of the item's side; ``item_size``: the side the item is resized to (default:
    its own); ``copies``: canvases per test item.
    """

    patches: int = 4
    patch: int = 8
    items: int = 0
    item_scale: float = 0.5
    item_size: int | None = None
    copies: int = 1

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None, *, name: str = "canvas") -> CanvasOptions:
        """Options from a mapping (``{"patches": 6, "patch": 6}``); errors name ``name``, the key,
        what it must be and what it is."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{name}: unknown option(s) {unknown}; known: {sorted(known)}")
        options = cls(**values)
        for key in ("patches", "items"):
            _check_int(name, key, getattr(options, key), low=0)
        for key in ("patch", "copies"):
            _check_int(name, key, getattr(options, key), low=1)
        if options.item_size is not None:
            _check_int(name, "item_size", options.item_size, low=4)
        scale = options.item_scale
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 1:
            raise ValueError(f"{name}: item_scale must be a number in (0, 1], got {scale!r}")
        if options.copies > 100:
            raise ValueError(f"{name}: copies must be at most 100, got {options.copies}")
        return options

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def item_side(self, native: int) -> int:
        """The side of an item on the canvas, for items of side ``native``."""
        return self.item_size if self.item_size is not None else native

    def check_canvas(self, canvas: int, native: int, *, name: str = "image_size") -> None:
        """Raise unless a canvas of side ``canvas`` holds the item and a patch."""
        side = self.item_side(native)
        if canvas < side:
            raise ValueError(
                f"{name} (the canvas side) must be at least the item's side {side}, got {canvas}"
            )
        if self.patch > side:
            raise ValueError(
                f"canvas: patch must be at most the item's side {side}, got {self.patch}"
            )


def _check_int(name: str, key: str, value: Any, *, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}: {key} must be an integer >= {low}, got {value!r}")


def resize_items(images: np.ndarray, side: int) -> np.ndarray:
    """uint8 (N, H, W) -> uint8 (N, side, side), antialiased bilinear (identity at H == side)."""
    if images.shape[1] == side and images.shape[2] == side:
        return images
    out = np.empty((len(images), side, side), dtype=np.uint8)
    for start in range(0, len(images), 4096):
        chunk = torch.tensor(images[start : start + 4096], dtype=torch.float32)[:, None]
        small = F.interpolate(chunk, size=(side, side), mode="bilinear", antialias=True)
        out[start : start + 4096] = small[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()
    return out


def _paste_max(canvas: np.ndarray, piece: np.ndarray, top: int, left: int) -> None:
    h, w = piece.shape
    region = canvas[top : top + h, left : left + w]
    np.maximum(region, piece, out=region)


def compose_canvases(
    images: np.ndarray,
    labels: np.ndarray,
    canvas: int,
    options: CanvasOptions,
    *,
    split: str,
    limit: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The canvases of one split: uint8 (M, canvas, canvas) and their labels (M,), with
    ``M = N·copies`` or the first ``limit`` of them.

    ``images``: uint8 (N, H, W), all the items of the split (distractors are drawn from all
    of them, so canvas ``i`` is the same whatever ``limit``); ``labels``: (N,); ``copies``
    applies to the test split only. See the module docstring for the composition."""
    if split not in _SPLIT_IDS:
        raise ValueError(f"split must be one of {list(_SPLIT_IDS)}, got {split!r}")
    native = images.shape[1]
    options.check_canvas(canvas, native)
    items = resize_items(images, options.item_side(native))
    side = items.shape[1]
    small = max(1, round(side * options.item_scale)) if options.items else 0
    small_items = resize_items(items, small) if options.items else items
    count = len(items)
    copies = options.copies if split == "test" else 1
    labels = np.asarray(labels)
    if options.items and len(np.unique(labels)) < 2:
        raise ValueError("canvas: items > 0 needs at least two classes in the split")
    total = count * copies if limit is None else min(limit, count * copies)
    out = np.zeros((total, canvas, canvas), dtype=np.uint8)
    for index in range(total):
        item = index % count
        rng = np.random.Generator(np.random.PCG64([_STREAM, _SPLIT_IDS[split], index]))
        image = out[index]
        for _ in range(options.patches):
            source = items[_other(rng, count, item)]
            a, b = rng.integers(0, side - options.patch + 1, size=2)
            top, left = rng.integers(0, canvas - options.patch + 1, size=2)
            piece = source[a : a + options.patch, b : b + options.patch]
            _paste_max(image, piece, int(top), int(left))
        for _ in range(options.items):
            other = _other(rng, count, item)
            while labels[other] == labels[item]:
                other = _other(rng, count, item)
            top, left = rng.integers(0, canvas - small + 1, size=2)
            _paste_max(image, small_items[other], int(top), int(left))
        top, left = rng.integers(0, canvas - side + 1, size=2)
        _paste_max(image, items[item], int(top), int(left))
    return out, np.tile(labels, copies)[:total]


def _other(rng: np.random.Generator, count: int, item: int) -> int:
    """A uniform index of ``[0, count)`` other than ``item`` (``item`` itself if alone)."""
    if count == 1:
        return item
    pick = int(rng.integers(0, count - 1))
    return pick + 1 if pick >= item else pick

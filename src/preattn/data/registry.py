"""Data sets by name, with each one's standard preprocessing and augmentation.

=============  ==========================================  =================================
name           files                                       training augmentation
=============  ==========================================  =================================
fashion-mnist  IDX ``train-images-idx3-ubyte[.gz]`` etc.   random crop 28 (pad 2), h-flip
mnist          IDX, same file names                        random crop 28 (pad 2)
cifar10        ``cifar-10-batches-py/`` pickle batches     random crop 32 (pad 4), h-flip
cifar100       ``cifar-100-python/`` pickle batches        random crop 32 (pad 4), h-flip
imagefolder    ``train/<class>/*.jpg``, ``val/<class>/``   random resized crop, h-flip
synthetic      generated (:mod:`preattn.data.synthetic`)   none
cluttered-     Fashion-MNIST's IDX files, each item on a   h-flip
fashion-mnist  canvas among distractors
               (:mod:`preattn.data.canvas`)
=============  ==========================================  =================================

Every set is normalised with its own channel mean and std; the test split is never
augmented. Nothing is downloaded: files are looked up in ``data_dir``, then in
``$PREATTN_DATA``, then (Fashion-MNIST) in Debian's ``/usr/share/datasets/fashion-mnist``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset
from torchvision import datasets as tv_datasets
from torchvision.transforms import v2

from .. import _validate
from .canvas import CanvasOptions, compose_canvases
from .cifar import CIFAR_LAYOUT, read_cifar
from .errors import DatasetError
from .idx import read_idx
from .images import open_rgb
from .synthetic import SYNTHETIC_CLASSES, SyntheticShapes
from .transforms import ArrayTransform

__all__ = [
    "DATASETS",
    "MAX_IMAGE_SIZE",
    "ArrayImageDataset",
    "DataSplits",
    "DatasetInfo",
    "DatasetSpec",
    "build_datasets",
    "find_idx_files",
    "first_images",
]

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_HINT = (
    "install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu) or put the four "
    "IDX files in --data-dir"
)
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


# the largest image side length a run may ask for (a 4096x4096 RGB float image is 200 MB)
MAX_IMAGE_SIZE = 4096


@dataclass(frozen=True)
class DatasetInfo:
    """What a network and a run's readers need to know about a data set, without its images:
    the input (``in_chans`` x ``image_size`` x ``image_size``), the class names, and the
    per-channel normalisation (``None``: the reader normalises itself)."""

    name: str
    in_chans: int
    image_size: int
    classes: tuple[str, ...]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict[str, object]:
        """Plain values, for a run's ``config.yaml``."""
        return {
            "name": self.name,
            "in_chans": self.in_chans,
            "image_size": self.image_size,
            "classes": list(self.classes),
            "mean": None if self.mean is None else list(self.mean),
            "std": None if self.std is None else list(self.std),
        }

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> DatasetInfo:
        def floats(v: object) -> tuple[float, ...] | None:
            return None if v is None else tuple(float(x) for x in v)  # type: ignore[attr-defined]

        return cls(
            str(values["name"]),
            int(values["in_chans"]),  # type: ignore[call-overload]
            int(values["image_size"]),  # type: ignore[call-overload]
            tuple(str(c) for c in values["classes"]),  # type: ignore[attr-defined]
            floats(values.get("mean")),
            floats(values.get("std")),
        )


@dataclass
class DataSplits:
    """Train and test sets (and a validation set held out of the training split, where
    asked) plus what a model needs to know about them (:attr:`info`)."""

    train: Dataset
    test: Dataset
    num_classes: int
    in_chans: int
    classes: Sequence[str]
    source: str
    image_size: int
    mean: tuple[float, ...] | None = None  # the normalisation of the images, per channel
    std: tuple[float, ...] | None = None
    name: str = ""
    # the validation images held out of the training split (``holdout``), read as ``test`` is
    val: Dataset | None = None

    @property
    def info(self) -> DatasetInfo:
        """The data set's description (no images)."""
        return DatasetInfo(
            self.name, self.in_chans, self.image_size, tuple(self.classes), self.mean, self.std
        )


class ArrayImageDataset(Dataset[tuple[torch.Tensor, int]]):
    """Images held in memory as uint8 (N, H, W) or (N, H, W, C), with a tensor transform."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, transform: Callable[..., torch.Tensor]
    ) -> None:
        array = images[..., None] if images.ndim == 3 else images
        self.images = torch.from_numpy(np.array(array, copy=True)).permute(0, 3, 1, 2)
        self.targets = [int(v) for v in labels]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[index]), self.targets[index]


def _search_roots(data_dir: str | Path | None) -> list[Path]:
    """An explicit ``data_dir`` is the only place searched; else ``$PREATTN_DATA``."""
    if data_dir:
        return [Path(data_dir)]
    if os.environ.get("PREATTN_DATA"):
        return [Path(os.environ["PREATTN_DATA"])]
    return []


def find_idx_files(name: str, data_dir: str | Path | None) -> dict[str, Path]:
    """Locate the four IDX files of ``name`` (``fashion-mnist`` or ``mnist``).

    Looks in each root and in its ``<name>/``, ``FashionMNIST/raw/`` or ``MNIST/raw/``
    subfolder; a ``.gz`` or plain file is accepted.
    """
    roots = _search_roots(data_dir)
    if name == "fashion-mnist" and not data_dir:
        roots.append(DEBIAN_FASHION_MNIST)
    sub = {"fashion-mnist": ["fashion-mnist", "FashionMNIST/raw"], "mnist": ["mnist", "MNIST/raw"]}
    stems = {
        "train_images": "train-images-idx3-ubyte",
        "train_labels": "train-labels-idx1-ubyte",
        "test_images": "t10k-images-idx3-ubyte",
        "test_labels": "t10k-labels-idx1-ubyte",
    }
    searched: list[str] = []
    for root in roots:
        for folder in [root, *(root / s for s in sub[name])]:
            searched.append(str(folder))
            found = {}
            for key, stem in stems.items():
                for candidate in (folder / f"{stem}.gz", folder / stem):
                    if candidate.is_file():
                        found[key] = candidate
                        break
            if len(found) == len(stems):
                return found
            if found:
                missing = sorted(
                    set(stems.values()) - {p.name.removesuffix(".gz") for p in found.values()}
                )
                raise DatasetError(f"{folder}: incomplete {name} data set, missing {missing}")
    hint = f"; {FASHION_MNIST_HINT}" if name == "fashion-mnist" else ""
    raise DatasetError(
        f"{name} IDX files (train-images-idx3-ubyte[.gz], ...) not found in "
        f"{searched or ['(no --data-dir or $PREATTN_DATA given)']}{hint}"
    )


Loaded = tuple[Dataset, Dataset, str, Sequence[str]]


def _check_labels(source: Path, labels: np.ndarray, num_classes: int) -> None:
    """Every label in ``[0, num_classes)``, else a DatasetError naming the file and label."""
    if len(labels) == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise DatasetError(
            f"{source}: label {bad} out of range for {num_classes} classes (expected 0.."
            f"{num_classes - 1})"
        )


@dataclass(frozen=True)
class LoadRequest:
    """What a reader is asked for: where to look, image size, seed and subset sizes."""

    data_dir: str | Path | None
    image_size: int
    seed: int
    limit_train: int | None
    limit_test: int | None
    canvas: CanvasOptions | None = None


def _read_idx_splits(
    name: str, classes: int, data_dir: str | Path | None
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], Path]:
    """``{"train": (images, labels), "test": (...)}`` of IDX set ``name``, checked, and the
    folder they came from."""
    files = find_idx_files(name, data_dir)
    out = {}
    for split in ("train", "test"):
        images = read_idx(files[f"{split}_images"], expected_ndim=3)
        labels = read_idx(files[f"{split}_labels"], expected_ndim=1)
        if len(images) != len(labels):
            raise DatasetError(
                f"{files[f'{split}_labels']}: {len(labels)} labels for {len(images)} images"
            )
        _check_labels(files[f"{split}_labels"], labels, classes)
        out[split] = (images, labels)
    return out, files["train_images"].parent


def _load_idx(spec: DatasetSpec, request: LoadRequest) -> Loaded:
    splits, folder = _read_idx_splits(spec.name, len(spec.classes or ()), request.data_dir)
    out = []
    for split, (images, labels) in splits.items():
        train = split == "train"
        transform = ArrayTransform(spec.mean, spec.std, 28, pad=2, flip=spec.flip, train=train)
        out.append(ArrayImageDataset(images, labels, transform))
    return out[0], out[1], str(folder), spec.classes


def _load_cluttered(spec: DatasetSpec, request: LoadRequest) -> Loaded:
    """Fashion-MNIST items on cluttered canvases of side ``request.image_size``
    (:mod:`preattn.data.canvas`). ``limit_train`` makes a smaller task: its canvases hold the
    first N training items, distractors included; a test canvas is the same whatever
    ``limit_test`` (its distractors come from the whole test split)."""
    options = request.canvas or CanvasOptions()
    splits, folder = _read_idx_splits("fashion-mnist", len(spec.classes or ()), request.data_dir)
    out = []
    for split, limit in (("train", request.limit_train), ("test", request.limit_test)):
        images, labels = splits[split]
        if split == "train" and limit is not None:  # a smaller task: N items, N canvases
            images, labels, limit = images[:limit], labels[:limit], None
        canvases, canvas_labels = compose_canvases(
            images, labels, request.image_size, options, split=split, limit=limit
        )
        train = split == "train"
        transform = ArrayTransform(spec.mean, spec.std, request.image_size, flip=True, train=train)
        out.append(ArrayImageDataset(canvases, canvas_labels, transform))
    return out[0], out[1], str(folder), spec.classes


def _load_cifar(spec: DatasetSpec, request: LoadRequest) -> Loaded:
    name = spec.name
    roots = _search_roots(request.data_dir)
    folder_name = CIFAR_LAYOUT[name][0]
    for root in roots:
        folder = root if root.name == folder_name else root / folder_name
        if folder.is_dir():
            mean, std = spec.mean, spec.std
            splits = []
            for train in (True, False):
                images, labels = read_cifar(folder, name, train=train)
                _check_labels(folder, labels, len(spec.classes or ()))
                splits.append(
                    ArrayImageDataset(
                        images, labels, ArrayTransform(mean, std, 32, pad=4, flip=True, train=train)
                    )
                )
            return splits[0], splits[1], str(folder), spec.classes
    where = (
        f"not found in {[str(r) for r in roots]}"
        if roots
        else "not found: no --data-dir given and $PREATTN_DATA is not set"
    )
    raise DatasetError(
        f"{name}: folder {folder_name!r} {where}; download and extract the "
        "'python version' archive, then pass --data-dir"
    )


def _load_imagefolder(spec: DatasetSpec, request: LoadRequest) -> Loaded:
    data_dir, image_size = request.data_dir, request.image_size
    if not data_dir:
        raise DatasetError("imagefolder needs --data-dir with train/ and val/ (or test/) folders")
    root = Path(data_dir)
    test_dir = next((root / d for d in ("val", "test") if (root / d).is_dir()), None)
    if not (root / "train").is_dir() or test_dir is None:
        raise DatasetError(f"{root}: expected subfolders train/ and val/ (or test/)")
    mean, std = spec.mean, spec.std
    to_tensor = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    train_tf = v2.Compose(
        [v2.RandomResizedCrop(image_size, antialias=True), v2.RandomHorizontalFlip(), *to_tensor]
    )
    resize = round(image_size / 0.875)
    test_tf = v2.Compose([v2.Resize(resize, antialias=True), v2.CenterCrop(image_size), *to_tensor])
    train = tv_datasets.ImageFolder(str(root / "train"), transform=train_tf, loader=open_rgb)
    test = tv_datasets.ImageFolder(str(test_dir), transform=test_tf, loader=open_rgb)
    if train.classes != test.classes:
        raise DatasetError(f"{root}: train/ and {test_dir.name}/ hold different class folders")
    # only the images this run will read (the first limit_train / limit_test of each split)
    for folder, limit in ((train, request.limit_train), (test, request.limit_test)):
        _verify_images(path for path, _ in folder.samples[:limit])
    return train, test, str(root), tuple(train.classes)


def _load_synthetic(spec: DatasetSpec, request: LoadRequest) -> Loaded:
    size, seed = request.image_size, request.seed
    train = SyntheticShapes(request.limit_train or 6000, train=True, image_size=size, seed=seed)
    test = SyntheticShapes(request.limit_test or 1200, train=False, image_size=size, seed=seed)
    return train, test, "generated", SYNTHETIC_CLASSES


@dataclass(frozen=True)
class DatasetSpec:
    """One data set: how to read it and what a model needs to know about it.

    ``load(spec, request) -> (train, test, source, classes)``; ``mean``/``std``
    per channel for normalisation (``None``: the reader normalises itself); ``classes``
    (``None``: the reader finds them, e.g. image folders); ``in_chans``; ``image_size``: the
    side length of the images, or the default resize for readers that resize; ``flip``:
    horizontal flips in training augmentation.
    """

    name: str
    load: Callable[[DatasetSpec, LoadRequest], Loaded]
    in_chans: int
    image_size: int
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    classes: tuple[str, ...] | None = None
    flip: bool = True
    resizable: bool = False

    def image_size_for(self, requested: int | None) -> int:
        """The side length of this set's images for a run that asked for ``requested``
        (``None``: the default). Only resizable sets (image folders, the synthetic set)
        accept another size; the one place this rule is written."""
        if requested is None:
            return self.image_size
        _validate.positive_int("image_size", requested)
        if not self.resizable:
            if requested == self.image_size:
                return requested
            resizable = [s.name for s in _SPECS if s.resizable]
            raise ValueError(
                f"image_size applies to {resizable}; {self.name} images are "
                f"{self.image_size}x{self.image_size}, got image_size={requested}"
            )
        if requested > MAX_IMAGE_SIZE:
            raise ValueError(f"image_size must be at most {MAX_IMAGE_SIZE}, got {requested}")
        return requested

    def info(
        self, image_size: int | None = None, classes: Sequence[str] | None = None
    ) -> DatasetInfo:
        """The description of this set at ``image_size`` (see :meth:`image_size_for`);
        ``classes`` for sets whose reader finds them (image folders)."""
        names = tuple(classes) if classes is not None else tuple(self.classes or ())
        size = self.image_size_for(image_size)
        return DatasetInfo(self.name, self.in_chans, size, names, self.mean, self.std)


_SPECS = (
    DatasetSpec("fashion-mnist", _load_idx, 1, 28, (0.2860,), (0.3530,), FASHION_MNIST_CLASSES),
    DatasetSpec(
        "mnist",
        _load_idx,
        1,
        28,
        (0.1307,),
        (0.3081,),
        tuple(str(i) for i in range(10)),
        flip=False,
    ),
    DatasetSpec(
        "cifar10",
        _load_cifar,
        3,
        32,
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
        CIFAR10_CLASSES,
    ),
    DatasetSpec(
        "cifar100",
        _load_cifar,
        3,
        32,
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
        tuple(str(i) for i in range(100)),
    ),
    DatasetSpec(
        "imagefolder",
        _load_imagefolder,
        3,
        224,
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
        resizable=True,
    ),
    DatasetSpec("synthetic", _load_synthetic, 3, 32, classes=SYNTHETIC_CLASSES, resizable=True),
    # the canvas side is the image size (the literature's 60); Fashion-MNIST's normalisation
    DatasetSpec(
        "cluttered-fashion-mnist",
        _load_cluttered,
        1,
        60,
        (0.2860,),
        (0.3530,),
        FASHION_MNIST_CLASSES,
        resizable=True,
    ),
)
DATASET_SPECS: dict[str, DatasetSpec] = {spec.name: spec for spec in _SPECS}
DATASETS = tuple(DATASET_SPECS)


def _check_image(path: str) -> str | None:
    """``None`` if ``path`` decodes as an image, else the reason it does not."""
    try:
        open_rgb(path)
    except DatasetError as exc:
        return str(exc).removeprefix(f"{path}: ")
    return None


def _verify_images(paths: Iterable[str]) -> None:
    """Decode every image once before any training (threads: PIL releases the GIL), so a
    corrupt or truncated file is a DatasetError naming it, not a crash mid-epoch."""
    from concurrent.futures import ThreadPoolExecutor

    paths = list(paths)
    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        for path, problem in zip(paths, pool.map(_check_image, paths), strict=True):
            if problem is not None:
                raise DatasetError(f"{path}: {problem}")


def first_images(dataset: Dataset, count: int) -> torch.Tensor:
    """The first ``count`` images of ``dataset`` (fewer if it is smaller), stacked as
    (N, C, H, W): a fixed batch for probing a network."""
    return torch.stack([dataset[i][0] for i in range(min(count, len(dataset)))])  # type: ignore[arg-type]


def _limit(dataset: Dataset, limit: int | None) -> Dataset:
    if limit is None or limit >= len(dataset):  # type: ignore[arg-type]
        return dataset
    return Subset(dataset, range(_validate.positive_int("limit", limit)))


def _held_out(
    train: Dataset, test: Dataset, limit_train: int | None, holdout: int
) -> tuple[Dataset, Dataset | None]:
    """The training images kept (``limit_train``'s) less ``holdout`` of them, and those
    ``holdout`` read as ``test`` reads its images (its transform: no augmentation).

    The held-out images are evenly spaced over the kept ones, indices ``i·count // holdout``
    for ``i < holdout`` (every ``count/holdout``-th image): the same images for every seed,
    spread over all the classes of a set stored class by class (an image folder) rather than
    taken from its last ones."""
    kept = _limit(train, limit_train)
    if not holdout:
        return kept, None
    count = len(kept)  # type: ignore[arg-type]
    if not 0 < holdout < count:
        raise ValueError(
            f"holdout must be an int in [0, {count - 1}] (fewer than the {count} training "
            f"images), got {holdout}"
        )
    view = train
    if hasattr(train, "transform"):  # read as the test split is (sets without one: as is)
        view = copy.copy(train)
        view.transform = test.transform  # type: ignore[attr-defined]
    held = [i * count // holdout for i in range(holdout)]
    taken = set(held)
    kept_indices = [i for i in range(count) if i not in taken]
    return Subset(train, kept_indices), Subset(view, held)


def build_datasets(
    name: str,
    data_dir: str | Path | None = None,
    *,
    limit_train: int | None = None,
    limit_test: int | None = None,
    image_size: int | None = None,
    seed: int = 0,
    canvas: CanvasOptions | dict | None = None,
    holdout: int = 0,
) -> DataSplits:
    """Build the train and test splits of data set ``name`` (one of :data:`DATASETS`).

    ``limit_train`` / ``limit_test`` keep the first N samples (a fixed subset).
    ``holdout`` moves N of the training images kept, evenly spaced over them, into a
    validation set (``splits.val``), read as the test set is (no augmentation); the training
    set is the rest. (A cluttered canvas's distractors come from the whole training split, so a
    held-out item may appear as a distractor on a training canvas, never as its label.)
    ``image_size`` applies to ``imagefolder`` (default 224), ``synthetic`` (default 32) and
    ``cluttered-fashion-mnist`` (the canvas side, default 60), whose distractors ``canvas``
    describes (:class:`~preattn.data.canvas.CanvasOptions` or its mapping).
    """
    spec = DATASET_SPECS[_validate.choice("dataset", name, DATASET_SPECS)]
    size = spec.image_size_for(image_size)
    options = canvas if isinstance(canvas, CanvasOptions) else CanvasOptions.from_dict(canvas)
    if options != CanvasOptions() and spec.load is not _load_cluttered:
        raise ValueError(f"canvas applies to cluttered-fashion-mnist, got dataset {name!r}")
    if spec.load is _load_cluttered:
        options.check_canvas(size, 28)
    request = LoadRequest(data_dir, size, seed, limit_train, limit_test, options)
    train, test, source, classes = spec.load(spec, request)
    train_kept, val = _held_out(train, test, limit_train, holdout)
    return DataSplits(
        train_kept,
        _limit(test, limit_test),
        len(classes),
        spec.in_chans,
        tuple(classes),
        source,
        size,
        spec.mean,
        spec.std,
        spec.name,
        val,
    )

"""Reader for the CIFAR-10/100 "python version" pickle batches.

CIFAR-10: ``cifar-10-batches-py/data_batch_{1..5}``, ``test_batch``, labels ``labels``.
CIFAR-100: ``cifar-100-python/train``, ``test``, labels ``fine_labels``. Each batch is a
pickled dict with ``data`` (N, 3072) uint8 in channel-major order -> images (N, 32, 32, 3).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from .errors import DatasetError

__all__ = ["CIFAR_LAYOUT", "read_cifar"]

CIFAR_LAYOUT = {
    "cifar10": (
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        ["test_batch"],
        "labels",
    ),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels"),
}


# what a CIFAR batch is made of besides dict/list/str/bytes/int: numpy arrays and dtypes
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),  # protocol 5 pickles of arrays
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 2 pickles of byte strings arrive under Python 3
}


class _CifarUnpickler(pickle.Unpickler):
    """Admits only the globals a CIFAR batch contains; anything else (a ``__reduce__``
    payload calling ``os.system``, say) is refused before it runs."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refused to load {module}.{name}: a CIFAR batch holds only dicts, lists, "
            "strings, ints and numpy arrays"
        )


def _read_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        with path.open("rb") as fh:
            batch = _CifarUnpickler(fh, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DatasetError(f"{path}: not a readable CIFAR pickle batch ({exc})") from None
    if not isinstance(batch, dict) or "data" not in batch or label_key not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DatasetError(f"{path}: expected a dict with 'data' and {label_key!r}, got {keys}")
    data = np.asarray(batch["data"], dtype=np.uint8)
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DatasetError(
            f"{path}: expected data of shape (N, 3072) and N labels, "
            f"got {data.shape} and {len(labels)}"
        )
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def read_cifar(root: str | Path, name: str, *, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """Read a CIFAR split: images (N, 32, 32, 3) uint8 and labels (N,) int64.

    ``root`` may be the extracted folder itself or the folder that contains it.
    """
    folder_name, train_files, test_files, label_key = CIFAR_LAYOUT[name]
    root = Path(root)
    folder = root if root.name == folder_name else root / folder_name
    parts = [_read_batch(folder / f, label_key) for f in (train_files if train else test_files)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

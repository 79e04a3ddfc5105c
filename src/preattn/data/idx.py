"""Reader for the IDX format of MNIST and Fashion-MNIST (``*-ubyte`` or ``*-ubyte.gz``).

Layout (big-endian): magic ``0x00 0x00 <type> <ndim>``, then ``ndim`` uint32 sizes, then
the data. Images are ``type 0x08`` (uint8), ``ndim 3`` -> (N, 28, 28); labels are
``ndim 1`` -> (N,).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from .errors import DatasetError

__all__ = ["read_idx"]

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path, *, expected_ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (plain or gzip) into an array of its declared shape.

    Raises:
        DatasetError: the file is missing, is not IDX (wrong magic), declares another
            number of dimensions than ``expected_ndim``, or is truncated.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"{path}: cannot decompress ({exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DatasetError(
            f"{path}: not an IDX file (magic bytes {raw[:4].hex() or 'missing'}, "
            "expected 0000 followed by a type code and the number of dimensions)"
        )
    ndim = raw[3]
    if expected_ndim is not None and ndim != expected_ndim:
        raise DatasetError(f"{path}: expected an IDX file of {expected_ndim} dims, got {ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated header ({len(raw)} bytes)")
    shape = tuple(int(v) for v in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_DTYPES[raw[2]])
    expected_bytes = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected_bytes:
        raise DatasetError(
            f"{path}: truncated or padded: {len(raw)} bytes, header declares shape {shape} "
            f"needing {expected_bytes}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)

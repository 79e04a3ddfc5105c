"""Reading one image file as 8-bit grey or RGB, whatever PIL mode it is stored in.

Every reader of image files (image-folder training, ``preattn predict``) goes through
:func:`open_image`, so a file gives the same pixels wherever it is read:

- 16-bit grey (PIL modes ``I;16``, ``I;16B``, ``I;16L``, ``I;16N``, and ``I``, which PIL
  uses for 16-bit grey PNG/TIFF data) is scaled to 8 bits, ``v8 = round(v16 / 257)``, so a
  16-bit copy of an 8-bit image (``v16 = 257 · v8``) gives back that 8-bit image exactly;
  PIL's own ``convert("L")`` clips these values at 255 (a white image);
- palette, alpha, CMYK, YCbCr, 1-bit and float images go through PIL's conversion (alpha
  is dropped);
- anything but a regular file (a FIFO, a device, a folder) is refused before it is opened;
- an image whose header claims more than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels (a
  decompression bomb) is refused before its pixels are decoded.

Every failure is a :class:`~preattn.data.errors.DatasetError` naming the file.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .._files import irregular_kind
from .errors import DatasetError

__all__ = ["open_image", "open_rgb"]

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def _to_eight_bits(image: Image.Image) -> Image.Image:
    """A 16-bit grey image as mode ``L`` with ``round(v / 257)``."""
    values = np.asarray(image, dtype=np.float64)
    return Image.fromarray(np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8), mode="L")


def open_image(path: str | Path, channels: int) -> Image.Image:
    """The image at ``path``, decoded, as mode ``L`` (``channels=1``) or ``RGB`` (3)."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    target = "L" if channels == 1 else "RGB"
    kind = irregular_kind(path)
    if kind is not None:  # a FIFO would block in open() forever
        raise DatasetError(f"{path}: {kind}, not an image file; only regular files are read")
    try:
        with warnings.catch_warnings():
            # PIL warns between MAX_IMAGE_PIXELS and twice that; both are refused here
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                if image.mode in _SIXTEEN_BIT_MODES:
                    image = _to_eight_bits(image)
                return image.convert(target)
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DatasetError(
            f"{path}: the image claims more than {Image.MAX_IMAGE_PIXELS} pixels "
            "(PIL.Image.MAX_IMAGE_PIXELS); refused as a possible decompression bomb"
        ) from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable image ({exc})") from None


def open_rgb(path: str) -> Image.Image:
    """:func:`open_image` with three channels: the loader of image-folder data sets."""
    return open_image(path, 3)

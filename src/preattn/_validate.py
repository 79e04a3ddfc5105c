"""Argument checks shared by the public constructors.

Every check raises ``ValueError`` (or ``TypeError`` for a wrong type) with a message that
names the argument, what was expected and what was given.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch


def positive_int(name: str, value: Any) -> int:
    """Return ``value`` if it is an ``int`` >= 1, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 1, got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value}")
    return value


def non_negative_int(name: str, value: Any) -> int:
    """Return ``value`` if it is an ``int`` >= 0, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 0, got {value!r} ({type(value).__name__})")
    if value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value}")
    return value


def odd_positive_int(name: str, value: Any) -> int:
    """Return ``value`` if it is an odd ``int`` >= 1 (a 'same' padded kernel size)."""
    positive_int(name, value)
    if value % 2 == 0:
        raise ValueError(f"{name} must be an odd int >= 1 (e.g. 3 or 7), got {value}")
    return value


def choice(name: str, value: Any, allowed: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise listing them."""
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def unit_interval(name: str, value: Any) -> float:
    """Return ``float(value)`` if it lies in [0, 1], else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a float in [0, 1], got {value!r} ({type(value).__name__})")
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a float in [0, 1], got {value}")
    return value


def scaled_width(channels: int, width: Any) -> int:
    """``max(1, round(width · channels))`` for a channel multiplier ``width`` > 0."""
    if isinstance(width, bool) or not isinstance(width, int | float):
        raise TypeError(f"width must be a float > 0, got {width!r} ({type(width).__name__})")
    if not (width > 0 and math.isfinite(width)):
        raise ValueError(f"width must be a finite float > 0, got {width}")
    return max(1, round(width * channels))


def stages(value: Any, *, count: int, default: Sequence[int]) -> tuple[int, ...]:
    """``value`` as a sorted tuple of distinct ints in ``1..count`` (``default`` for None)."""
    if value is None:
        return tuple(default)
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise TypeError(f"stages must be a list of ints, got {value!r}")
    value = tuple(value)
    allowed = list(range(1, count + 1))
    bad = [s for s in value if isinstance(s, bool) or not isinstance(s, int) or s not in allowed]
    if bad or len(set(value)) != len(value):
        raise ValueError(f"stages must be a subset of {allowed} (no repeats), got {list(value)}")
    return tuple(sorted(value))


try:
    from torch.fx._symbolic_trace import is_fx_symbolic_tracing as _fx_symbolic_tracing
except ImportError:  # torch < 2.6: the older name (it is also true under torch.export)
    from torch.fx._symbolic_trace import is_fx_tracing as _fx_symbolic_tracing


def fx_tracing() -> bool:
    """``torch.fx.symbolic_trace`` runs the forward with symbolic proxies."""
    return _fx_symbolic_tracing()


def tracing() -> bool:
    """A tracer or exporter records the forward (torch.fx, torch.jit.trace, ONNX)."""
    return fx_tracing() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def image_batch(x: Any, channels: int, owner: Any) -> None:
    """Raise ``ValueError`` unless ``x`` is (N, channels, H, W); skipped while tracing, where
    shapes are symbolic (the traced graph keeps the eager module's contract). ``owner``
    names the module in the message: a str, or a callable returning one."""
    if tracing():
        return
    if x.dim() != 4 or x.shape[1] != channels:
        name = owner() if callable(owner) else owner
        raise ValueError(
            f"{name} expects input of shape (N, {channels}, H, W), got {tuple(x.shape)}"
        )

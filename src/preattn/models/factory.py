"""``create_model(name, ...)``: every network of :mod:`preattn.models` by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from .. import _validate
from .resnet import resnet18, resnet34, resnet50, resnet101, resnet152
from .simple import SimpleCNN

__all__ = ["MODELS", "create_model"]

MODELS: dict[str, Callable[..., nn.Module]] = {
    "simplecnn": SimpleCNN,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "resnet152": resnet152,
}


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build model ``name`` (one of :data:`MODELS`) with the builder's keyword arguments.

    ``stages`` and ``stem`` apply to the ResNets only; SimpleCNN rejects a ``stages`` other
    than ``None`` (it has no stages).
    """
    _validate.choice("model", name, MODELS)
    if name == "simplecnn":
        if kwargs.pop("stages", None) is not None:
            raise ValueError("stages applies to the ResNets only, not to simplecnn")
        kwargs.pop("stem", None)
    return MODELS[name](**kwargs)

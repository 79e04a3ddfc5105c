"""``create_model(name, ...)``: every network of :mod:`preattn.models` by name.

One table, :data:`MODELS` (:mod:`preattn.models.registry`, filled where each builder is
defined), says for each name how to build it and which input-dependent choices it makes (the
ResNets pick their stem from the image size); nothing else in the package special-cases a
model.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .. import _validate

# each module registers its networks when imported: the reference network first
from . import simple  # noqa: F401

# isort: split
from . import resnet  # noqa: F401

# isort: split
from . import mobilenet  # noqa: F401

# isort: split
from .registry import MODELS, ModelEntry

__all__ = ["MODELS", "ModelEntry", "create_model", "model_kwargs", "model_names"]


def model_names() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return list(MODELS)


def model_kwargs(name: str, *, image_size: int | None = None, **kwargs: Any) -> dict[str, Any]:
    """The builder arguments of model ``name``: ``kwargs`` plus the choices ``image_size``
    decides (ResNets, MobileNets: ``stem``) where ``kwargs`` does not make them."""
    entry = MODELS[_validate.choice("model", name, MODELS)]
    if image_size is None:
        return dict(kwargs)
    return {**entry.input_options(_validate.positive_int("image_size", image_size)), **kwargs}


def create_model(name: str, *, image_size: int | None = None, **kwargs: Any) -> nn.Module:
    """Build model ``name`` (one of :data:`MODELS`).

    Args:
        name: the network's name.
        image_size: side length of the input images; when given, the network makes its
            input-dependent choices from it (ResNets, MobileNets: the CIFAR stem up to 64
            pixels, the ImageNet stem above), unless ``kwargs`` makes them explicitly.
        **kwargs: the builder's arguments (``num_classes``, ``in_chans``, ``stages``,
            ``spec`` and the :class:`~preattn.AttentionSpec` fields, ...).
    """
    kwargs = model_kwargs(name, image_size=image_size, **kwargs)
    return MODELS[name].builder(**kwargs)

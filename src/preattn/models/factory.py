"""``create_model(name, ...)``: every network of :mod:`preattn.models` by name.

One table, :data:`MODELS`, says for each name how to build it and which input-dependent
choices it makes (the ResNets pick their stem from the image size); nothing else in the
package special-cases a model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from .. import _validate
from .mobilenet import mobilenet_v2, mobilenet_v3_large, mobilenet_v3_small
from .resnet import resnet18, resnet34, resnet50, resnet101, resnet152
from .simple import SimpleCNN

__all__ = ["MODELS", "ModelEntry", "create_model", "model_kwargs", "model_names"]

# images up to this side length get the CIFAR stem (ResNets: 3x3/1 conv, no max-pool;
# MobileNets: the stem conv and the first stride-2 block at stride 1)
SMALL_IMAGE_SIZE = 64


def _stem_for_size(image_size: int) -> dict[str, Any]:
    return {"stem": "cifar" if image_size <= SMALL_IMAGE_SIZE else "imagenet"}


def _no_input_options(image_size: int) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class ModelEntry:
    """How to build one named network.

    ``builder(num_classes=, in_chans=, stages=, spec=, **options)`` builds it;
    ``input_options(image_size)`` returns the options the input size decides (``stem``);
    ``input_size`` (C, H, W) and ``num_classes`` are what it is usually run on (the
    defaults of ``preattn summary``); ``stage_count`` is how many stages ``stages=`` can
    choose from; ``extra_options`` names the builder's arguments beyond the common ones
    (MobileNets: ``dw_attention``, ``dw_attention_kwargs``).
    """

    builder: Callable[..., nn.Module]
    input_options: Callable[[int], dict[str, Any]]
    description: str
    stage_count: int = 4
    input_size: tuple[int, int, int] = (3, 224, 224)
    num_classes: int = 1000
    extra_options: tuple[str, ...] = ()


_RESNET_OPTIONS = ("stem",)
_MOBILENET_OPTIONS = ("stem", "dw_attention", "dw_attention_kwargs")


MODELS: dict[str, ModelEntry] = {
    "simplecnn": ModelEntry(
        SimpleCNN, _no_input_options, "the reference SimpleCNN", 2, (1, 28, 28), 10
    ),
    "resnet18": ModelEntry(
        resnet18, _stem_for_size, "ResNet-18, basic blocks", extra_options=_RESNET_OPTIONS
    ),
    "resnet34": ModelEntry(
        resnet34, _stem_for_size, "ResNet-34, basic blocks", extra_options=_RESNET_OPTIONS
    ),
    "resnet50": ModelEntry(
        resnet50, _stem_for_size, "ResNet-50, bottlenecks", extra_options=_RESNET_OPTIONS
    ),
    "resnet101": ModelEntry(
        resnet101, _stem_for_size, "ResNet-101, bottlenecks", extra_options=_RESNET_OPTIONS
    ),
    "resnet152": ModelEntry(
        resnet152, _stem_for_size, "ResNet-152, bottlenecks", extra_options=_RESNET_OPTIONS
    ),
    "mobilenet_v2": ModelEntry(
        mobilenet_v2,
        _stem_for_size,
        "MobileNetV2, inverted residuals",
        stage_count=5,
        extra_options=_MOBILENET_OPTIONS,
    ),
    "mobilenet_v3_small": ModelEntry(
        mobilenet_v3_small,
        _stem_for_size,
        "MobileNetV3-Small, inverted residuals with SE",
        stage_count=4,
        extra_options=_MOBILENET_OPTIONS,
    ),
    "mobilenet_v3_large": ModelEntry(
        mobilenet_v3_large,
        _stem_for_size,
        "MobileNetV3-Large, inverted residuals with SE",
        stage_count=5,
        extra_options=_MOBILENET_OPTIONS,
    ),
}


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

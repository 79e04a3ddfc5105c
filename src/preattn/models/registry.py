"""The one table of preattn's networks: :data:`MODELS`, filled by :func:`register_network`.

Each builder declares, where it is defined, everything the rest of the package needs to know
about it: its name, which stage indices ``stages=`` takes, whether the input size picks its
stem, the builder options beyond the common ones, what it usually runs on (the defaults of
``preattn summary``) and its name and pretrained-cfg fields in timm's registry
(:mod:`preattn.timm` registers every entry from here). Nothing else special-cases a model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from torch import nn

__all__ = ["MODELS", "SMALL_IMAGE_SIZE", "ModelEntry", "register_network"]

# images up to this side length get the CIFAR stem (ResNets: 3x3/1 conv, no max-pool;
# MobileNets: the stem conv and the first stride-2 block at stride 1)
SMALL_IMAGE_SIZE = 64

Builder = TypeVar("Builder", bound=Callable[..., nn.Module])


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
    (ResNets and MobileNets: ``stem``; MobileNets: ``dw_attention``, ``dw_attention_kwargs``);
    ``timm_name`` and ``timm_cfg`` (fields of timm's pretrained cfg beyond the ImageNet
    defaults) register it in timm.
    """

    builder: Callable[..., nn.Module]
    input_options: Callable[[int], dict[str, Any]]
    description: str
    stage_count: int = 4
    input_size: tuple[int, int, int] = (3, 224, 224)
    num_classes: int = 1000
    extra_options: tuple[str, ...] = ()
    timm_name: str = ""
    timm_cfg: Mapping[str, Any] = field(default_factory=dict)


MODELS: dict[str, ModelEntry] = {}


def register_network(
    name: str,
    description: str,
    *,
    timm_name: str,
    stage_count: int = 4,
    stem_by_size: bool = True,
    extra_options: tuple[str, ...] = (),
    input_size: tuple[int, int, int] = (3, 224, 224),
    num_classes: int = 1000,
    timm_cfg: Mapping[str, Any] | None = None,
) -> Callable[[Builder], Builder]:
    """Decorator: add the builder it decorates to :data:`MODELS` as ``name`` (refused if the
    name is taken). ``stem_by_size``: the builder takes ``stem`` and the image size picks it
    (CIFAR-style up to :data:`SMALL_IMAGE_SIZE` pixels) unless the caller does."""

    def add(builder: Builder) -> Builder:
        if name in MODELS:
            raise ValueError(f"network name {name!r} is already registered")
        MODELS[name] = ModelEntry(
            builder=builder,
            input_options=_stem_for_size if stem_by_size else _no_input_options,
            description=description,
            stage_count=stage_count,
            input_size=input_size,
            num_classes=num_classes,
            extra_options=(("stem",) if stem_by_size else ()) + tuple(extra_options),
            timm_name=timm_name,
            timm_cfg=dict(timm_cfg or {}),
        )
        return builder

    return add

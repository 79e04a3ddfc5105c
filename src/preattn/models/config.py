"""What shapes a network, as one type: :class:`ModelConfig`.

Every option that changes a network's architecture (and no other option) is a field of
:class:`ModelConfig`, declared once with its help text and command-line parser
(:func:`preattn._options.option`). A training run's configuration holds one as its model
section (``TrainConfig.network``), ``preattn summary`` and ``preattn check`` generate their
network flags from its fields, and :meth:`ModelConfig.build` is the one way a network is
built from options (training, resuming, every reader of a saved run, timm's
``create_model_from_run``). What the data decides (classes, input channels, image size)
comes from the data set, as ``info``::

    config = ModelConfig.from_flat({"model": "resnet18", "placement": "pre", "width": 0.5})
    net = config.validate().build(info)   # info: .num_classes, .in_chans, .image_size
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from torch import nn

from .. import _validate
from .._options import OptionSection, option, parse_int_list, parse_kwargs, parse_optional_str
from ..attention import attention_names
from ..spec import AttentionSpec
from .factory import MODELS, create_model, model_kwargs

__all__ = ["MAX_WIDTH", "STEMS", "DataShape", "ModelConfig"]

# the widest channel multiplier a network may be built with (ResNet-50 at 8x: 1.6 billion
# parameters)
MAX_WIDTH = 8.0
# the stems of the ResNets and MobileNets (None: chosen from the image size)
STEMS = ("cifar", "imagenet")


class DataShape(Protocol):
    """What a network needs to know of its data: classes and input (C x H x W, square)."""

    @property
    def num_classes(self) -> int: ...

    @property
    def in_chans(self) -> int: ...

    @property
    def image_size(self) -> int: ...


@dataclass(frozen=True)
class ModelConfig(OptionSection):
    """Everything that shapes a network and nothing else (frozen).

    ``ModelConfig(model="resnet18", width=0.5, spec=AttentionSpec(placement="pre"))``, or
    from the flat form that YAML files and flags use (:meth:`from_flat`: the attention
    options are the :class:`~preattn.AttentionSpec` fields beside the others).
    """

    model: str = option("simplecnn", "network", choices=MODELS)
    spec: AttentionSpec = field(default_factory=AttentionSpec)
    width: float = option(1.0, "channel-width multiplier of the network (> 0)", float)
    stages: list[int] | None = option(
        None,
        "stages with attention: ResNets 1-4 (default 2,3,4), simplecnn 1-2 (default 1,2), "
        "MobileNets 1-5 (V3-small 1-4; default all but 1)",
        parse_int_list,
    )
    stem: str | None = option(
        None,
        "ResNets and MobileNets: cifar (3x3 stride-1 stem, no early downsampling) or imagenet "
        "(default: cifar up to 64 pixels, else imagenet)",
        parse_optional_str,
        choices=(None, *STEMS),
    )
    dw_attention: str = option(
        "default",
        "MobileNets: attention after each block's depthwise conv (inside F, uncontrolled): "
        "default (the network's own: none for V2, its SE for V3), none, or an attention name",
    )
    dw_attention_kwargs: dict[str, Any] = option(
        {}, "options of dw_attention, e.g. reduction=4,divisor=8,gate=hardsigmoid", parse_kwargs
    )

    @classmethod
    def option_fields(cls) -> list[dataclasses.Field]:
        """The fields that are options (all but ``spec``), in declaration order."""
        return [f for f in fields(cls) if f.name != "spec"]

    @classmethod
    def keys(cls) -> list[str]:
        """Every key of the flat form: the options and the AttentionSpec fields."""
        return [f.name for f in cls.option_fields()] + list(AttentionSpec.names())

    @classmethod
    def from_flat(  # type: ignore[override]
        cls, values: Mapping[str, Any], *, spec: AttentionSpec | None = None
    ) -> ModelConfig:
        """Build from flat keys (:meth:`keys`; unknown keys raise ``TypeError`` naming them);
        the AttentionSpec fields among them apply on top of ``spec``."""
        spec_names = set(AttentionSpec.names())
        known = {f.name for f in cls.option_fields()}
        unknown = sorted(set(values) - known - spec_names)
        if unknown:
            raise TypeError(f"unknown model option(s) {unknown}; known: {cls.keys()}")
        attention = {k: v for k, v in values.items() if k in spec_names}
        options = {k: v for k, v in values.items() if k in known}
        return cls(spec=AttentionSpec.build(spec, **attention), **options)

    def to_flat(self) -> dict[str, Any]:
        """The flat form: every option and every AttentionSpec field, plain values."""
        out = super().to_flat()
        out.update(self.spec.to_dict())
        return out

    def validate(self) -> ModelConfig:
        """Check every field's type and range; raise naming the first bad one."""
        if not isinstance(self.spec, AttentionSpec):
            raise TypeError(f"spec must be an AttentionSpec, got {type(self.spec).__name__}")
        self.check_fields()
        if not (self.width > 0 and math.isfinite(self.width)):
            raise ValueError(f"width must be a finite number > 0, got {self.width}")
        if self.width > MAX_WIDTH:  # a 100x network is a memory bomb, not an experiment
            raise ValueError(f"width must be at most {MAX_WIDTH}, got {self.width}")
        entry = MODELS[self.model]
        if self.stages is not None:
            _validate.stages(self.stages, count=entry.stage_count, default=())
        if self.stem is not None and "stem" not in entry.extra_options:
            takes = [name for name, e in MODELS.items() if "stem" in e.extra_options]
            raise ValueError(f"stem applies to {takes}, got model {self.model!r}")
        if self.dw_attention != "default" or self.dw_attention_kwargs:
            if "dw_attention" not in entry.extra_options:
                takes = [name for name, e in MODELS.items() if "dw_attention" in e.extra_options]
                raise ValueError(
                    f"dw_attention applies to the networks with depthwise blocks {takes}, "
                    f"got model {self.model!r}"
                )
            if self.dw_attention not in ("default", "none", *attention_names()):
                raise ValueError(
                    f"dw_attention must be 'default', 'none' or one of {attention_names()}, "
                    f"got {self.dw_attention!r}"
                )
        return self

    def arguments(self, data: DataShape) -> dict[str, Any]:
        """The builder arguments of :attr:`model` for ``data``: classes, input channels,
        the choices the image size makes where :attr:`stem` does not (ResNets, MobileNets:
        the stem), attended ``stages``, ``spec``, ``width`` and the MobileNets'
        ``dw_attention``. timm's ``preattn_<model>`` takes the same arguments."""
        extra: dict[str, Any] = {}
        if self.stem is not None:
            extra["stem"] = self.stem
        if self.dw_attention != "default":
            extra["dw_attention"] = None if self.dw_attention == "none" else self.dw_attention
        if self.dw_attention_kwargs:
            extra["dw_attention_kwargs"] = dict(self.dw_attention_kwargs)
        return model_kwargs(
            self.model,
            image_size=data.image_size,
            num_classes=data.num_classes,
            in_chans=data.in_chans,
            stages=list(self.stages) if self.stages is not None else None,
            spec=self.spec,
            width=self.width,
            **extra,
        )

    def build(self, data: DataShape) -> nn.Module:
        """The network this configuration describes, for ``data`` (freshly initialised from
        the global random state)."""
        return create_model(self.model, **self.arguments(data))

    def describe(self) -> str:
        """``resnet18 width x0.5 placement=pre attention=cbam λ=0.1 (...)`` (one line)."""
        width = f" width x{self.width:g}" if self.width != 1.0 else ""
        return f"{self.model}{width} {self.spec.describe()}"

"""MobileNetV2 and MobileNetV3 (small, large) built from :class:`preattn.ResidualBlock` with
the inverted-residual transform (:mod:`preattn.inverted_residual`).

Same layers and parameter counts as ``torchvision.models.mobilenet_v2`` /
``mobilenet_v3_small`` / ``mobilenet_v3_large`` with ``placement="none"`` (V3 with its SE
in place); attention is added at a placement to the blocks of the chosen ``stages``::

    stem     conv3x3/2 (in_chans -> 32 | 16)-BN-act               (B, 32|16, H/2, W/2)
    layer1.. inverted-residual blocks, grouped by resolution: a layer starts at each
             stride-2 block (V2 and V3-large: 5 layers, at H/2 ... H/32; V3-small: 4,
             at H/4 ... H/32, its stem being the first of its five feature levels)
    conv_head conv1x1 (-> 1280 | 576 | 960)-BN-act                (B, num_features, ...)
    head     global average pool, [V3: Linear -> 1024 | 1280, hard-swish], dropout 0.2,
             Linear (-> num_classes)

``width=w`` (torchvision's ``width_mult``) scales every channel count ``c`` to
``make_divisible(c·w, 8)``; V2's 1280 head channels only grow (``max(1, w)``).

Attention has two places in these networks:

- the block's *placement* (``spec``): ``pre`` (Pattern-3: on the block's input, before the
  expansion), ``branch``, ``post``, ``skip`` — outside ``F``, on the narrow tensors. Blocks
  without residual (stride 2 or a channel change) cannot take ``skip``: those blocks of an
  attended layer get no attention then;
- the *depthwise position* (``dw_attention``): inside ``F``, on the expanded tensor after
  the depthwise conv, uncontrolled — where MobileNetV3 has its SE (``reduction=4,
  divisor=8, gate="hardsigmoid"``, in the blocks its table marks) and where the coordinate
  attention paper puts SE, CBAM and CA in MobileNetV2 (every block).

The CIFAR-style stem for small images (``stem="cifar"``): the stem conv and the first
stride-2 block run at stride 1, so a 32-pixel image ends at 4×4 rather than 1×1.

Initialisation follows torchvision: Kaiming-normal (fan_out) convs with zero biases,
BatchNorm 1 and 0, linear layers N(0, 0.01) with zero biases.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .. import _validate
from ..attention import AttentionFactory, make_divisible
from ..blocks import ResidualBlock
from ..inverted_residual import ACTIVATIONS, InvertedResidualTransform
from ..spec import AttentionSpec
from .api import ClassifierNet
from .registry import register_network

__all__ = [
    "MOBILENET_V3_SE",
    "MobileNet",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
]

_STEMS = ("imagenet", "cifar")

# MobileNetV3's squeeze-and-excitation, in the depthwise position of the marked blocks
MOBILENET_V3_SE: dict[str, Any] = {"reduction": 4, "divisor": 8, "gate": "hardsigmoid"}


@dataclass(frozen=True)
class BlockRow:
    """One inverted-residual block of a table: depthwise ``kernel``, expansion (``ratio``
    of the input's channels, or ``expanded`` channels before scaling), ``out`` channels
    before scaling, whether it has depthwise-position attention (``attended``), its
    activation and stride."""

    kernel: int
    out: int
    stride: int
    act: str
    attended: bool
    ratio: float | None = None
    expanded: int | None = None


def _v2_rows() -> list[BlockRow]:
    settings = [  # t (expansion), c (channels), n (blocks), s (first stride): the paper's table 2
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ]
    return [
        BlockRow(3, c, s if i == 0 else 1, "relu6", True, ratio=t)
        for t, c, n, s in settings
        for i in range(n)
    ]


def _v3_rows(table: Sequence[tuple[int, int, int, bool, str, int]]) -> list[BlockRow]:
    return [
        BlockRow(k, out, s, "hardswish" if act == "HS" else "relu", se, expanded=exp)
        for k, exp, out, se, act, s in table
    ]


# kernel, expanded, out, SE, activation, stride: the MobileNetV3 paper's tables 1 and 2
_V3_LARGE = [
    (3, 16, 16, False, "RE", 1),
    (3, 64, 24, False, "RE", 2),
    (3, 72, 24, False, "RE", 1),
    (5, 72, 40, True, "RE", 2),
    (5, 120, 40, True, "RE", 1),
    (5, 120, 40, True, "RE", 1),
    (3, 240, 80, False, "HS", 2),
    (3, 200, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 480, 112, True, "HS", 1),
    (3, 672, 112, True, "HS", 1),
    (5, 672, 160, True, "HS", 2),
    (5, 960, 160, True, "HS", 1),
    (5, 960, 160, True, "HS", 1),
]
_V3_SMALL = [
    (3, 16, 16, True, "RE", 2),
    (3, 72, 24, False, "RE", 2),
    (3, 88, 24, False, "RE", 1),
    (5, 96, 40, True, "HS", 2),
    (5, 240, 40, True, "HS", 1),
    (5, 240, 40, True, "HS", 1),
    (5, 120, 48, True, "HS", 1),
    (5, 144, 48, True, "HS", 1),
    (5, 288, 96, True, "HS", 2),
    (5, 576, 96, True, "HS", 1),
    (5, 576, 96, True, "HS", 1),
]


def _layers_of(rows: Sequence[BlockRow]) -> list[list[int]]:
    """Block indices grouped into layers: a new layer at each stride-2 block."""
    layers: list[list[int]] = []
    for index, row in enumerate(rows):
        if not layers or (row.stride == 2 and layers[-1]):
            layers.append([])
        layers[-1].append(index)
    return layers


class MobileNet(ClassifierNet):
    """A MobileNet from a table of inverted-residual blocks (module docstring).

    Args:
        rows: the blocks (:class:`BlockRow`).
        stem_ch: channels of the stem before scaling.
        head_ch: the final 1x1 conv's channels from its input's and ``width``.
        head_hidden: width of the head's hidden linear layer (MobileNetV3), 0 for none.
        stem_act: activation of the stem and the final conv.
        norm_layer: the BatchNorm factory of every layer.
        num_classes, in_chans, global_pool, drop_rate: as :class:`~preattn.models.ResNet`.
        stem: ``"imagenet"`` or ``"cifar"`` (module docstring).
        stages: which layers get attention at ``spec``'s placement; default all but the
            first (the earliest features, where the specification calls Pattern-3
            aggressive).
        spec: attention, placement and λ of the attended blocks; the other blocks get
            ``placement="none"``.
        dw_attention, dw_attention_kwargs: the attention of the depthwise position in the
            ``attended`` rows of the table (None: none), and its options.
        drop_path_rate: stochastic depth of the residual blocks, rising linearly to it.
        width: channel multiplier (torchvision's ``width_mult``).
        **attention_options: fields of :class:`~preattn.AttentionSpec` on top of ``spec``.
    """

    def __init__(
        self,
        rows: Sequence[BlockRow],
        *,
        stem_ch: int,
        head_ch: Callable[[int, float], int],
        head_hidden: int = 0,
        stem_act: str = "relu6",
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        num_classes: int = 1000,
        in_chans: int = 3,
        stem: str = "imagenet",
        stages: Iterable[int] | None = None,
        spec: AttentionSpec | None = None,
        dw_attention: str | AttentionFactory | None = None,
        dw_attention_kwargs: Mapping[str, Any] | None = None,
        global_pool: str = "avg",
        drop_rate: float = 0.2,
        drop_path_rate: float = 0.0,
        width: float = 1.0,
        **attention_options: Any,
    ) -> None:
        super().__init__()
        _validate.positive_int("in_chans", in_chans)
        _validate.scaled_width(1, width)  # checks width
        _validate.choice("stem", stem, _STEMS)
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        layers = _layers_of(rows)
        self.stages = _validate.stages(stages, count=len(layers), default=range(2, len(layers) + 1))
        self.spec = spec = AttentionSpec.build(spec, **attention_options)
        self.in_chans = in_chans
        activation = ACTIVATIONS[_validate.choice("stem_act", stem_act, ACTIVATIONS)]

        def scaled(c: int) -> int:
            return make_divisible(c * width)

        cifar = stem == "cifar"
        first_strided = next((i for i, r in enumerate(rows) if r.stride == 2), None)
        stem_out = scaled(stem_ch)
        stem_stride = 1 if cifar else 2
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, stem_out, 3, stride=stem_stride, padding=1, bias=False),
            norm_layer(stem_out),
            activation(),
        )
        reduction = stem_stride
        feature_info: list[dict[str, Any]] = []
        self.feature_info = feature_info
        in_ch, total = stem_out, len(rows)
        for stage, indices in enumerate(layers, start=1):
            stage_spec = spec if stage in self.stages else spec.replace(placement="none")
            blocks = []
            for index in indices:
                row = rows[index]
                stride = 1 if cifar and index == first_strided else row.stride
                reduction *= stride
                out_ch = scaled(row.out)
                transform = functools.partial(
                    InvertedResidualTransform,
                    expand_ratio=row.ratio or 1.0,
                    expanded=None if row.expanded is None else scaled(row.expanded),
                    kernel_size=row.kernel,
                    act=row.act,
                    dw_attention=dw_attention if row.attended else None,
                    dw_attention_kwargs=dw_attention_kwargs,
                    norm_layer=norm_layer,
                )
                block_spec = stage_spec
                if stage_spec.placement == "skip" and (stride != 1 or in_ch != out_ch):
                    block_spec = stage_spec.replace(placement="none")  # no residual to attend
                blocks.append(
                    ResidualBlock(
                        in_ch,
                        out_ch,
                        stride,
                        spec=block_spec,
                        transform=transform,
                        drop_path=drop_path_rate * index / max(total - 1, 1),
                    )
                )
                in_ch = out_ch
            if stage == 1 and len(layers) < 5:  # V3-small: the stem is a level, so every
                # MobileNet has five (timm's default out_indices of features_only)
                feature_info.append(
                    {"num_chs": stem_out, "reduction": stem_stride, "module": "stem"}
                )
            self.add_module(f"layer{stage}", nn.Sequential(*blocks))
            feature_info.append(
                {"num_chs": in_ch, "reduction": reduction, "module": f"layer{stage}"}
            )
        self.num_layers = len(layers)
        head_out = head_ch(in_ch, width)
        self.conv_head = nn.Sequential(
            nn.Conv2d(in_ch, head_out, 1, bias=False), norm_layer(head_out), activation()
        )
        self._init_head(
            head_out, num_classes, global_pool, drop_rate, scaled(head_hidden) if head_hidden else 0
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def feature_stages(self) -> list[tuple[str, nn.Module]]:
        """The forward pass: ``stem``, ``layer1``-``layerN``, then ``conv_head`` (not a
        feature level: its output is the final features, (B, num_features, h, w))."""
        stem_is_level = self.feature_info[0]["module"] == "stem"
        stages: list[tuple[str, nn.Module]] = [("stem" if stem_is_level else "_stem", self.stem)]
        stages += [(f"layer{k}", getattr(self, f"layer{k}")) for k in range(1, self.num_layers + 1)]
        return [*stages, ("_conv_head", self.conv_head)]

    def forward_stages(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for name, module in self.named_children():
            if name.startswith("layer"):
                x = module(x)
        return self.conv_head(x)


def _with_width(width_mult: float | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    if width_mult is not None:
        if "width" in kwargs:
            raise ValueError("give width_mult or width (the same multiplier), not both")
        kwargs["width"] = width_mult
    return kwargs


# the builder options of the depthwise position's attention
_DW_OPTIONS = ("dw_attention", "dw_attention_kwargs")


@register_network(
    "mobilenet_v2",
    "MobileNetV2, inverted residuals",
    timm_name="preattn_mobilenetv2_100",
    stage_count=5,
    extra_options=_DW_OPTIONS,
    timm_cfg={"first_conv": "stem.0"},
)
def mobilenet_v2(*, width_mult: float | None = None, **kwargs: Any) -> MobileNet:
    """MobileNetV2 (3.50 M parameters at width 1 and 1000 classes): ReLU6, no attention in
    the depthwise position unless ``dw_attention`` is given (then in every block).
    Keyword arguments as :class:`MobileNet`; ``width_mult`` is ``width``."""
    kwargs = _with_width(width_mult, kwargs)
    return MobileNet(_v2_rows(), stem_ch=32, head_ch=_v2_head, **kwargs)


def _v2_head(in_ch: int, width: float) -> int:
    return make_divisible(1280 * max(1.0, width))


def _v3_head(in_ch: int, width: float) -> int:
    return 6 * in_ch


def _v3(table: list, hidden: int, width_mult: float | None, kwargs: dict) -> MobileNet:
    kwargs = _with_width(width_mult, kwargs)
    kwargs.setdefault("dw_attention", "se")
    if kwargs["dw_attention"] == "se":
        kwargs["dw_attention_kwargs"] = {
            **MOBILENET_V3_SE,
            **(kwargs.get("dw_attention_kwargs") or {}),
        }
    norm = functools.partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)
    return MobileNet(
        _v3_rows(table),
        stem_ch=16,
        head_ch=_v3_head,
        head_hidden=hidden,
        stem_act="hardswish",
        norm_layer=norm,
        **kwargs,
    )


@register_network(
    "mobilenet_v3_large",
    "MobileNetV3-Large, inverted residuals with SE",
    timm_name="preattn_mobilenetv3_large_100",
    stage_count=5,
    extra_options=_DW_OPTIONS,
    timm_cfg={"first_conv": "stem.0"},
)
def mobilenet_v3_large(*, width_mult: float | None = None, **kwargs: Any) -> MobileNet:
    """MobileNetV3-Large (5.48 M parameters): its SE (``dw_attention="se"`` with
    :data:`MOBILENET_V3_SE`; None removes it) in the marked blocks. As :class:`MobileNet`."""
    return _v3(_V3_LARGE, 1280, width_mult, kwargs)


@register_network(
    "mobilenet_v3_small",
    "MobileNetV3-Small, inverted residuals with SE",
    timm_name="preattn_mobilenetv3_small_100",
    stage_count=4,
    extra_options=_DW_OPTIONS,
    timm_cfg={"first_conv": "stem.0"},
)
def mobilenet_v3_small(*, width_mult: float | None = None, **kwargs: Any) -> MobileNet:
    """MobileNetV3-Small (2.54 M parameters); as :func:`mobilenet_v3_large`."""
    return _v3(_V3_SMALL, 1024, width_mult, kwargs)

"""ResNet-18/34/50/101/152 built from :class:`preattn.ResidualBlock`.

Same layout, names and parameter count as ``torchvision.models.resnet*`` when
``placement="none"``; attention is added to the blocks of the chosen ``stages``::

    stem     imagenet: conv7x7/2 (in_chans -> 64)-BN-ReLU-maxpool3x3/2   (B, 64, H/4, W/4)
             cifar:    conv3x3/1 (in_chans -> 64)-BN-ReLU                 (B, 64, H, W)
    layer1   blocks x n1, 64·e channels,  stride 1
    layer2   blocks x n2, 128·e channels, stride 2
    layer3   blocks x n3, 256·e channels, stride 2
    layer4   blocks x n4, 512·e channels, stride 2
    head     global average pool, linear (512·e -> num_classes)

with ``e = 1`` (basic blocks: resnet18/34) or ``e = 4`` (bottlenecks: resnet50/101/152).
``width=w`` multiplies the stem's and every stage's channel count (64·w, 128·w, ...).

Initialisation follows torchvision: Kaiming-normal (fan_out, ReLU) for every conv
(attention convs included), BatchNorm weight 1 and bias 0, the linear head at PyTorch's
default. ``zero_init_last=True`` zeroes the last BN of every residual branch (each block
then starts as ``act(S(x))``); ``pre`` attention gets its first gradient after the first
optimiser step has moved that BN's weight off 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from .. import _validate
from ..blocks import ResidualBlock
from ..spec import AttentionSpec
from .api import ClassifierNet
from .registry import register_network

__all__ = ["DEFAULT_STAGES", "ResNet", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]

DEFAULT_STAGES = (2, 3, 4)
_STEMS = ("imagenet", "cifar")


class ResNet(ClassifierNet):
    """ResNet with attention at ``placement`` in the blocks of ``stages``.

    Args:
        layers: blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
        transform: ``"basic"`` or ``"bottleneck"``.
        num_classes: size of the output (B, num_classes).
        in_chans: channels of the input image (B, in_chans, H, W).
        stem: ``"imagenet"`` (7x7/2 conv + max-pool) or ``"cifar"`` (3x3/1 conv, no pool).
        stages: which of the stages 1..4 get attention. Default ``(2, 3, 4)``: the
            specification (docs/pattern3.md §5) warns that Pattern-3 very early is
            aggressive (stage 1 sees the least processed features, where attention can
            starve the branch), and stage 1 is where attention costs most (largest
            feature maps). Pass ``(1, 2, 3, 4)`` for the CBAM paper's layout.
        spec: attention, placement and λ of the attended blocks
            (:class:`~preattn.AttentionSpec`); the other blocks get ``placement="none"``.
        zero_init_last: zero the last BN of every residual branch.
        global_pool: ``avg``, ``max``, ``avgmax`` or ``""`` (none; with ``num_classes=0``).
        drop_rate: dropout before the classifier.
        drop_path_rate: stochastic depth of the residual branches, rising linearly from 0
            at the first block to this rate at the last (as timm).
        width: channel multiplier (> 0); each width ``c`` becomes ``max(1, round(width·c))``.
        **attention_options: fields of :class:`~preattn.AttentionSpec`, applied on top of
            ``spec`` (``placement="branch"``, ``lam=None``, ...).

    ``num_classes=0`` gives pooled features (B, 512·e). Feature levels (``feature_info``):
    the stem's ``relu`` and ``layer1``-``layer4``.
    """

    def __init__(
        self,
        layers: Sequence[int],
        transform: str = "basic",
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        stem: str = "imagenet",
        stages: Iterable[int] | None = None,
        spec: AttentionSpec | None = None,
        zero_init_last: bool = False,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        width: float = 1.0,
        **attention_options: Any,
    ) -> None:
        super().__init__()
        _validate.positive_int("in_chans", in_chans)
        stem_ch = _validate.scaled_width(64, width)
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        _validate.choice("stem", stem, _STEMS)
        self.stages = _validate.stages(stages, count=4, default=DEFAULT_STAGES)
        self.spec = spec = AttentionSpec.build(spec, **attention_options)
        plain = spec.replace(placement="none")
        self.in_chans = in_chans
        imagenet = stem == "imagenet"
        # registered in forward order, so timm's FeatureListNet can run the children
        if imagenet:
            self.conv1 = nn.Conv2d(in_chans, stem_ch, 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_chans, stem_ch, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_ch)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool: nn.Module = (
            nn.MaxPool2d(3, stride=2, padding=1) if imagenet else nn.Identity()
        )
        self.feature_info = [
            {"num_chs": stem_ch, "reduction": 2 if imagenet else 1, "module": "relu"}
        ]
        total_blocks, block_index = sum(layers), 0

        expansion = 4 if transform == "bottleneck" else 1
        in_ch = stem_ch
        for index, (blocks, base) in enumerate(zip(layers, (64, 128, 256, 512), strict=True)):
            stage = index + 1
            out_ch = _validate.scaled_width(base, width) * expansion
            stage_spec = spec if stage in self.stages else plain
            stage_blocks = []
            for b in range(blocks):
                stride = 2 if stage > 1 and b == 0 else 1
                drop_path = drop_path_rate * block_index / max(total_blocks - 1, 1)
                stage_blocks.append(
                    ResidualBlock(
                        in_ch,
                        out_ch,
                        stride,
                        spec=stage_spec,
                        transform=transform,
                        drop_path=drop_path,
                    )
                )
                in_ch, block_index = out_ch, block_index + 1
            self.add_module(f"layer{stage}", nn.Sequential(*stage_blocks))
            reduction = (4 if imagenet else 1) * 2 ** (stage - 1)
            self.feature_info.append(
                {"num_chs": out_ch, "reduction": reduction, "module": f"layer{stage}"}
            )
        self._init_head(in_ch, num_classes, global_pool, drop_rate)
        self._init_weights(zero_init_last)

    def _init_weights(self, zero_init_last: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_last:
            for m in self.modules():
                if isinstance(m, ResidualBlock):
                    nn.init.zeros_(m.transform.last_bn.weight)

    def forward_stages(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def feature_stages(self) -> list[tuple[str, nn.Module]]:
        """The forward pass: stem (feature level ``relu``), max-pool, ``layer1``-``layer4``.

        Shapes: (B, in_chans, H, W) -> ... -> (B, 512·e, H/32, W/32) (imagenet stem) or
        H/8 (cifar stem).
        """
        return [
            ("_conv1", self.conv1),
            ("_bn1", self.bn1),
            ("relu", self.relu),
            ("_maxpool", self.maxpool),
            ("layer1", self.layer1),
            ("layer2", self.layer2),
            ("layer3", self.layer3),
            ("layer4", self.layer4),
        ]


@register_network("resnet18", "ResNet-18, basic blocks", timm_name="preattn_resnet18")
def resnet18(**kwargs: Any) -> ResNet:
    """ResNet-18: basic blocks (2, 2, 2, 2). Keyword arguments as :class:`ResNet`."""
    return ResNet((2, 2, 2, 2), "basic", **kwargs)


@register_network("resnet34", "ResNet-34, basic blocks", timm_name="preattn_resnet34")
def resnet34(**kwargs: Any) -> ResNet:
    """ResNet-34: basic blocks (3, 4, 6, 3)."""
    return ResNet((3, 4, 6, 3), "basic", **kwargs)


@register_network("resnet50", "ResNet-50, bottlenecks", timm_name="preattn_resnet50")
def resnet50(**kwargs: Any) -> ResNet:
    """ResNet-50: bottlenecks (3, 4, 6, 3)."""
    return ResNet((3, 4, 6, 3), "bottleneck", **kwargs)


@register_network("resnet101", "ResNet-101, bottlenecks", timm_name="preattn_resnet101")
def resnet101(**kwargs: Any) -> ResNet:
    """ResNet-101: bottlenecks (3, 4, 23, 3)."""
    return ResNet((3, 4, 23, 3), "bottleneck", **kwargs)


@register_network("resnet152", "ResNet-152, bottlenecks", timm_name="preattn_resnet152")
def resnet152(**kwargs: Any) -> ResNet:
    """ResNet-152: bottlenecks (3, 8, 36, 3)."""
    return ResNet((3, 8, 36, 3), "bottleneck", **kwargs)

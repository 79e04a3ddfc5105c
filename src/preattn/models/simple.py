"""The specification's plain network with two Pattern-3 blocks (docs/pattern3.md §6).

Layout (input (B, in_chans, H, W), output logits (B, num_classes))::

    stem    conv3x3(in_chans -> 32)-BN-ReLU                      (B, 32, H, W)
    conv1   conv3x3(32 -> 64)-BN-ReLU                            (B, 64, H, W)
    block1  ResidualBlock(64 -> 64, stride 1)       stage 1      (B, 64, H, W)
    block2  ResidualBlock(64 -> 128, stride 2)      stage 2      (B, 128, H/2, W/2)
    conv2   conv3x3(128 -> 128)-BN-ReLU                          (B, 128, H/2, W/2)
    pool    global average                                       (B, 128)
    fc      linear(128 -> num_classes)                           (B, num_classes)

``width=w`` multiplies every channel count (32, 64, 128 -> round(w·32), ...): a plain
network of the same parameter count or training time as an attended one is a fair
baseline for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from .. import _validate
from ..blocks import ResidualBlock
from ..spec import AttentionSpec
from .api import ClassifierNet
from .registry import register_network

__all__ = ["SimpleCNN"]


def _conv_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


@register_network(
    "simplecnn",
    "the reference SimpleCNN",
    timm_name="preattn_simplecnn",
    stage_count=2,
    stem_by_size=False,
    input_size=(1, 28, 28),
    num_classes=10,
    timm_cfg={
        "num_classes": 10,
        "input_size": (1, 28, 28),
        "pool_size": (14, 14),
        "crop_pct": 1.0,
        "mean": (0.2860,),
        "std": (0.3530,),
        "first_conv": "stem.0",
    },
)
class SimpleCNN(ClassifierNet):
    """The reference network of the specification (docs/pattern3.md §6); the defaults
    reproduce it exactly.

    Args:
        num_classes: size of the output.
        in_chans: channels of the input image (3 for RGB, 1 for (Fashion-)MNIST).
        stages: which of the two residual blocks get attention (``block1`` is stage 1,
            ``block2`` stage 2); default both, as in the specification.
        spec: attention, placement and λ of the attended blocks
            (:class:`~preattn.AttentionSpec`; default: Pattern-3, CBAM, λ = 0.1).
        global_pool, drop_rate, drop_path_rate: the head and stochastic depth, as in
            :class:`~preattn.models.ResNet` (``drop_path_rate`` is block2's, block1 gets 0).
        width: channel multiplier (> 0); each width ``c`` becomes ``max(1, round(width·c))``.
        **attention_options: fields of :class:`~preattn.AttentionSpec`, applied on top of
            ``spec``.

    ``num_classes=0`` gives pooled features (B, 128·width). Feature levels (``feature_info``):
    ``stem``, ``conv1``, ``block1``, ``block2``, ``conv2``.
    """

    def __init__(
        self,
        num_classes: int = 10,
        *,
        in_chans: int = 3,
        stages: Iterable[int] | None = None,
        spec: AttentionSpec | None = None,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        width: float = 1.0,
        **attention_options: Any,
    ) -> None:
        super().__init__()
        _validate.positive_int("in_chans", in_chans)
        self.stages = _validate.stages(stages, count=2, default=(1, 2))
        self.spec = spec = AttentionSpec.build(spec, **attention_options)
        c32, c64, c128 = (_validate.scaled_width(c, width) for c in (32, 64, 128))
        plain = spec.replace(placement="none")
        self.stem = _conv_bn_relu(in_chans, c32)
        self.conv1 = _conv_bn_relu(c32, c64)
        self.block1 = ResidualBlock(c64, c64, 1, spec=spec if 1 in self.stages else plain)
        self.block2 = ResidualBlock(
            c64, c128, 2, spec=spec if 2 in self.stages else plain, drop_path=drop_path_rate
        )
        self.conv2 = _conv_bn_relu(c128, c128)
        self.in_chans = in_chans
        self.feature_info = [
            {"num_chs": c32, "reduction": 1, "module": "stem"},
            {"num_chs": c64, "reduction": 1, "module": "conv1"},
            {"num_chs": c64, "reduction": 1, "module": "block1"},
            {"num_chs": c128, "reduction": 2, "module": "block2"},
            {"num_chs": c128, "reduction": 2, "module": "conv2"},
        ]
        self._init_head(c128, num_classes, global_pool, drop_rate)

    def forward_stages(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.block2(self.block1(self.conv1(self.stem(x)))))

    def feature_stages(self) -> list[tuple[str, nn.Module]]:
        """(B, in_chans, H, W) -> stem, conv1, block1 (B, 64, H, W) -> block2, conv2
        (B, 128, H/2, W/2)."""
        return [(info["module"], getattr(self, info["module"])) for info in self.feature_info]

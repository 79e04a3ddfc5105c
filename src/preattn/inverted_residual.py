"""The inverted-residual transform ``F`` of MobileNetV2/V3 (Sandler et al. 2018, Howard et
al. 2019), for :class:`~preattn.ResidualBlock`.

For input (B, C_in, H, W), expanded width ``E`` and output (B, C_out, H/s, W/s)::

    F(x) = BN(conv1x1_{E->C_out}( D( act(BN(dwconv_kxk,s(act(BN(conv1x1_{C_in->E}(x))))))) ))

with ``act`` ReLU6 (V2), ReLU or hard-swish (V3), no activation after the projection (the
"linear bottleneck"), the expansion left out when ``E = C_in``, and ``D`` the attention of
the *depthwise position*: the identity, or a gate attention on the E expanded channels
after the depthwise conv — where MobileNetV3 puts its SE and where the coordinate
attention paper puts SE, CBAM and CA in MobileNetV2. ``D`` is part of ``F``: it is not one
of the block's placements (``none/pre/branch/post/skip``), which sit outside ``F``.

An inverted-residual block adds its input only when the shapes allow it (stride 1 and
``C_in = C_out``), with no projection on the skip and no activation after the sum: the
transform says so to :class:`~preattn.ResidualBlock` with ``projection_skip = False`` and
``output_act = False``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from . import _validate
from .attention import AttentionFactory, create_attention

__all__ = ["ACTIVATIONS", "InvertedResidualTransform"]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(inplace=True),
    "hardswish": lambda: nn.Hardswish(inplace=True),
}


class InvertedResidualTransform(nn.Module):
    """``F`` of an inverted-residual block (module docstring): (B, C_in, H, W) ->
    (B, C_out, H/s, W/s).

    Args:
        in_ch, out_ch, stride: ``C_in``, ``C_out`` and the depthwise conv's stride.
        expand_ratio: ``E = round(C_in · expand_ratio)`` (MobileNetV2: 6, the first block 1).
        expanded: ``E`` itself (MobileNetV3's tables); overrides ``expand_ratio``.
        kernel_size: odd ``k`` of the depthwise conv (3 or 5).
        act: ``"relu6"``, ``"relu"`` or ``"hardswish"``.
        dw_attention: attention ``D`` after the depthwise conv: a registered name, a factory
            ``channels -> nn.Module``, or None (the identity).
        dw_attention_kwargs: its options (MobileNetV3's SE: ``reduction=4, divisor=8,
            gate="hardsigmoid"``).
        norm_layer: the BatchNorm factory ``channels -> nn.Module``.

    Submodules: ``expand`` (conv, BN, act; the identity when ``E = C_in``), ``depthwise``
    (conv, BN, act), ``dw_attention`` (``D`` or the identity), ``project`` (conv, BN).
    """

    projection_skip = False  # a residual only where the shapes match, as MobileNetV2
    output_act = False  # no activation after the sum (or after F, without a residual)

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        stride: int = 1,
        *,
        expand_ratio: float = 6.0,
        expanded: int | None = None,
        kernel_size: int = 3,
        act: str = "relu6",
        dw_attention: str | AttentionFactory | None = None,
        dw_attention_kwargs: Mapping[str, Any] | None = None,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        _validate.positive_int("in_ch", in_ch)
        _validate.positive_int("out_ch", out_ch)
        _validate.positive_int("stride", stride)
        _validate.odd_positive_int("kernel_size", kernel_size)
        activation = ACTIVATIONS[_validate.choice("act", act, ACTIVATIONS)]
        if expanded is None:
            if not (isinstance(expand_ratio, int | float) and expand_ratio > 0):
                raise ValueError(f"expand_ratio must be a number > 0, got {expand_ratio!r}")
            expanded = max(1, round(in_ch * expand_ratio))
        hidden = _validate.positive_int("expanded", expanded)
        self.expanded = hidden
        self.expand: nn.Module = (
            nn.Sequential(nn.Conv2d(in_ch, hidden, 1, bias=False), norm_layer(hidden), activation())
            if hidden != in_ch
            else nn.Identity()
        )
        self.depthwise = nn.Sequential(
            nn.Conv2d(
                hidden,
                hidden,
                kernel_size,
                stride=stride,
                padding=kernel_size // 2,
                groups=hidden,
                bias=False,
            ),
            norm_layer(hidden),
            activation(),
        )
        self.dw_attention: nn.Module = (
            create_attention(dw_attention, hidden, **dict(dw_attention_kwargs or {}))
            if dw_attention is not None
            else nn.Identity()
        )
        self.project = nn.Sequential(nn.Conv2d(hidden, out_ch, 1, bias=False), norm_layer(out_ch))

    __jit_unused_properties__ = ["last_bn"]  # noqa: RUF012  (TorchScript reads this name)

    @property
    def last_bn(self) -> nn.Module:
        return self.project[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.dw_attention(self.depthwise(self.expand(x))))

"""Residual transforms ``F``, the skip ``S`` and :class:`ResidualBlock`.

For input ``x`` (B, C_in, H, W) and output (B, C_out, H/s, W/s), with attention ``A``,
λ-mixing ``mix(z, a) = z + λ(a − z)`` (``mix(z, a) = a`` when uncontrolled) and output
activation ``act``, the placements are::

    none    y = act(S(x) + F(x))
    pre     y = act(S(x) + F(mix(x, A(x))))        Pattern-3, SE-PRE   (A on C_in, H, W)
    branch  y = act(S(x) + mix(f, A(f))), f = F(x)  Pattern-1, CBAM/SE  (A on C_out)
    post    y = mix(r, A(r)),  r = act(S(x) + F(x)) SE-POST             (A on C_out)
    skip    y = act(mix(s, A(s)) + F(x)), s = S(x)  SE-Identity         (A on C_out)

``F`` is ``basic`` (conv3x3(s)-BN-ReLU-conv3x3-BN), ``bottleneck`` (conv1x1-BN-ReLU-
conv3x3(s)-BN-ReLU-conv1x1-BN, width ``C_out // 4``) or ``inverted`` (MobileNet's inverted
residual, :mod:`preattn.inverted_residual`), all convs without bias. ``S`` is the identity,
or conv1x1(s)-BN when the stride or the channel count changes.

A transform may say that its block is built otherwise, by two class attributes:
``projection_skip = False``: no projection, so a block whose shapes change has no residual
at all (``y = F(x)`` with its attention, and placement ``skip`` has nothing to act on);
``output_act = False``: no activation after the sum. The inverted residual sets both, as
in MobileNetV2/V3, so there the placements read::

    none    y = S(x) + F(x)                 (y = F(x) without a residual)
    pre     y = S(x) + F(mix(x, A(x)))      (y = F(mix(x, A(x))): attention on the input)
    branch  y = S(x) + mix(f, A(f))          (y = mix(f, A(f)))
    post    y = mix(r, A(r)), r = S(x) + F(x) (the same as branch without a residual)
    skip    y = mix(s, A(s)) + F(x)          (an error without a residual)
"""

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torchvision.ops import StochasticDepth

from . import _validate
from .attention import (
    CBAM,
    ECA,
    SE,
    ChannelAttention,
    CoordAttention,
    SpatialAttention,
    create_attention,
)
from .inverted_residual import InvertedResidualTransform
from .mixing import LambdaMix
from .spec import PLACEMENTS, AttentionSpec

__all__ = [
    "PLACEMENTS",
    "TRANSFORMS",
    "BasicTransform",
    "BottleneckTransform",
    "ResidualBlock",
    "make_skip",
]


class BasicTransform(nn.Module):
    """``F(x) = BN(conv3x3(ReLU(BN(conv3x3_s(x)))))``: (B, C_in, H, W) -> (B, C_out, H/s, W/s)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)

    __jit_unused_properties__ = ["last_bn"]  # noqa: RUF012  (TorchScript reads this name)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))


class BottleneckTransform(nn.Module):
    """ResNet-v1.5 bottleneck ``F``: 1x1 (C_in->w), 3x3 stride s (w->w), 1x1 (w->C_out).

    Each conv is followed by BN, the first two also by ReLU. ``w = C_out // expansion``
    unless ``width`` is given. Shapes: (B, C_in, H, W) -> (B, C_out, H/s, W/s).
    """

    expansion = 4

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, width: int | None = None) -> None:
        super().__init__()
        if width is None:
            if out_ch % self.expansion:
                raise ValueError(
                    f"out_ch must be divisible by {self.expansion} for a bottleneck, got {out_ch}"
                )
            width = out_ch // self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.act = nn.ReLU(inplace=True)

    __jit_unused_properties__ = ["last_bn"]  # noqa: RUF012  (TorchScript reads this name)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.conv1(x)))
        x = self.act(self.bn2(self.conv2(x)))
        return self.bn3(self.conv3(x))


TRANSFORMS: dict[str, Callable[..., nn.Module]] = {
    "basic": BasicTransform,
    "bottleneck": BottleneckTransform,
    "inverted": InvertedResidualTransform,
}
_OWN_TRANSFORMS = (BasicTransform, BottleneckTransform, InvertedResidualTransform)


def make_skip(in_ch: int, out_ch: int, stride: int) -> nn.Module:
    """``S``: identity, or conv1x1(stride)-BN when ``stride != 1`` or ``in_ch != out_ch``."""
    if stride != 1 or in_ch != out_ch:
        return nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
            nn.BatchNorm2d(out_ch),
        )
    return nn.Identity()


def _built_in(attention: nn.Module | None) -> bool:
    """An attention module of this library's registry, whose output is a fresh product."""
    return type(attention) in (CBAM, ChannelAttention, SpatialAttention, SE, ECA, CoordAttention)


class ResidualBlock(nn.Module):
    """Residual block with attention at one of the placements ``none/pre/branch/post/skip``.

    Args:
        in_ch: channels of the input (B, in_ch, H, W).
        out_ch: channels of the output (B, out_ch, H/stride, W/stride).
        stride: stride of ``F``'s spatial conv and of the projection skip.
        spec: the attention, its placement and λ-control (:class:`~preattn.AttentionSpec`);
            default ``AttentionSpec()``.
        transform: ``"basic"``, ``"bottleneck"`` or ``"inverted"``, or a factory
            ``(in_ch, out_ch, stride) -> nn.Module`` (e.g. a ``functools.partial`` of
            :class:`~preattn.InvertedResidualTransform` with its options).
        zero_init_last: set the last BN's weight of ``F`` to 0, so the block starts as
            ``act(S(x))``. Then ``F``'s input (and ``pre`` attention) gets no gradient until
            that weight moves off 0, which it does after the first optimiser step.
        drop_path: stochastic depth: in training, drop the residual branch (after its
            attention) of each sample with this probability, scaling kept ones by
            1 / (1 − p) (``torchvision.ops.StochasticDepth``, row mode).
        **attention_options: fields of :class:`~preattn.AttentionSpec` (``placement``,
            ``attention``, ``lam``, ...), applied on top of ``spec``.

    The defaults are the specification's controlled Pattern-3 block
    (``Pattern3_PreResidualCBAM_Controlled``): ``pre``, CBAM, λ = 0.1 through a learnable
    sigmoid, basic transform. ``A`` sees ``in_ch`` channels for ``pre`` and ``out_ch``
    for the other placements.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        stride: int = 1,
        *,
        spec: AttentionSpec | None = None,
        transform: str | Callable[..., nn.Module] = "basic",
        zero_init_last: bool = False,
        drop_path: float = 0.0,
        **attention_options: Any,
    ) -> None:
        super().__init__()
        spec = AttentionSpec.build(spec, **attention_options)
        if isinstance(transform, str):
            build = TRANSFORMS[_validate.choice("transform", transform, TRANSFORMS)]
        elif callable(transform):
            build = transform
        else:
            raise TypeError(f"transform must be a str or callable, got {type(transform).__name__}")
        branch = build(in_ch, out_ch, stride)
        residual = getattr(branch, "projection_skip", True) or (stride == 1 and in_ch == out_ch)
        if not 0.0 <= drop_path < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {drop_path}")
        self._assemble(
            in_ch,
            out_ch,
            stride,
            spec,
            branch,
            skip=make_skip(in_ch, out_ch, stride) if residual else None,
            act=nn.ReLU(inplace=True) if getattr(branch, "output_act", True) else nn.Identity(),
            drop_path=StochasticDepth(drop_path, "row") if drop_path else nn.Identity(),
        )
        if zero_init_last:
            last_bn = getattr(self.transform, "last_bn", None)
            if not isinstance(last_bn, nn.BatchNorm2d):
                raise ValueError("zero_init_last needs a transform with a `last_bn` BatchNorm2d")
            nn.init.zeros_(last_bn.weight)

    @classmethod
    def from_parts(
        cls,
        transform: nn.Module,
        *,
        in_ch: int,
        out_ch: int,
        stride: int,
        skip: nn.Module | None,
        act: nn.Module,
        drop_path: nn.Module,
        spec: AttentionSpec | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **attention_options: Any,
    ) -> "ResidualBlock":
        """A block around modules that already exist: ``y = act(skip(x) + drop_path(F(...)))``
        with ``transform`` as F (in_ch → out_ch channels, ``stride``), ``skip`` as S (None:
        no residual connection), and only the attention of ``spec`` new, created on
        ``device`` in ``dtype`` (those of the parts it joins). How retrofit turns a network's
        own block into a Pattern-3 block without copying a weight."""
        block = cls.__new__(cls)
        nn.Module.__init__(block)
        block._assemble(
            in_ch,
            out_ch,
            stride,
            AttentionSpec.build(spec, **attention_options),
            transform,
            skip=skip,
            act=act,
            drop_path=drop_path,
            device=device,
            dtype=dtype,
        )
        return block

    def _assemble(
        self,
        in_ch: int,
        out_ch: int,
        stride: int,
        spec: AttentionSpec,
        transform: nn.Module,
        *,
        skip: nn.Module | None,
        act: nn.Module,
        drop_path: nn.Module,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        """Hold the parts and create the attention (and λ) that ``spec`` asks for."""
        self.in_ch = _validate.positive_int("in_ch", in_ch)
        self.out_ch = _validate.positive_int("out_ch", out_ch)
        self.stride = _validate.positive_int("stride", stride)
        self.spec = spec
        self.placement = spec.placement
        self.transform = transform
        self.skip: nn.Module | None = skip
        if self.skip is None and spec.placement == "skip":
            raise ValueError(
                f"placement 'skip' needs a residual connection, and this "
                f"{type(self.transform).__name__} block (in_ch={in_ch}, out_ch={out_ch}, "
                f"stride={stride}) has none; use 'pre', 'branch' or 'post'"
            )
        self.act: nn.Module = act
        self.drop_path: nn.Module = drop_path
        self.attention: nn.Module | None = None
        self.mix: LambdaMix | None = None
        if spec.has_attention:
            attn_channels = in_ch if spec.placement == "pre" else out_ch
            # created on the block's device (no host copy first: a meta-device block stays
            # without storage); the attention factories take no dtype, so that is a cast
            with torch.device(device) if device is not None else contextlib.nullcontext():
                self.attention = create_attention(
                    spec.attention, attn_channels, **spec.attention_kwargs
                )
                if spec.controlled:
                    self.mix = spec.make_mix(attn_channels)
            if (
                spec.controlled
                and spec.lam_param == "depth"
                and not hasattr(self.attention, "gate")
            ):
                raise ValueError(
                    f"lam_param='depth' needs gate attention (A(z) = z·gate(z)), got "
                    f"{type(self.attention).__name__}; use 'sigmoid' or 'linear'"
                )
            if dtype is not None:
                for part in (self.attention, self.mix):
                    if part is not None:
                        part.to(dtype=dtype)
        # F's output (a BatchNorm's, or a λ-mix's or built-in attention's product) is a new
        # tensor no backward reads: the residual sum is taken in it, as in torchvision's blocks
        self._sum_in_place = isinstance(self.transform, _OWN_TRANSFORMS) and (
            spec.placement != "branch" or self.mix is not None or _built_in(self.attention)
        )

    def _attend(self, z: torch.Tensor) -> torch.Tensor:
        """``mix(z, A(z))``; ``A(z)`` when uncontrolled."""
        if torch.jit.is_scripting():  # TorchScript: plain products, no fused autograd
            if self.attention is not None:
                attended = self.attention(z)
                if self.mix is not None:
                    if self.mix.depth:
                        raise RuntimeError("lam_param='depth' is not supported in TorchScript")
                    return self.mix(z, attended)
                return attended
            return z
        else:
            assert self.attention is not None
            if self.mix is None:
                return self.attention(z)
            return self.mix.attend(z, self.attention)

    def _describe(self) -> str:
        return (
            f"ResidualBlock(in_ch={self.in_ch}, out_ch={self.out_ch}, stride={self.stride}, "
            f"placement={self.placement!r})"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            _validate.image_batch(x, self.in_ch, self._describe)
        placement = self.placement
        skip = self.skip
        identity = skip(x) if skip is not None else None
        f = self.transform(self._attend(x) if placement == "pre" else x)
        if placement == "branch":
            f = self._attend(f)
        if identity is None:  # a block without residual: y = F(x)
            y = f
        else:
            if placement == "skip":
                identity = self._attend(identity)
            f = self.drop_path(f)
            y = f.add_(identity) if self._sum_in_place else identity + f
        y = self.act(y)
        if placement == "post":
            y = self._attend(y)
        return y

    def extra_repr(self) -> str:
        return (
            f"in_ch={self.in_ch}, out_ch={self.out_ch}, stride={self.stride}, "
            f"placement={self.placement!r}"
        )

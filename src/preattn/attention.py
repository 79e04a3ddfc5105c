"""Attention modules ``A`` and the ``create_attention`` registry.

Every module takes the channel count as its first positional argument and maps a tensor
``x`` of shape ``(B, C, H, W)`` to ``x * gate(x)`` of the same shape; ``gate(x)`` returns
the multiplicative mask, broadcastable to ``x``.

Channel attention (CBAM, Woo et al. 2018, eq. 2)::

    M_c(x) = sigmoid(MLP(avg_hw(x)) + MLP(max_hw(x)))            (B, C, 1, 1)
    MLP    = 1x1 conv C -> h, act, 1x1 conv h -> C,   h = max(C // r, min_hidden)

Spatial attention (CBAM eq. 3)::

    M_s(x) = sigmoid(BN?(conv_kxk([mean_c(x), max_c(x)])))         (B, 1, H, W)

CBAM applies them in sequence: ``x' = M_c(x) * x``, ``x'' = M_s(x') * x'``.
The defaults are the specification's CBAM (docs/pattern3.md §3: no MLP bias, no BatchNorm,
pooling order ``[mean, max]``, ``h = max(C // 16, 4)``); ``cbam-official`` is the paper's
released code
(MLP bias, BatchNorm after the spatial conv, order ``[max, mean]``, ``h = C // 16``).

SE (Hu et al. 2018): ``x * sigmoid(W2 act(W1 avg_hw(x) + b1) + b2)``, ``h = max(C // r, 1)``
(MobileNetV3's: hard sigmoid, ``h = make_divisible(C // 4, 8)``).
ECA (Wang et al. 2020): ``x * sigmoid(conv1d_k(avg_hw(x)))`` over the channel axis, with
``k = t if t odd else t + 1``, ``t = int(|(log2 C + b) / gamma|)``.

Coordinate attention (Hou et al. 2021, eqs. 4-9), with ``m = max(min_hidden, C // r)``::

    z_h = mean_w(x) (B, C, H, 1),  z_w = mean_h(x) (B, C, W, 1)
    [f_h; f_w] = h_swish(BN(conv1x1_{C->m}([z_h; z_w])))      (along H + W)
    gate = sigmoid(conv1x1_{m->C}(f_h)) · sigmoid(conv1x1_{m->C}(f_w))ᵀ   (B, C, H, W)

Reductions use ``mean``/``amax`` rather than adaptive pooling layers or ``torch.max(dim)``:
they produce no indices, are faster on CPU and export to ONNX as plain reductions.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from . import _validate
from .lean_autograd import (
    GatedMix,
    ScaledChannelPool,
    SpatialStats,
    amax_channels,
    mean_channels,
    mean_hw,
    stack_pooled,
    use_fast_attention,
)

__all__ = [
    "CBAM",
    "ECA",
    "SE",
    "ChannelAttention",
    "CoordAttention",
    "GateAttention",
    "SpatialAttention",
    "attention_names",
    "create_attention",
    "make_divisible",
    "normalise_name",
    "register_attention",
    "unregister_attention",
]

_POOLS = ("mean", "max")


def _gate_dtype(x: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The dtype gates are computed in: the module's weights' (the input's, autocast aside).

    A float32 module under bf16/fp16 autocast computes its gates in float32; a module
    converted with ``.half()``/``.bfloat16()`` computes them in its own dtype (its weights
    could not take float32 inputs); float64 stays float64. (A plain attribute, not a type
    promotion, so symbolic tracing can record it.)
    """
    return weight.dtype


def _pool_channels(x: torch.Tensor, order: tuple[str, str], dtype: torch.dtype) -> torch.Tensor:
    """Stack channel-wise mean and max of ``x`` (B, C, H, W) into (B, 2, H, W) in ``dtype``."""
    # a branch of its own: TorchScript skips the others only after a bare is_scripting() test
    if torch.jit.is_scripting():  # noqa: SIM114
        mean, peak = x.mean(dim=1, dtype=dtype), x.amax(dim=1)
    elif _execution_path() == REFERENCE:
        mean, peak = x.mean(dim=1, dtype=dtype), x.amax(dim=1)
    else:  # the same maximum, faster channels-last; a bf16 mean without a float32 copy
        mean, peak = mean_channels(x, dtype), amax_channels(x).squeeze(1)
    maps = {"mean": mean, "max": peak.to(dtype)}
    return stack_pooled([maps[name] for name in order])


def _pool_spatial(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Spatial mean of ``x`` (B, C, H, W) as (B, C) in ``dtype`` (eager with the fast path
    on: :func:`~preattn.lean_autograd.mean_hw`, a matrix product for channels-last bf16)."""
    # a branch of its own: TorchScript skips the others only after a bare is_scripting() test
    if torch.jit.is_scripting():  # noqa: SIM114
        return x.mean(dim=(2, 3), dtype=dtype)
    elif _execution_path() == REFERENCE:
        return x.mean(dim=(2, 3), dtype=dtype)
    else:
        return mean_hw(x, dtype)


def _graph_capture() -> bool:
    """A tracer, exporter or ``torch.compile`` records the forward."""
    return _validate.tracing() or torch.compiler.is_compiling()


REFERENCE, LEAN, IN_PLACE = "reference", "lean", "in_place"


def _execution_path() -> str:
    """How the attention of this forward pass runs; the one place that decides it.

    - ``REFERENCE``: plain out-of-place operations, the formulas as written. While a graph
      is recorded (torch.fx, TorchScript tracing, ONNX export, ``torch.compile``, which
      fuses them itself; tracers record no custom Function or in-place work) and whenever
      the fast path is switched off (:func:`~preattn.lean_autograd.set_fast_attention`).
    - ``LEAN``: eager training with the fast path on: the memory-lean autograd Functions of
      :mod:`preattn.lean_autograd` (only the input and the small gates kept for backward)
      and the fast reductions.
    - ``IN_PLACE``: eager inference with the fast path on: the fast reductions, and
      temporaries overwritten in place.

    (TorchScript takes the reference path through its own ``is_scripting()`` branches.)
    """
    if not use_fast_attention() or _graph_capture():
        return REFERENCE
    return LEAN if torch.is_grad_enabled() else IN_PLACE


def _spatial_stats(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``[mean_HW(x), max_HW(x)]``: (B, C, H, W) -> (2, B, C) in ``dtype``."""
    if torch.jit.is_scripting():
        return _plain_spatial_stats(x, dtype)
    else:
        lean = _execution_path() == LEAN
        return SpatialStats.apply(x, dtype) if lean else _plain_spatial_stats(x, dtype)


def _plain_spatial_stats(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # a new leading axis, not a concatenation along the batch: no batch-size guard
    return torch.stack([_pool_spatial(x, dtype), x.amax(dim=(2, 3)).to(dtype)])


def _full_precision(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """Autocast switched off: gates are computed in float32 under AMP (no bf16 sigmoids).

    While torch.fx traces, the device is symbolic and a graph records no context manager:
    the gates' inputs are cast to the weights' dtype explicitly instead. A device without
    autocast (``meta``: shape inference, deferred initialisation) has nothing to switch off.
    """
    if _validate.fx_tracing() or not torch.amp.is_autocast_available(x.device.type):
        return contextlib.nullcontext()
    return torch.autocast(x.device.type, enabled=False)


class GateAttention(nn.Module):
    """Base of attention modules of the form ``A(x) = x * gate(x)``.

    One way in: ``gate(x)``, the mask of ``x`` (B, C, H, W), broadcastable to it, in the
    wider of the input's and the weights' dtype (float32 under AMP, the module's own dtype
    after ``.half()``). It is ``compute_gate(gate_input(x))`` with autocast switched off
    (gates in full precision under AMP; TorchScript has no autocast context). A subclass
    writes ``compute_gate(t)``, and ``gate_input(x)`` where the gate is computed from
    something derived from ``x`` (:class:`SpatialAttention`: the channel-pooled maps; the
    default is ``x`` itself). :class:`CBAM` composes a channel and a spatial module and
    overrides :meth:`gate`, :meth:`forward` and :meth:`mixed` with their product.
    ``mixed(x, lam)`` returns the λ-mixed output ``(1 − λ)·x + λ·A(x) =
    x · ((1 − λ) + λ·gate(x))`` in one full-size multiplication.
    """

    def compute_gate(self, t: torch.Tensor) -> torch.Tensor:
        """The gate from ``t = gate_input(x)``."""
        raise NotImplementedError

    def gate_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the gate is computed from: ``x`` itself unless a subclass derives it."""
        return x

    def _full_precision_gate(self, t: torch.Tensor) -> torch.Tensor:
        """:meth:`compute_gate` of ``t`` with autocast switched off."""
        if torch.jit.is_scripting():  # TorchScript: no autocast context
            return self.compute_gate(t)
        else:
            with _full_precision(t):
                return self.compute_gate(t)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The gate of ``x`` (B, C, H, W), broadcastable to it."""
        return self._full_precision_gate(self.gate_input(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x).to(x.dtype)

    def mixed(self, x: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        """``(1 − λ)·x + λ·A(x)`` for a 0-dim ``lam``; same shape and dtype as ``x``."""
        gate = self.gate(x)
        lam = lam.to(gate.dtype)
        return x * ((1.0 - lam) + lam * gate).to(x.dtype)


class _ChannelMLP(GateAttention):
    """Shared part of channel attention and SE: ``fc2(act(fc1(v)))`` on descriptors (N, C).

    ``fc1`` (C -> h) and ``fc2`` (h -> C) are 1x1 convs; they are applied to (N, C) vectors
    as matrix products (the same numbers, without oneDNN's slow backward of 1x1 convs on
    (N, C, 1, 1)).
    """

    def __init__(self, channels: int, hidden: int, bias: bool, act_layer: type[nn.Module]) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=bias)
        self.act = act_layer()
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=bias)

    def mlp(self, v: torch.Tensor) -> torch.Tensor:
        """(N, C) -> (N, C) logits."""
        hidden = self.act(nn.functional.linear(v, self.fc1.weight.flatten(1), self.fc1.bias))
        return nn.functional.linear(hidden, self.fc2.weight.flatten(1), self.fc2.bias)


def _hidden_width(channels: int, reduction: int, min_hidden: int) -> int:
    """``max(C // r, min_hidden)``, the arguments checked."""
    _validate.positive_int("channels", channels)
    _validate.positive_int("reduction", reduction)
    _validate.positive_int("min_hidden", min_hidden)
    return max(channels // reduction, min_hidden)


class ChannelAttention(_ChannelMLP):
    """CBAM channel attention: ``x * sigmoid(MLP(avg_hw x) + MLP(max_hw x))``.

    Args:
        channels: ``C``, channels of the input ``(B, C, H, W)``.
        reduction: ``r``; the hidden width is ``max(C // r, min_hidden)``.
        min_hidden: lower bound of the hidden width (the specification uses 4).
        bias: whether the two 1x1 convs of the shared MLP have a bias.
        act_layer: activation between the two 1x1 convs.

    The MLP runs once on the stacked ``[avg; max]`` descriptors (2, B, C): the same
    numbers as two passes, half the kernel launches.
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        *,
        min_hidden: int = 4,
        bias: bool = False,
        act_layer: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__(channels, _hidden_width(channels, reduction, min_hidden), bias, act_layer)

    def compute_gate(self, t: torch.Tensor) -> torch.Tensor:
        """Channel mask of shape (B, C, 1, 1) for ``t`` of shape (B, C, H, W)."""
        logits = self.mlp(_spatial_stats(t, _gate_dtype(t, self.fc1.weight)))  # (2, B, C)
        return torch.sigmoid(logits[0] + logits[1])[:, :, None, None]


class SpatialAttention(GateAttention):
    """CBAM spatial attention: ``x * sigmoid(BN?(conv_kxk([mean_c x, max_c x])))``.

    Args:
        channels: ``C`` of the input; the module has no per-channel weights, the argument
            keeps the constructor uniform across the registry.
        kernel_size: odd ``k`` of the 2 -> 1 convolution ('same' padding ``k // 2``).
        pool_order: order of the two pooled maps fed to the conv, ``("mean", "max")``
            (the specification) or ``("max", "mean")`` (official CBAM).
        batch_norm: BatchNorm after the conv (official CBAM), without conv bias either way.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 7,
        *,
        pool_order: Sequence[str] = ("mean", "max"),
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        _validate.positive_int("channels", channels)
        _validate.odd_positive_int("kernel_size", kernel_size)
        if sorted(pool_order) != sorted(_POOLS):
            raise ValueError(
                f"pool_order must be ('mean', 'max') or ('max', 'mean'), got {tuple(pool_order)!r}"
            )
        self.pool_order = tuple(pool_order)
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(1, momentum=0.01) if batch_norm else nn.Identity()

    def gate_input(self, x: torch.Tensor) -> torch.Tensor:
        """The channel-pooled maps of ``x`` (B, C, H, W): (B, 2, H, W) in ``pool_order``, in
        the weights' dtype; the mask is (B, 1, H, W)."""
        return _pool_channels(x, self.pool_order, _gate_dtype(x, self.conv.weight))

    def compute_gate(self, t: torch.Tensor) -> torch.Tensor:
        """Mask (B, 1, H, W) from the pooled maps ``t`` (B, 2, H, W)."""
        return torch.sigmoid(self.bn(self.conv(t)))


class CBAM(GateAttention):
    """Convolutional Block Attention Module: channel then spatial attention.

    ``forward(x) = x' * M_s(x')`` with ``x' = x * M_c(x)``; shapes (B, C, H, W) -> same.

    Args:
        channels: ``C`` of the input.
        reduction: ``r`` of the channel MLP.
        spatial_kernel: odd kernel size of the spatial conv.
        min_hidden: lower bound of the MLP's hidden width.
        bias: MLP bias (official CBAM: True).
        pool_order: spatial pooling order (official CBAM: ``("max", "mean")``).
        spatial_bn: BatchNorm after the spatial conv (official CBAM: True).
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        spatial_kernel: int = 7,
        *,
        min_hidden: int = 4,
        bias: bool = False,
        pool_order: Sequence[str] = ("mean", "max"),
        spatial_bn: bool = False,
        act_layer: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.channel = ChannelAttention(
            channels, reduction, min_hidden=min_hidden, bias=bias, act_layer=act_layer
        )
        self.spatial = SpatialAttention(
            channels, spatial_kernel, pool_order=pool_order, batch_norm=spatial_bn
        )

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Combined mask ``M_c(x) * M_s(x * M_c(x))`` of shape (B, C, H, W)."""
        channel_gate = self.channel.gate(x)
        return channel_gate * self.spatial.gate(x * channel_gate.to(x.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x'·M_s(x')`` with ``x' = x·M_c(x)``, by the path :func:`_execution_path` picks:
        ``LEAN`` through the lean Functions (as :meth:`mixed`, without λ), ``IN_PLACE``
        multiplying ``x'`` in place, ``REFERENCE`` out of place."""
        if torch.jit.is_scripting():  # resolved when compiled: plain operations
            x = x * self.channel.gate(x).to(x.dtype)
            return x * self.spatial.gate(x).to(x.dtype)
        else:
            path = _execution_path()
            if path == LEAN:
                return self._lean(x, None)
            x = x * self.channel.gate(x).to(x.dtype)
            spatial = self.spatial.gate(x).to(x.dtype)
            if path == IN_PLACE:
                return x.mul_(spatial)
            return x * spatial

    def _lean(self, x: torch.Tensor, lam: torch.Tensor | None) -> torch.Tensor:
        """:mod:`preattn.lean_autograd`'s Functions: ``(1 − λ)·x + λ·x'·s``, or ``x'·s``
        for ``lam=None``."""
        channel_gate = self.channel.gate(x)
        max_first = self.spatial.pool_order[0] == "max"
        pooled, scaled = ScaledChannelPool.apply(x, channel_gate, max_first)
        spatial_gate = self.spatial._full_precision_gate(pooled)  # pooled = gate_input(x')
        if lam is not None:
            lam = lam.to(channel_gate.dtype)
        return GatedMix.apply(x, channel_gate, spatial_gate, lam, scaled)

    def mixed(self, x: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        """``(1 − λ)·x + λ·x'·M_s(x')`` with ``x' = x·M_c(x)``, by the path
        :func:`_execution_path` picks.

        ``LEAN`` (eager training): :mod:`preattn.lean_autograd` keeps only ``x`` and the
        small gates for backward (one λ per block; a per-channel λ takes the reference
        formula). ``IN_PLACE`` (eager inference): ``x'`` computed once and turned into the
        result in place, one full-size tensor allocated in all. ``REFERENCE`` (tracing,
        export, ``torch.compile``, fast path off): the same formula out of place, with the
        same rounding.
        """
        path = _execution_path()
        if path == LEAN and lam.numel() == 1:
            return self._lean(x, lam)
        attended = x * self.channel.gate(x).to(x.dtype)
        spatial_gate = self.spatial.gate(attended)
        spatial = (lam.to(spatial_gate.dtype) * spatial_gate).to(x.dtype)
        keep = (1.0 - lam).to(x.dtype)
        if path == IN_PLACE:
            return attended.mul_(spatial).addcmul_(x, keep)
        return torch.addcmul(attended * spatial, x, keep)


def make_divisible(value: float, divisor: int = 8) -> int:
    """``value`` rounded to the nearest multiple of ``divisor`` (at least ``divisor``), one
    ``divisor`` more if that lost over 10 %: MobileNet's channel rounding."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


_SE_GATES = ("sigmoid", "hardsigmoid")


class SE(_ChannelMLP):
    """Squeeze-and-Excitation: ``x * gate_fn(fc2(act(fc1(avg_hw x))))``.

    Args:
        channels: ``C`` of the input (B, C, H, W).
        reduction: ``r``; hidden width ``max(C // r, min_hidden)``, or
            ``make_divisible(C // r, divisor)`` when ``divisor`` is given.
        min_hidden: lower bound of the hidden width.
        bias: bias of the two 1x1 convs (SENet: True).
        act_layer: activation between them.
        gate: ``"sigmoid"`` (SENet) or ``"hardsigmoid"`` (``relu6(v + 3) / 6``, MobileNetV3).
        divisor: round the hidden width to a multiple of it (MobileNetV3: ``reduction=4,
            divisor=8, gate="hardsigmoid"``, as ``torchvision.ops.SqueezeExcitation`` there).
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        *,
        min_hidden: int = 1,
        bias: bool = True,
        act_layer: type[nn.Module] = nn.ReLU,
        gate: str = "sigmoid",
        divisor: int | None = None,
    ) -> None:
        hidden = _hidden_width(channels, reduction, min_hidden)
        if divisor is not None:
            hidden = make_divisible(
                channels // reduction, _validate.positive_int("divisor", divisor)
            )
        super().__init__(channels, hidden, bias, act_layer)
        self.hard = _validate.choice("gate", gate, _SE_GATES) == "hardsigmoid"

    def compute_gate(self, t: torch.Tensor) -> torch.Tensor:
        """Channel mask of shape (B, C, 1, 1) for ``t`` of shape (B, C, H, W)."""
        logits = self.mlp(_pool_spatial(t, _gate_dtype(t, self.fc1.weight)))
        gate = nn.functional.hardsigmoid(logits) if self.hard else torch.sigmoid(logits)
        return gate[:, :, None, None]


class CoordAttention(GateAttention):
    """Coordinate attention: ``x * a_h · a_w`` from direction-aware pooling (module docstring).

    Args:
        channels: ``C`` of the input (B, C, H, W).
        reduction: ``r``; the shared 1x1 conv has ``max(min_hidden, C // r)`` outputs
            (the paper: ``r = 32``, at least 8).
        min_hidden: lower bound of that width.

    The three 1x1 convs have biases and the shared one is followed by BatchNorm and
    hard-swish, as the authors' code. The gate is (B, C, H, W): ``a_h`` (B, C, H, 1)
    times ``a_w`` (B, C, 1, W).
    """

    def __init__(self, channels: int, reduction: int = 32, *, min_hidden: int = 8) -> None:
        super().__init__()
        _validate.positive_int("channels", channels)
        _validate.positive_int("reduction", reduction)
        _validate.positive_int("min_hidden", min_hidden)
        hidden = max(min_hidden, channels // reduction)
        self.conv1 = nn.Conv2d(channels, hidden, 1)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.act = nn.Hardswish()
        self.conv_h = nn.Conv2d(hidden, channels, 1)
        self.conv_w = nn.Conv2d(hidden, channels, 1)

    def compute_gate(self, t: torch.Tensor) -> torch.Tensor:
        """The gate ``a_h · a_w`` (B, C, H, W) for ``t`` of shape (B, C, H, W)."""
        dtype = _gate_dtype(t, self.conv1.weight)
        height = t.shape[2]
        pooled_h = t.mean(dim=3, keepdim=True, dtype=dtype)  # (B, C, H, 1)
        pooled_w = t.mean(dim=2, keepdim=True, dtype=dtype).transpose(2, 3)  # (B, C, W, 1)
        shared = self.act(self.bn1(self.conv1(torch.cat([pooled_h, pooled_w], dim=2))))
        along_h, along_w = shared[:, :, :height], shared[:, :, height:]
        gate_h = torch.sigmoid(self.conv_h(along_h))  # (B, C, H, 1)
        gate_w = torch.sigmoid(self.conv_w(along_w)).transpose(2, 3)  # (B, C, 1, W)
        return gate_h * gate_w


def eca_kernel_size(channels: int, gamma: float = 2.0, beta: float = 1.0) -> int:
    """ECA's adaptive kernel size: nearest odd ``|(log2 C + beta) / gamma|``, at least 1."""
    t = int(abs((math.log2(channels) + beta) / gamma))
    return max(t if t % 2 else t + 1, 1)


class ECA(GateAttention):
    """Efficient Channel Attention: ``x * sigmoid(conv1d_k(avg_hw x))``.

    Args:
        channels: ``C`` of the input (B, C, H, W).
        kernel_size: odd 1-D kernel over the channel axis; ``None`` picks ECA's adaptive
            size from ``C``, ``gamma`` and ``beta``.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int | None = None,
        *,
        gamma: float = 2.0,
        beta: float = 1.0,
    ) -> None:
        super().__init__()
        _validate.positive_int("channels", channels)
        if kernel_size is None:
            kernel_size = eca_kernel_size(channels, gamma, beta)
        _validate.odd_positive_int("kernel_size", kernel_size)
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def compute_gate(self, t: torch.Tensor) -> torch.Tensor:
        """Channel mask of shape (B, C, 1, 1) for ``t`` of shape (B, C, H, W)."""
        y = _pool_spatial(t, _gate_dtype(t, self.conv.weight)).unsqueeze(1)  # (B, 1, C)
        return torch.sigmoid(self.conv(y)).transpose(1, 2).unsqueeze(-1)


AttentionFactory = Callable[..., nn.Module]


def _cbam_official(channels: int, **kwargs: object) -> nn.Module:
    options: dict[str, object] = {
        "min_hidden": 1,
        "bias": True,
        "pool_order": ("max", "mean"),
        "spatial_bn": True,
    }
    options.update(kwargs)
    return CBAM(channels, **options)  # type: ignore[arg-type]


_REGISTRY: dict[str, AttentionFactory] = {
    "cbam": CBAM,
    "cbam-official": _cbam_official,
    "channel": ChannelAttention,
    "spatial": SpatialAttention,
    "se": SE,
    "eca": ECA,
    "coord": CoordAttention,
}


def normalise_name(name: str) -> str:
    """The registry key of ``name``: lower case, ``_`` read as ``-`` (``CBAM_Official`` ->
    ``cbam-official``). Registration and lookup both go through it."""
    return name.strip().lower().replace("_", "-")


def register_attention(name: str, factory: AttentionFactory, *, overwrite: bool = False) -> None:
    """Register ``factory(channels, **kwargs) -> nn.Module`` under ``name``.

    The name is normalised (:func:`normalise_name`), so ``create_attention`` finds it in any
    case. Registering a name that exists raises ``ValueError`` unless ``overwrite=True``.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name must be a non-empty str, got {name!r}")
    if not callable(factory):
        raise TypeError(f"factory must be callable, got {type(factory).__name__}")
    key = normalise_name(name)
    if key in _REGISTRY and not overwrite:
        raise ValueError(
            f"attention {key!r} is already registered; pass overwrite=True to replace it"
        )
    _REGISTRY[key] = factory


def unregister_attention(name: str) -> None:
    """Remove ``name`` from the registry (``KeyError`` naming it when absent)."""
    key = normalise_name(name)
    if key not in _REGISTRY:
        raise KeyError(f"attention {key!r} is not registered; registered: {attention_names()}")
    del _REGISTRY[key]


def attention_names() -> list[str]:
    """Names accepted by :func:`create_attention`, sorted."""
    return sorted(_REGISTRY)


def create_attention(
    name_or_factory: str | AttentionFactory, channels: int, **kwargs: object
) -> nn.Module:
    """Build an attention module for ``channels`` channels.

    Args:
        name_or_factory: a registered name (see :func:`attention_names`) or any callable
            ``channels, **kwargs -> nn.Module``.
        channels: ``C`` of the tensors the module will see.
        **kwargs: passed to the factory (e.g. ``reduction=8``).

    Returns:
        The module; it maps (B, C, H, W) to (B, C, H, W).
    """
    _validate.positive_int("channels", channels)
    if isinstance(name_or_factory, str):
        key = normalise_name(name_or_factory)
        if key not in _REGISTRY:
            raise ValueError(
                f"attention must be one of {attention_names()} or a callable, "
                f"got {name_or_factory!r}"
            )
        factory = _REGISTRY[key]
    elif callable(name_or_factory):
        factory = name_or_factory
    else:
        raise TypeError(
            f"attention must be a str or a callable, got {type(name_or_factory).__name__}"
        )
    module = factory(channels, **kwargs)
    if not isinstance(module, nn.Module):
        raise TypeError(
            f"attention factory {name_or_factory!r} must return an nn.Module, "
            f"got {type(module).__name__}"
        )
    return module

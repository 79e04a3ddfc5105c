"""Custom autograd Functions of the attention gates: global statistics, and memory-lean
λ-mixed CBAM (save ``x`` and the small gates, recompute the rest in backward).

For ``x`` (B, C, H, W), channel gate ``c`` (B, C, 1, 1), spatial gate ``s`` (B, 1, H, W)
and λ (0-dim), λ-mixed CBAM is::

    d  = [mean_HW(x), max_HW(x)]                        (2, B, C) -> c = σ(MLP(d))
    x' = x · c                                          (channel-attended input)
    p  = [mean_C(x'), max_C(x')]                        (B, 2, H, W) -> s = σ(conv(p))
    x̃  = (1 − λ)·x + λ·x'·s

Plain autograd keeps ``x'`` and the products alive for backward (two extra full-size
tensors per block) and allocates a new full-size tensor for every product. The Functions
here keep only ``x`` (which the caller holds anyway), ``c``, ``s``, λ and the maxima, and
recompute ``x'`` in backward. Each full-size tensor they allocate is used as the work space
of the following steps (in-place products), so a training step of λ-mixed CBAM allocates
one full-size tensor forward (``x'``, which becomes ``x̃``) and four backward (``g·x``,
which becomes ``dL/dx``, and one gradient of ``x`` for each of the other two Functions).

Gradients, with ``g = dL/dx̃``::

    dL/dx = g·((1 − λ) + λ·c·s),   dL/dc = λ·Σ_HW(g·x·s),   dL/ds = λ·Σ_C(g·x·c),
    dL/dλ = Σ(g·x·(c·s − 1))
    pool:  dL/dx' = g_mean / C + g_max · 1[x' = max] / #ties   (as ``amax``), then
           dL/dx += dL/dx' · c,   dL/dc += Σ_HW(dL/dx' · x)
    stats: dL/dx += g_mean / HW + g_max · 1[x = max_HW] / #ties

The switch: :func:`set_fast_attention` (or the environment variable
``PREATTN_FAST_ATTENTION=0`` before the first import) turns these Functions, and the
in-place mixing of eager inference, off: every attention then runs plain PyTorch operators
(the reference the tests compare with, and a fallback if a Function misbehaves on some
backend). :func:`use_fast_attention` tells which is on; :func:`fast_attention` switches for
a ``with`` block. Tracing, export and ``torch.compile`` always record the plain operators.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch

__all__ = [
    "FAST_ATTENTION_ENV",
    "GatedMix",
    "ScaledChannelPool",
    "SpatialStats",
    "amax_channels",
    "fast_attention",
    "mean_channels",
    "mean_hw",
    "set_fast_attention",
    "stack_pooled",
    "sum_hw",
    "use_fast_attention",
]

FAST_ATTENTION_ENV = "PREATTN_FAST_ATTENTION"
_fast = os.environ.get(FAST_ATTENTION_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def use_fast_attention() -> bool:
    """Whether eager attention uses the Functions of this module (and in-place inference)."""
    return _fast


def set_fast_attention(enable: bool = True) -> None:
    """Use this module's Functions in eager mode (``True``, the default) or plain PyTorch
    operators everywhere (``False``); same numbers up to float rounding either way."""
    global _fast
    if not isinstance(enable, bool):
        raise TypeError(f"enable must be a bool, got {enable!r}")
    _fast = enable


@contextlib.contextmanager
def fast_attention(enable: bool) -> Iterator[None]:
    """:func:`set_fast_attention` for the ``with`` block, then back to what it was."""
    before = use_fast_attention()
    set_fast_attention(enable)
    try:
        yield
    finally:
        set_fast_attention(before)


def stack_pooled(maps: list[torch.Tensor]) -> torch.Tensor:
    """Stack (B, H, W) maps into (B, len(maps), H, W) laid out channels-last.

    The spatial attention's 2 -> 1 convolution runs about 3x faster (forward + backward,
    oneDNN on CPU) on a channels-last input than on a contiguous one.
    """
    return torch.stack(maps, dim=-1).permute(0, 3, 1, 2)


def _channels_last(t: torch.Tensor) -> bool:
    """``t`` (B, C, H, W) is laid out channels-last (and not also contiguous)."""
    return (
        t.dim() == 4
        and not t.is_contiguous()
        and t.is_contiguous(memory_format=torch.channels_last)
    )


def _hw_rows(t: torch.Tensor) -> torch.Tensor:
    """A channels-last (B, C, H, W) tensor as (B, H·W, C): a contiguous view."""
    b, c = t.shape[:2]
    return t.permute(0, 2, 3, 1).reshape(b, -1, c)


def _gemm_sums(t: torch.Tensor) -> bool:
    """Sum ``t`` over H, W by a matrix product: a channels-last bfloat16/float16 tensor on
    the CPU, where the reduction kernel over the strided H, W axes is several times
    slower than one pass (``python benchmarks/profile_recipe.py``)."""
    return (
        t.device.type == "cpu" and t.dtype in (torch.bfloat16, torch.float16) and _channels_last(t)
    )


def sum_hw(t: torch.Tensor) -> torch.Tensor:
    """``Σ_HW t``: (B, C, H, W) -> (B, C) in ``t``'s dtype.

    A channels-last bfloat16/float16 CPU tensor is summed as one batched product
    ``ones(B, 1, H·W) @ t`` viewed as (B, H·W, C): the GEMM accumulates in float32 and
    rounds the sum once to ``t``'s dtype (relative error ≤ 2⁻⁸ for bfloat16, the
    precision of ``t`` itself). Any other tensor: ``t.sum(dim=(2, 3))``.
    """
    if _gemm_sums(t):
        ones = t.new_ones(t.shape[0], 1, t.shape[2] * t.shape[3])
        return torch.bmm(ones, _hw_rows(t)).squeeze(1)
    return t.sum(dim=(2, 3))


def mean_hw(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``mean_HW(t)``: (B, C, H, W) -> (B, C) in ``dtype``; :func:`sum_hw` (then divided in
    ``dtype``) where that is the fast way, ``t.mean(dim=(2, 3), dtype=dtype)`` otherwise."""
    if _gemm_sums(t):
        return sum_hw(t).to(dtype) / (t.shape[2] * t.shape[3])
    return t.mean(dim=(2, 3), dtype=dtype)


def mean_channels(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``mean_C(t)``: (B, C, H, W) -> (B, H, W) in ``dtype``.

    A channels-last bfloat16/float16 CPU tensor: one batched product ``t @ ones(C)`` over
    its (B, H·W, C) rows, the sum rounded once to ``t``'s dtype, then divided in
    ``dtype``; ``t.mean(dim=1, dtype=dtype)`` there first converts all of ``t`` to
    ``dtype`` (a full-size float32 copy). Any other tensor: that ``mean``."""
    if _gemm_sums(t):
        b, c, h, w = t.shape
        total = torch.bmm(_hw_rows(t), t.new_ones(b, c, 1))
        return total.view(b, h, w).to(dtype) / c
    return t.mean(dim=1, dtype=dtype)


def amax_channels(t: torch.Tensor) -> torch.Tensor:
    """``max_C(t)``: (B, C, H, W) -> (B, 1, H, W), exact in every layout.

    A channels-last tensor is reduced as the 2-D (B·H·W, C) view of its memory: on the
    CPU about twice as fast as ``amax(dim=1)`` of the 4-D tensor, the same values."""
    if _channels_last(t):
        b, c, h, w = t.shape
        return _hw_rows(t).reshape(-1, c).amax(dim=1).view(b, 1, h, w)
    return t.amax(dim=1, keepdim=True)


def _peak_mask(
    t: torch.Tensor, peak: torch.Tensor, dim: int | tuple[int, int], out: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``1[t = peak]`` written into ``out`` (``t``'s shape and dtype; may be ``t`` itself),
    and the number of ties along ``dim`` (kept as size-1 dimensions).

    One comparison in the floating dtype: no boolean and integer copies of the full tensor
    as in ``amax``'s own backward.
    """
    torch.eq(t, peak, out=out)
    return out, out.sum(dim=dim, keepdim=True)


class SpatialStats(torch.autograd.Function):
    """``[mean_HW(x), max_HW(x)]``: (B, C, H, W) -> (2, B, C) in ``dtype``.

    The max's gradient is split over ties like ``amax``'s; both gradients are written into
    one full-size tensor.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        peak = x.amax(dim=(2, 3), keepdim=True)
        ctx.save_for_backward(x, peak)
        return torch.stack([mean_hw(x, dtype), peak.flatten(1).to(dtype)])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        x, peak = ctx.saved_tensors
        grad_x = torch.eq(x, peak, out=torch.empty_like(x))
        ties = sum_hw(grad_x)[:, :, None, None]
        g_mean, g_max = (g.to(x.dtype)[:, :, None, None] for g in grad)
        grad_x.mul_(g_max / ties).add_(g_mean / (x.shape[2] * x.shape[3]))
        return grad_x, None


class ScaledChannelPool(torch.autograd.Function):
    """``[mean_C(x·c), max_C(x·c)]`` in ``order`` as (B, 2, H, W) in ``c``'s dtype.

    Also returns ``x·c`` itself (B, C, H, W), outside autograd, as the work space of
    :class:`GatedMix` (which overwrites it with the block's output).
    """

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, c: torch.Tensor, max_first: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        scaled = x * c.to(x.dtype)
        mean = mean_channels(scaled, c.dtype)
        peak = amax_channels(scaled)
        ctx.save_for_backward(x, c, peak)
        ctx.max_first = max_first
        ctx.mark_non_differentiable(scaled)
        ctx.set_materialize_grads(False)
        maps = [peak.squeeze(1).to(c.dtype), mean]
        return stack_pooled(maps if max_first else maps[::-1]), scaled

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor, _: Any) -> tuple[torch.Tensor | None, ...]:
        x, c, peak = ctx.saved_tensors
        if grad is None:
            return None, None, None
        g_peak, g_mean = grad.split(1, dim=1) if ctx.max_first else grad.split(1, dim=1)[::-1]
        scaled = x * c.to(x.dtype)
        g_scaled, ties = _peak_mask(scaled, peak, 1, out=scaled)
        g_scaled.mul_((g_peak / ties).to(x.dtype)).add_((g_mean / x.shape[1]).to(x.dtype))
        grad_c = _spatial_dots(g_scaled, x).to(c.dtype).view_as(c)
        return g_scaled.mul_(c.to(x.dtype)), grad_c, None


def _spatial_dots(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``Σ_HW a·b`` per (batch, channel) of two (B, C, H, W) tensors of one layout: (B, C).

    Contiguous: a batched dot product over the rows, no full-size temporary. Channels-last:
    one product and a reduction (``einsum`` would copy both operands into its batched
    matrix-product layout: two full-size copies instead of one)."""
    if a.is_contiguous() and b.is_contiguous():
        return torch.einsum("bcn,bcn->bc", _rows(a), _rows(b))
    return sum_hw(a * b)


def _rows(t: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) as (B, C, H·W): a view for contiguous and channels-last tensors."""
    b, c = t.shape[:2]
    if t.is_contiguous():
        return t.view(b, c, -1)
    return t.permute(0, 2, 3, 1).reshape(b, -1, c).transpose(1, 2)


class GatedMix(torch.autograd.Function):
    """``(1 − λ)·x + λ·x'·s`` for ``x' = x·c``, gates ``c`` (B, C, 1, 1), ``s`` (B, 1, H, W)
    and a 0-dim λ; ``λ = None``: uncontrolled CBAM, ``x'·s`` (the formulas with λ = 1,
    no λ gradient and no ``(1 − λ)·x`` pass).

    ``scaled`` is ``x'`` as returned by :class:`ScaledChannelPool`; it is overwritten with
    the result (no new full-size tensor) and must not be used afterwards.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        c: torch.Tensor,
        s: torch.Tensor,
        lam: torch.Tensor | None,
        scaled: torch.Tensor,
    ) -> torch.Tensor:
        ctx.controlled = lam is not None
        if lam is None:  # uncontrolled: x'·s, the λ = 1 of the formulas
            lam = c.new_ones(())
        ctx.save_for_backward(x, c, s, lam)
        ctx.mark_dirty(scaled)
        lam_c = lam.to(c.dtype)
        if not ctx.controlled:
            return scaled.mul_(s.to(x.dtype))
        scaled.mul_((lam_c * s).to(x.dtype))
        return scaled.addcmul_(x, (1.0 - lam_c).to(x.dtype))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, c, s, lam = ctx.saved_tensors
        lam_c = lam.to(c.dtype)
        product = grad * x
        gx = _rows(product)  # (B, C, HW), a view
        # contractions as batched matrix products, no full-size temporaries: one pass for
        # Σ_HW g·x·s and Σ_HW g·x (B, 2, C), one for Σ_C g·x·c (B, 1, HW). [s; 1] is the
        # left factor: (B, 2, HW)·(B, HW, C) runs several times faster on CPU than the
        # same product as (B, C, HW)·(B, HW, 2)
        s_rows = _rows(s.to(gx.dtype))  # (B, 1, HW)
        sides = torch.cat([s_rows, torch.ones_like(s_rows)], dim=1)
        sums = torch.bmm(sides, gx.transpose(1, 2)).to(c.dtype)
        sum_hw = sums[:, 0, :, None, None]  # Σ_HW g·x·s, (B, C, 1, 1)
        sum_c = torch.bmm(c.to(gx.dtype).flatten(1).unsqueeze(1), gx).to(s.dtype)
        # Σ_C g·x·c, (B, 1, H, W), in s's own strides: a channels-last s (from the 7×7
        # convolution of channels-last maps) must get a channels-last gradient, or
        # oneDNN runs that convolution's backward on a much slower path
        sum_c = torch.empty_like(s).copy_(sum_c.view_as(s))
        grad_lam = (sum_hw * c).sum() - sums[:, 1].sum()
        # dL/dx = g·((1 − λ) + λ·c·s), written over g·x, which is no longer needed
        keep, scale = (1.0 - lam_c).to(x.dtype), (lam_c * s).to(x.dtype)
        grad_x = _outer_plus(keep, c.to(x.dtype), scale, out=product).mul_(grad)
        if not ctx.controlled:
            return grad_x, sum_hw, sum_c, None, None
        return grad_x, lam_c * sum_hw, lam_c * sum_c, grad_lam.to(lam.dtype), None


def _outer_plus(
    keep: torch.Tensor, c: torch.Tensor, s: torch.Tensor, out: torch.Tensor
) -> torch.Tensor:
    """``keep + c·s`` written into ``out`` (B, C, H, W), for a 0-dim ``keep``, ``c``
    (B, C, 1, 1) and ``s`` (B, 1, H, W), all in ``out``'s dtype.

    Per sample a product of rank two, ``[s, 1]·[c; keep]``, so one ``bmm`` writes it into
    ``out``'s rows (K = 2, accumulated in float32: each element ``keep + c·s`` is rounded
    once, as ``addcmul``'s). ``addcmul`` broadcasting the two gates into a channels-last
    bfloat16 tensor ran about 10x slower than this on the CPU, and ``baddbmm`` first
    copies its broadcast input into ``out`` (``python benchmarks/profile_recipe.py``).
    Other dtypes and devices, and layouts without a row view, use ``addcmul``."""
    b, channels = c.shape[:2]
    s_flat = s.reshape(b, -1)  # (B, HW)
    c_flat = c.reshape(b, channels)
    if out.device.type != "cpu" or out.dtype not in (torch.bfloat16, torch.float16):
        torch.addcmul(keep, c, s, out=out)  # float32 and float64: as fast, unchanged
    elif _channels_last(out):  # rows (B, HW, C) = [s, 1] (B, HW, 2) @ [c; keep] (B, 2, C)
        left = torch.stack([s_flat, torch.ones_like(s_flat)], dim=2)
        right = torch.stack([c_flat, keep.expand(b, channels)], dim=1)
        torch.bmm(left, right, out=_hw_rows(out))
    elif out.is_contiguous():  # rows (B, C, HW) = [c, keep] (B, C, 2) @ [s; 1] (B, 2, HW)
        left = torch.stack([c_flat, keep.expand(b, channels)], dim=2)
        right = torch.stack([s_flat, torch.ones_like(s_flat)], dim=1)
        torch.bmm(left, right, out=_rows(out))
    else:
        torch.addcmul(keep, c, s, out=out)
    return out

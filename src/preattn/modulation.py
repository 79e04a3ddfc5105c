"""How much attention actually changes the tensor it acts on: the *modulation*.

A block with gate attention (``A(z) = z · g``, CBAM, SE, ECA, channel or spatial
attention) hands on ``z · w``, the tensor ``z`` (B, C, H, W) times an effective multiplier

    w = (1 − λ) + λ·g                  controlled (λ a scalar or one per channel)
    w = 1 + λ·(g / mean_CHW(g) − 1)    controlled, ``lam_param="depth"``
    w = g                              uncontrolled

The **modulation** of the block is the coefficient of variation of ``w`` over (C, H, W),
per sample, averaged over the batch::

    modulation = mean_b  std_CHW(w_b) / mean_CHW(w_b)          (population std)

Why the variation and not ``w`` itself: the tensor goes into a convolution followed by a
BatchNorm. A factor common to the whole tensor passes through the (linear) convolution and
is divided out again by the BatchNorm (up to its ε), so a uniform ``w`` — however far from 1
— leaves ``F``'s output unchanged; only how ``w`` differs between channels and positions
reaches ``F``. Dividing by the mean makes the number scale-free, so a gate at 0.5
everywhere and a gate at 1 everywhere both give 0: attention that is effectively off.

For attention that is not a gate, the same idea without ``w``: with ``y = mix(z, A(z))``
and ``c = ⟨y, z⟩ / ⟨z, z⟩`` (the best scalar), per sample ``‖y − c·z‖ / ‖z‖``, averaged
over the batch.

With λ = 0.1 through the default sigmoid, ``w`` varies by at most a tenth of the gate's
own variation: :func:`~preattn.check.check` reports "effectively off" (``info``, with what
to try) below :data:`MODULATION_FLOOR`.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MODULATION_FLOOR", "gate_modulation", "modulation_of", "residual_modulation"]

# below this, a block's attention changes its input by less than 2 % (coefficient of
# variation): a trained default SimpleCNN sits near 0.5-1 %, uncontrolled CBAM near 30 %
MODULATION_FLOOR = 0.02


def gate_modulation(w: torch.Tensor) -> float:
    """Mean over the batch of ``std / mean`` of ``w`` (B, ...) over its other axes.

    ``w`` may be broadcastable to the tensor it multiplies ((B, C, 1, 1) for a channel
    gate, (B, 1, H, W) for a spatial one): repeating values along an axis changes neither
    the mean nor the population std."""
    flat = w.detach().double().flatten(1)
    mean = flat.mean(dim=1)
    std = flat.std(dim=1, correction=0)
    return float((std / mean.abs().clamp_min(1e-12)).mean())


def residual_modulation(z: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over the batch of ``‖y − c·z‖ / ‖z‖`` with the best scalar ``c`` per sample."""
    z2, y2 = z.detach().double().flatten(1), y.detach().double().flatten(1)
    zz = (z2 * z2).sum(dim=1).clamp_min(1e-300)
    c = (y2 * z2).sum(dim=1) / zz
    rest = (y2 - c[:, None] * z2).norm(dim=1)
    return float((rest / zz.sqrt()).mean())


@torch.no_grad()
def modulation_of(attention: nn.Module, mix: nn.Module | None, z: torch.Tensor) -> float:
    """The modulation of ``mix(z, attention(z))`` (``attention(z)`` when ``mix`` is None),
    for the tensor ``z`` (B, C, H, W) the attention acts on."""
    gate = getattr(attention, "gate", None)
    if gate is not None:
        g = gate(z).float()
        w = g if mix is None else mix.multiplier(g)
        return gate_modulation(w)
    attended = attention(z)
    y = attended if mix is None else mix(z, attended)
    return residual_modulation(z, y)

"""Optimiser with decay-free parameter groups, and the per-step LR schedule.

Weight decay applies to conv and linear weights only: never to λ, BatchNorm parameters or
biases (decaying λ would pull it towards 0 and switch attention off).

Schedule (per optimiser step ``t`` of ``T``, linear warm-up over ``W`` steps)::

    lr(t) = lr · (t + 1) / W                                  t < W
    lr(t) = lr · ½ (1 + cos(π (t − W) / (T − W)))             t ≥ W
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..mixing import LambdaMix

__all__ = ["WarmupCosine", "build_optimizer", "parameter_groups"]

_NO_DECAY_MODULES = (LambdaMix, nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def parameter_groups(
    model: nn.Module, weight_decay: float, lam_lr_scale: float = 1.0
) -> list[dict]:
    """Decayed weights, and λ / norm parameters / biases without decay.

    With ``lam_lr_scale != 1`` the λ parameters form a third group (no decay) whose
    ``lr_scale`` is ``lam_lr_scale``: its learning rate is ``lam_lr_scale · lr(t)``. Every
    group carries ``lr_scale`` (1 for the others)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    lam: list[nn.Parameter] = []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            if lam_lr_scale != 1.0 and isinstance(module, LambdaMix):
                lam.append(param)
                continue
            exempt = isinstance(module, _NO_DECAY_MODULES) or name == "bias" or param.ndim <= 1
            (no_decay if exempt else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "lr_scale": 1.0},
        {"params": no_decay, "weight_decay": 0.0, "lr_scale": 1.0},
    ]
    if lam:
        groups.append({"params": lam, "weight_decay": 0.0, "lr_scale": float(lam_lr_scale)})
    return groups


def build_optimizer(
    model: nn.Module,
    name: str,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    lam_lr_scale: float = 1.0,
) -> torch.optim.Optimizer:
    """``sgd`` (Nesterov momentum) or ``adamw`` over :func:`parameter_groups`; each group's
    initial learning rate is ``lr · lr_scale``."""
    groups = parameter_groups(model, weight_decay, lam_lr_scale)
    for group in groups:
        group["lr"] = lr * group["lr_scale"]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"optimizer must be one of ['sgd', 'adamw'], got {name!r}")


class WarmupCosine:
    """LR factor for ``LambdaLR``: linear warm-up over ``warmup`` steps, then cosine to 0."""

    def __init__(self, total_steps: int, warmup_steps: int) -> None:
        self.total_steps = max(int(total_steps), 1)
        self.warmup_steps = min(max(int(warmup_steps), 0), self.total_steps)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

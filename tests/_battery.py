"""The contract battery's networks and λ designs (``tests/test_contracts.py``), and the
golden-logit cases built from them (``tests/golden/``).

Small widths keep every network a few thousand parameters, with attention in the stages
listed. A λ design is the :class:`~preattn.AttentionSpec` fields that say how λ controls the
attention (:mod:`preattn.mixing`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from _helpers import randomise_batchnorm
from preattn import AttentionSpec
from preattn.mixing import LambdaMix
from preattn.models import create_model

SIZE = 8
CLASSES = 6  # the synthetic set's
NETWORKS: dict[str, dict[str, Any]] = {
    "simplecnn": {"width": 0.25},
    "resnet18": {"width": 0.125, "stages": [1, 2, 3, 4]},
    "resnet34": {"width": 0.125, "stages": [1, 4]},
    "resnet50": {"width": 0.125, "stages": [1, 2, 3, 4]},
    "resnet101": {"width": 0.0625, "stages": [3]},
    "resnet152": {"width": 0.0625, "stages": [3]},
    "mobilenet_v2": {"width": 0.25, "stages": [1, 2, 3, 4, 5]},
    "mobilenet_v3_small": {"width": 0.25, "stages": [1, 2, 3, 4]},
    "mobilenet_v3_large": {"width": 0.25, "stages": [1, 5]},
}
# every λ parameterisation and shape, fixed and learnable, with warm-up, and none
LAM_DESIGNS: dict[str, dict[str, Any]] = {
    "sigmoid": {"lam": 0.3},  # the specification's: λ = σ(logit), one per block, learned
    "linear": {"lam": 0.3, "lam_param": "linear"},
    "depth": {"lam": 0.5, "lam_param": "depth"},
    "channel": {"lam": 0.3, "lam_shape": "channel"},
    "fixed": {"lam": 0.3, "lam_learnable": False},
    "warmup": {"lam": 0.3, "lam_warmup_steps": 3},
    "uncontrolled": {"lam": None},
}

Case = tuple[str, str, str, str]  # network, attention, placement, λ design

GOLDEN_FILE = Path(__file__).resolve().parent / "golden" / "logits.json"
# float32 CPU kernels differ with the thread count and instruction set by up to about 4e-5 of
# the largest logit on the deepest networks here (measured: one against two threads, the fast
# against the reference path); the golden comparison allows this fraction of it
GOLDEN_TOLERANCE = 2e-4


def spec_of(case: Case) -> AttentionSpec:
    """The attention spec of ``case``."""
    _, attention, placement, design = case
    return AttentionSpec(attention=attention, placement=placement, **LAM_DESIGNS[design])


def battery_input(batch: int = 2, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``batch`` fixed random images (batch, 3, SIZE, SIZE)."""
    g = torch.Generator().manual_seed(1)
    return torch.randn(batch, 3, SIZE, SIZE, generator=g).to(dtype)


def randomise_lambdas(module: nn.Module, seed: int = 0) -> nn.Module:
    """Move every stored λ by a different small amount (±0.1 on the stored value, per
    channel for a per-channel λ) and put a warm-up half way, so that each λ's value, shape
    and warm-up enter the output (freshly built, every λ is the same number)."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, LambdaMix):
            with torch.no_grad():
                m.raw.add_(torch.rand(m.raw.shape, generator=g) * 0.2 - 0.1)
                if m.warmup_steps:
                    m.warmup_step.fill_(m.warmup_steps // 2 + 1)
    return module


def calibrate_batchnorm(module: nn.Module, batch: torch.Tensor) -> nn.Module:
    """Set every BatchNorm's running statistics to those of ``batch`` (one forward in
    training mode, without gradients), as training leaves them: the eval-mode activations
    then keep their scale through a deep network, so that the logits depend on the input and
    on every layer, not only on the biases."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: after one batch, that batch's statistics
    with torch.no_grad():
        module.train()(batch)
    for m in norms:
        m.momentum = 0.1
    return module


def golden_model(case: Case) -> nn.Module:
    """The network of ``case`` in eval mode, float32: built through
    :func:`preattn.models.create_model` from seed 0, BatchNorm affine parameters made
    non-trivial (:func:`randomise_batchnorm`) and its statistics those of a calibration batch
    (:func:`calibrate_batchnorm`), and every λ moved off its initial value
    (:func:`randomise_lambdas`)."""
    name = case[0]
    torch.manual_seed(0)
    model = create_model(
        name,
        image_size=SIZE,
        num_classes=CLASSES,
        in_chans=3,
        spec=spec_of(case),
        **NETWORKS[name],
    )
    calibration = torch.randn(8, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    calibrate_batchnorm(randomise_batchnorm(model), calibration)
    return randomise_lambdas(model).eval()


def golden_logits(model: nn.Module) -> torch.Tensor:
    """``model``'s logits (2, CLASSES) of :func:`battery_input`."""
    with torch.no_grad():
        return model(battery_input())


def golden_cases() -> list[Case]:
    """Every registered network (CBAM before the block, the specification's λ); SimpleCNN
    with every attention, every placement and every λ design."""
    from preattn import PLACEMENTS, attention_names
    from preattn.models.factory import model_names

    cases = {(m, "cbam", "pre", "sigmoid") for m in model_names()}
    cases |= {("simplecnn", a, "pre", "sigmoid") for a in attention_names()}
    cases |= {("simplecnn", "cbam", p, "sigmoid") for p in PLACEMENTS}
    cases |= {("simplecnn", "cbam", "pre", d) for d in LAM_DESIGNS}
    return sorted(cases)


def case_key(case: Case) -> str:
    return "/".join(case)


def read_golden() -> dict[str, list[list[float]]]:
    """The frozen logits of :data:`GOLDEN_FILE`, by :func:`case_key`."""
    return json.loads(GOLDEN_FILE.read_text())["logits"]

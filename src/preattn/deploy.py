"""Inference deployment: BatchNorm folding (``fuse``) and ONNX export (``export_onnx``).

Folding: for a conv ``y = W * x + b`` followed by eval-mode BatchNorm
``z = γ (y − μ) / √(σ² + ε) + β``, the single conv ``W' = W · s``, ``b' = (b − μ) · s + β``
with ``s = γ / √(σ² + ε)`` (per output channel) computes ``z``. PyTorch's own
``torch.nn.utils.fusion.fuse_conv_bn_eval`` does the arithmetic; ``fuse`` finds the pairs.
"""

from __future__ import annotations

import copy
import importlib.util
import itertools
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ._io import atomic_write
from .attention import SpatialAttention
from .blocks import BasicTransform, BottleneckTransform
from .models.resnet import ResNet

__all__ = ["MIN_OPSET", "export_onnx", "fuse", "onnx_opset"]

# (conv, bn) attribute pairs of modules whose forward runs the conv straight into the BN
_PAIRS: dict[type, tuple[tuple[str, str], ...]] = {
    BasicTransform: (("conv1", "bn1"), ("conv2", "bn2")),
    BottleneckTransform: (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")),
    ResNet: (("conv1", "bn1"),),
    SpatialAttention: (("conv", "bn"),),
}


# the same for other libraries' classes, by qualified name (no import needed)
_NAMED_PAIRS: dict[str, tuple[tuple[str, str], ...]] = {
    "torchvision.models.resnet.ResNet": (("conv1", "bn1"),),
    "timm.models.resnet.ResNet": (("conv1", "bn1"),),
}


def _pairs_of(module: nn.Module) -> tuple[tuple[str, str], ...]:
    cls = type(module)
    return _PAIRS.get(cls) or _NAMED_PAIRS.get(f"{cls.__module__}.{cls.__qualname__}", ())


def _fold(parent: nn.Module, conv_name: str, bn_name: str) -> bool:
    conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
    if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
        return False
    if not bn.track_running_stats or bn.running_mean is None:
        return False
    setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
    setattr(parent, bn_name, nn.Identity())
    return True


def fuse(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Fold every BatchNorm that directly follows a conv into that conv, for inference.

    Covers the library's transforms, skips, stems and spatial attention, and any
    ``nn.Sequential`` with a Conv2d immediately followed by a BatchNorm2d (retrofitted
    torchvision/timm blocks included). Returns the fused model in eval mode (a copy unless
    ``inplace``); its eval outputs equal the original's up to float rounding.
    """
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    for module in list(model.modules()):
        for conv_name, bn_name in _pairs_of(module):
            _fold(module, conv_name, bn_name)
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for first, second in itertools.pairwise(names):
                _fold(module, first, second)
    return model


# the lowest opset torch.onnx.export(dynamo=True) writes without a version conversion
MIN_OPSET = 18


def onnx_opset(path: str | Path) -> int:
    """The default-domain opset an ONNX file was written with."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def export_onnx(
    model: nn.Module,
    path: str | Path,
    input_shape: Sequence[int],
    *,
    opset: int = MIN_OPSET,
) -> Path:
    """Export ``model`` (eval mode) to ONNX with a dynamic batch axis.

    Args:
        model: the network; exported as-is (call :func:`fuse` first to fold BatchNorm).
        path: output ``.onnx`` file (written atomically).
        input_shape: ``(N, C, H, W)`` of the example input; ``N`` becomes dynamic (the
            example is traced with a batch of ``max(N, 2)``).
        opset: ONNX opset, at least :data:`MIN_OPSET` (18): PyTorch's exporter writes 18
            and later, and converting down to 17 fails for the attention's reductions.

    Uses PyTorch's current exporter (``torch.onnx.export(..., dynamo=True)``: the model is
    captured with ``torch.export``, batch dimension dynamic). Global pooling is exported as
    ``ReduceMean`` / ``ReduceMax`` (the library uses ``mean``/``amax``, not adaptive
    pooling). Input ``"input"``, output ``"logits"``.
    """
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < MIN_OPSET:
        raise ValueError(f"opset must be an int >= {MIN_OPSET}, got {opset!r}")
    for package in ("onnx", "onnxscript"):
        if importlib.util.find_spec(package) is None:
            raise ImportError(
                f"export_onnx needs {package}: install it with pip install 'preattn[onnx]'"
            )
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"input_shape must be (N, C, H, W) with positive sizes, got {shape}")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"onnx path {path} is a directory; give a file name such as model.onnx")
    was_training = model.training
    model.eval()
    parameter = next(model.parameters(), None)
    # torch.export specialises a dimension of size 1: trace with a batch of at least 2
    example = torch.randn(
        max(shape[0], 2), *shape[1:], device=parameter.device if parameter is not None else "cpu"
    )
    path = Path(path)

    def write(tmp: Path) -> None:
        # the current exporter: torch.export with a dynamic batch dimension, then ONNX
        program = torch.onnx.export(
            model,
            (example,),
            input_names=["input"],
            output_names=["logits"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),  # by position: any arg name
            opset_version=opset,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
        program.save(str(tmp))

    try:
        atomic_write(path, write)
    finally:
        model.train(was_training)
    return path

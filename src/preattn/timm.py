"""preattn's networks in timm's registry: ``import preattn.timm``, then
``timm.create_model("preattn_resnet50", placement="pre", num_classes=10, ...)``.

Registers ``preattn_resnet18/34/50/101/152`` and ``preattn_simplecnn``, each built through
timm's ``build_model_with_cfg`` with a ``pretrained_cfg`` (ImageNet input and
normalisation for the ResNets, 28×28 Fashion-MNIST for SimpleCNN). Every keyword of
:class:`~preattn.models.ResNet` / :class:`~preattn.models.SimpleCNN` passes through,
the :class:`~preattn.AttentionSpec` fields included, with timm's own ``num_classes``,
``in_chans``, ``global_pool``, ``drop_rate``, ``drop_path_rate``, ``features_only`` and
``out_indices``.

No weights are published: ``pretrained=True`` needs a file, e.g. a run's weights::

    timm.create_model("preattn_simplecnn", pretrained=True, num_classes=10, in_chans=1,
                      pretrained_cfg_overlay=dict(file="runs/fm/model.safetensors"))

The overlay must also state the run's ``num_classes`` and ``input_size`` when they differ
from the registered cfg's (timm otherwise drops the classifier or adapts the first conv to
another channel count): :func:`run_overlay` builds the whole overlay from a run directory::

    timm.create_model("preattn_resnet18", pretrained=True, num_classes=10,
                      pretrained_cfg_overlay=preattn.timm.run_overlay("runs/r18"))

Needs the optional ``timm`` extra (``pip install 'preattn[timm]'``).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

try:
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "preattn.timm needs timm: install it with pip install 'preattn[timm]'"
    ) from exc

from .models.resnet import ResNet
from .models.simple import SimpleCNN

__all__ = ["MODEL_NAMES", "run_overlay"]

_RESNETS = {
    "preattn_resnet18": ((2, 2, 2, 2), "basic"),
    "preattn_resnet34": ((3, 4, 6, 3), "basic"),
    "preattn_resnet50": ((3, 4, 6, 3), "bottleneck"),
    "preattn_resnet101": ((3, 4, 23, 3), "bottleneck"),
    "preattn_resnet152": ((3, 8, 36, 3), "bottleneck"),
}
MODEL_NAMES = (*_RESNETS, "preattn_simplecnn")


def _cfg(**overrides: Any) -> dict[str, Any]:
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,
        "interpolation": "bilinear",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "conv1",
        "classifier": "fc",
        "license": "apache-2.0",
        **overrides,
    }


default_cfgs = generate_default_cfgs(
    {
        **{f"{name}.untrained": _cfg() for name in _RESNETS},
        "preattn_simplecnn.untrained": _cfg(
            num_classes=10,
            input_size=(1, 28, 28),
            pool_size=(14, 14),
            crop_pct=1.0,
            mean=(0.2860,),
            std=(0.3530,),
            first_conv="stem.0",
        ),
    }
)


def _resnet(variant: str, pretrained: bool = False, **kwargs: Any) -> ResNet:
    layers, transform = _RESNETS[variant]
    builder = partial(ResNet, layers, transform)
    return build_model_with_cfg(builder, variant, pretrained, **kwargs)


for _name in _RESNETS:
    _fn = partial(_resnet, _name)
    _fn.__name__ = _name  # type: ignore[attr-defined]
    _fn.__module__ = __name__
    _fn.__doc__ = f"{_name}: a preattn ResNet with timm's model API."
    globals()[_name] = register_model(_fn)


@register_model
def preattn_simplecnn(pretrained: bool = False, **kwargs: Any) -> SimpleCNN:
    """The notebook's SimpleCNN with timm's model API (default 10 classes, 1 channel)."""
    kwargs.setdefault("num_classes", 10)
    kwargs.setdefault("in_chans", 1)
    return build_model_with_cfg(SimpleCNN, "preattn_simplecnn", pretrained, **kwargs)


def run_overlay(run_dir: str | Path) -> dict[str, Any]:
    """``pretrained_cfg_overlay`` that loads a preattn run's weights through timm: the
    weights file, and the run's classes, input size and normalisation."""
    from .data.registry import DATASET_SPECS
    from .train.rundir import WEIGHTS_FILE, RunDir

    run = RunDir(run_dir)
    config, _ = run.read_config()
    weights, _ = run.load_weights()
    spec = DATASET_SPECS[config.dataset]
    size = config.image_size if spec.resizable and config.image_size else spec.image_size
    overlay: dict[str, Any] = {
        "file": str(run.path / WEIGHTS_FILE),
        "input_size": (spec.in_chans, size, size),
    }
    if "fc.weight" in weights:
        overlay["num_classes"] = int(weights["fc.weight"].shape[0])
    if spec.mean is not None and spec.std is not None:
        overlay["mean"], overlay["std"] = spec.mean, spec.std
    return overlay

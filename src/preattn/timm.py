"""preattn's networks in timm's registry: ``import preattn.timm``, then
``timm.create_model("preattn_resnet50", placement="pre", num_classes=10, ...)``.

Registers every network of :data:`preattn.models.MODELS` under the timm name its builder
declares (``preattn_resnet18/34/50/101/152``, ``preattn_mobilenetv2_100``,
``preattn_mobilenetv3_small_100``, ``preattn_mobilenetv3_large_100``,
``preattn_simplecnn``), each built through timm's ``build_model_with_cfg`` with a
``pretrained_cfg`` (ImageNet input and normalisation for the ResNets and MobileNets,
28×28 Fashion-MNIST for SimpleCNN). Every keyword of :class:`~preattn.models.ResNet` /
:class:`~preattn.models.MobileNet` / :class:`~preattn.models.SimpleCNN` passes through,
the :class:`~preattn.AttentionSpec` fields included, with timm's own ``num_classes``,
``in_chans``, ``global_pool``, ``drop_rate``, ``drop_path_rate``, ``features_only`` and
``out_indices``.

No weights are published: ``pretrained=True`` needs a file, e.g. a run's weights::

    timm.create_model("preattn_simplecnn", pretrained=True, num_classes=10, in_chans=1,
                      pretrained_cfg_overlay=dict(file="runs/fm/model.safetensors"))

A preattn run is rebuilt through timm in one call, :func:`create_model_from_run`: the
registered name of the run's model, the run's model arguments (channels, classes, stem,
width, attended stages, placement, attention, λ: the same ones training used,
:meth:`preattn.models.ModelConfig.arguments`) and its committed weights::

    model = preattn.timm.create_model_from_run("runs/r18")            # eval() it to predict
    features = preattn.timm.create_model_from_run("runs/r18", features_only=True)

:func:`run_overlay` is the ``pretrained_cfg_overlay`` part alone (the weights file, input
size, classes and normalisation).

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

import timm
from torch import nn

from .models.factory import MODELS, model_kwargs
from .train.load import read_saved_run
from .train.rundir import WEIGHTS_FILE

__all__ = ["MODEL_NAMES", "create_model_from_run", "run_overlay", "timm_name"]

# preattn's model name (preattn.models.create_model) -> its timm registry name
_REGISTERED = {model: entry.timm_name for model, entry in MODELS.items()}
MODEL_NAMES = tuple(_REGISTERED.values())


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
    {f"{entry.timm_name}.untrained": _cfg(**entry.timm_cfg) for entry in MODELS.values()}
)


def _build(model: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """timm's ``build_model_with_cfg`` for preattn model ``model``, with the input-dependent
    choices (the stem) made from the ``pretrained_cfg_overlay``'s input size by the same
    rule as :func:`preattn.models.create_model`, and a loading failure as one clear error."""
    entry = MODELS[model]
    overlay = kwargs.get("pretrained_cfg_overlay") or {}
    size = overlay.get("input_size")
    if size is not None:
        for key, value in model_kwargs(model, image_size=size[-1]).items():
            kwargs.setdefault(key, value)
    try:
        return build_model_with_cfg(entry.builder, entry.timm_name, pretrained, **kwargs)
    except RuntimeError as exc:
        if not pretrained:
            raise
        lines = [line.strip() for line in str(exc).strip().splitlines()]
        first = next((line for line in lines if not line.endswith(":")), lines[0])
        raise ValueError(
            f"{entry.timm_name}: the pretrained weights do not fit the model built from these "
            f"arguments ({first}); for a preattn run use "
            "preattn.timm.create_model_from_run(run), which passes the run's arguments"
        ) from None


for _model, _entry in MODELS.items():  # one timm entry point per network of the registry
    _fn = partial(_build, _model)
    _fn.__name__ = _entry.timm_name  # type: ignore[attr-defined]
    _fn.__module__ = __name__
    _fn.__doc__ = f"{_entry.timm_name}: preattn's {_entry.description} with timm's model API."
    globals()[_entry.timm_name] = register_model(_fn)


def timm_name(model: str) -> str:
    """The timm registry name of preattn model ``model`` (``resnet18`` -> ``preattn_resnet18``,
    ``mobilenet_v2`` -> ``preattn_mobilenetv2_100``)."""
    if model not in _REGISTERED:
        raise ValueError(
            f"model {model!r} has no timm registration; registered: {sorted(_REGISTERED)}"
        )
    return _REGISTERED[model]


def run_overlay(run_dir: str | Path) -> dict[str, Any]:
    """``pretrained_cfg_overlay`` that loads a preattn run's weights through timm: the
    weights file, and the run's classes, input size and normalisation."""
    saved = read_saved_run(run_dir)
    info = saved.info
    overlay: dict[str, Any] = {
        "file": str(saved.run.path / WEIGHTS_FILE),
        "input_size": (info.in_chans, info.image_size, info.image_size),
        "num_classes": info.num_classes,
        "label_names": list(info.classes),
    }
    if info.mean is not None and info.std is not None:
        overlay["mean"], overlay["std"] = info.mean, info.std
    return overlay


def create_model_from_run(run_dir: str | Path, **overrides: Any) -> nn.Module:
    """A preattn run rebuilt through ``timm.create_model`` with its committed weights.

    The registered name and every model argument come from the run (as training built the
    network); ``overrides`` go to ``timm.create_model`` on top of them (timm's own options:
    ``features_only=True``, ``out_indices``, ``num_classes=0`` for pooled features,
    ``drop_rate``, ...). An override that changes the shape of a trained weight
    (``in_chans``, ``width``) is refused by the weights' loading, naming the tensor.
    """
    saved = read_saved_run(run_dir)
    config, info, run = saved.config, saved.info, saved.run
    arguments = {**config.network.arguments(info), **overrides}
    overlay = run_overlay(run_dir)
    if arguments.get("num_classes") != info.num_classes:
        overlay.pop("num_classes")  # timm then leaves a new classifier out of the loading
    try:
        return timm.create_model(
            timm_name(config.model),
            pretrained=True,
            pretrained_cfg_overlay=overlay,
            **arguments,
        )
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ValueError(
            f"{run.path}: the run's weights do not fit the model built with {overrides} ({first})"
        ) from None

"""Add attention to an existing torchvision or timm ResNet, keeping its weights.

Each supported residual block is replaced, in place, by a :class:`~preattn.ResidualBlock`
whose branch ``F`` is the block's own modules in their original order and whose skip is the
block's own ``downsample``: no weight is copied or re-initialised. With the defaults
(``lam=0.0``, ``lam_param="linear"``) every converted block computes exactly what it did
before (``mix(z, A(z)) = z`` at λ = 0) while λ still receives gradient, so fine-tuning
starts from the pretrained function and learns how much attention to use
(:data:`RETROFIT_SPEC`).

The converted model's ``state_dict`` uses the original names (``layer1.0.conv1.weight``,
``layer2.0.downsample.0.weight``) plus the new ``attention.*`` and ``mix.*`` entries, so
the original pretrained checkpoints load into it with ``strict=False`` (only the new keys
are missing), and its own checkpoints load back strictly.

Supported blocks:

- ``torchvision.models.resnet.BasicBlock``: ``F = conv1, bn1, relu, conv2, bn2``
- ``torchvision.models.resnet.Bottleneck``: ``F = conv1, bn1, relu, conv2, bn2, relu, conv3, bn3``
- ``timm.models.resnet.BasicBlock``: ``F = conv1, bn1, drop_block, act1, aa, conv2, bn2[, se]``
- ``timm.models.resnet.Bottleneck``: ``F = conv1, bn1, act1, conv2, bn2, drop_block, act2, aa,
  conv3, bn3[, se]``, timm's ``drop_path`` applied to ``F``'s output
"""

from __future__ import annotations

import functools
import logging
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from torch import nn

from . import _validate
from .blocks import ResidualBlock
from .spec import AttentionSpec

__all__ = ["RETROFIT_SPEC", "SUPPORTED_BLOCKS", "retrofit"]

# the starting point of retrofit's options: Pattern-3, CBAM, λ = 0 stored linearly
RETROFIT_SPEC = AttentionSpec(lam=0.0, lam_param="linear")

logger = logging.getLogger("preattn")

_BRANCH_MODULES: dict[str, tuple[str, ...]] = {
    "torchvision.models.resnet.BasicBlock": ("conv1", "bn1", "relu", "conv2", "bn2"),
    "torchvision.models.resnet.Bottleneck": (
        "conv1",
        "bn1",
        "relu",
        "conv2",
        "bn2",
        "relu",
        "conv3",
        "bn3",
    ),
    "timm.models.resnet.BasicBlock": (
        "conv1",
        "bn1",
        "drop_block",
        "act1",
        "aa",
        "conv2",
        "bn2",
        "se",
        "drop_path",
    ),
    "timm.models.resnet.Bottleneck": (
        "conv1",
        "bn1",
        "act1",
        "conv2",
        "bn2",
        "drop_block",
        "act2",
        "aa",
        "conv3",
        "bn3",
        "se",
        "drop_path",
    ),
}
_OUTPUT_ACT = {
    "torchvision.models.resnet.BasicBlock": "relu",
    "torchvision.models.resnet.Bottleneck": "relu",
    "timm.models.resnet.BasicBlock": "act2",
    "timm.models.resnet.Bottleneck": "act3",
}
SUPPORTED_BLOCKS = tuple(_BRANCH_MODULES)


def _qualified_name(module: nn.Module) -> str:
    cls = type(module)
    return f"{cls.__module__}.{cls.__qualname__}"


class _Branch(nn.Sequential):
    """The original block's branch modules, run in order (a ReLU may appear twice)."""


def _branch_of(block: nn.Module, kind: str) -> nn.Module:
    modules: OrderedDict[str, nn.Module] = OrderedDict()
    for position, name in enumerate(_BRANCH_MODULES[kind]):
        module = getattr(block, name, None)
        if module is None or isinstance(module, nn.Identity):
            continue
        key = name if name not in modules else f"{name}_{position}"
        modules[key] = module
    return _Branch(modules)


def _to_original_names(
    branch: tuple[str, ...], module: nn.Module, state_dict: dict, prefix: str, metadata: Any
) -> dict:
    """State-dict hook: ``transform.conv1.weight`` -> ``conv1.weight``, ``skip.`` ->
    ``downsample.``, so the converted model saves under the original model's names."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        rest = key[len(prefix) :]
        head, _, tail = rest.partition(".")
        if head == "transform" and tail.split(".", 1)[0] in branch:
            state_dict[prefix + tail] = state_dict.pop(key)
        elif head == "skip":
            state_dict[prefix + "downsample." + tail] = state_dict.pop(key)
    return state_dict


def _from_original_names(branch: tuple[str, ...], state_dict: dict, prefix: str, *_: Any) -> None:
    """Load pre-hook: accept the original names (and the internal ones)."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        rest = key[len(prefix) :]
        head = rest.split(".", 1)[0]
        if head in branch:
            state_dict[prefix + "transform." + rest] = state_dict.pop(key)
        elif head == "downsample":
            state_dict[prefix + "skip." + rest.split(".", 1)[1]] = state_dict.pop(key)


def _keep_original_names(block: ResidualBlock, branch: tuple[str, ...]) -> None:
    """Save and load the converted block under the torchvision/timm block's own names: an
    original checkpoint loads with ``strict=False`` missing only the attention and λ."""
    block._register_state_dict_hook(functools.partial(_to_original_names, branch))
    block._register_load_state_dict_pre_hook(functools.partial(_from_original_names, branch))


def _channels(block: nn.Module) -> tuple[int, int, int]:
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    in_ch = convs[0].in_channels
    last_bn = block.bn3 if hasattr(block, "bn3") else block.bn2
    out_ch = last_bn.num_features
    stride = max(max(c.stride) for c in convs)
    return in_ch, out_ch, stride


def _stage_of(name: str) -> int | None:
    first = name.split(".", 1)[0]
    if first.startswith("layer") and first[5:].isdigit():
        return int(first[5:])
    return None


def retrofit(
    model: nn.Module,
    spec: AttentionSpec | None = None,
    *,
    stages: Iterable[int] | None = None,
    **attention_options: Any,
) -> nn.Module:
    """Convert the residual blocks of ``model`` in place and return ``model``.

    Args:
        model: a torchvision or timm ResNet (or any model holding their blocks).
        spec: attention, placement and λ of the converted blocks; default
            :data:`RETROFIT_SPEC` (``pre``, CBAM, ``lam=0.0``, ``lam_param="linear"``),
            which keeps the model's function exactly.
        stages: convert only blocks under ``layer{k}`` for k in ``stages`` (default: all).
        **attention_options: fields of :class:`~preattn.AttentionSpec` applied on top of
            ``spec`` (``placement="branch"``, ``attention="se"``, ``lam_warmup_steps=100``,
            ...).

    The names of the converted blocks are logged on the ``preattn`` logger (INFO) and added
    to ``model.preattn_retrofitted`` (stages may be converted in several calls; a block is
    converted once: calling again on it is an error naming it). New parameters are created
    on the device and in the dtype of the block's first conv.

    Raises:
        ValueError: ``placement`` is ``none``, ``stages`` is out of range, a chosen block
            was converted by an earlier call, or the model holds no supported block in the
            chosen stages (the message lists the supported block types).
    """
    spec = AttentionSpec.build(spec, base=RETROFIT_SPEC, **attention_options)
    if not spec.has_attention:
        raise ValueError(
            "placement must be one of ['pre', 'branch', 'post', 'skip'] for retrofit, got 'none'"
        )
    wanted = None if stages is None else set(_validate.stages(stages, count=4, default=()))

    done = list(getattr(model, "preattn_retrofitted", []))
    targets: list[tuple[str, nn.Module, str]] = []
    again: list[str] = []
    for name, module in model.named_modules():
        if wanted is not None and _stage_of(name) not in wanted:
            continue
        if isinstance(module, ResidualBlock) and name in done:
            again.append(name)
            continue
        kind = _qualified_name(module)
        if kind in _BRANCH_MODULES:
            targets.append((name, module, kind))
    if again:
        raise ValueError(
            f"retrofit: {', '.join(again)} already converted by an earlier retrofit call "
            "(model.preattn_retrofitted); convert each block once, or pass stages= naming "
            "only stages not converted yet"
        )
    if not targets:
        where = "" if wanted is None else f" in stages {sorted(wanted)}"
        raise ValueError(
            f"retrofit found no supported residual block{where} in {type(model).__name__}; "
            f"supported block types are {list(SUPPORTED_BLOCKS)}"
        )

    converted: list[str] = []
    for name, block, kind in targets:
        in_ch, out_ch, stride = _channels(block)
        weight = block.conv1.weight
        branch = _branch_of(block, kind)
        new = ResidualBlock(in_ch, out_ch, stride, spec=spec, transform=lambda i, o, s, b=branch: b)
        new.skip = block.downsample if block.downsample is not None else nn.Identity()
        new.act = getattr(block, _OUTPUT_ACT[kind])
        for part in (new.attention, new.mix):
            if part is not None:
                part.to(device=weight.device, dtype=weight.dtype)
        new.train(block.training)
        _keep_original_names(new, tuple(branch._modules))
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, new)
        converted.append(name)
    logger.info(
        "retrofit: %d blocks converted to %s: %s",
        len(converted),
        spec.describe(),
        ", ".join(converted),
    )
    model.preattn_retrofitted = done + converted  # type: ignore[assignment]
    return model

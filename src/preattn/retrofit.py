"""Add attention to an existing torchvision or timm residual CNN, keeping its weights.

Each supported block is replaced, in place, by a :class:`~preattn.ResidualBlock` whose
branch ``F`` is the block's own modules in their original order, whose skip ``S`` is the
block's own projection (or the identity, or nothing for a block without residual) and whose
output activation and stochastic depth are the block's own: no weight is copied or
re-initialised. With the defaults (``lam=0.0``, ``lam_param="linear"``) every converted
block computes exactly what it did before (``mix(z, A(z)) = z`` at λ = 0) while λ still
receives gradient, so fine-tuning starts from the pretrained function and learns how much
attention to use (:data:`RETROFIT_SPEC`).

The converted model's ``state_dict`` uses the original names (``layer1.0.conv1.weight``,
``features.2.conv.0.0.weight``, ``layer2.0.downsample.0.weight``) plus the new
``attention.*`` and ``mix.*`` entries, so the original pretrained checkpoints load into it
with ``strict=False`` (only the new keys are missing), and its own checkpoints load back
strictly.

One table, :data:`BLOCK_LAYOUTS`, says for each supported block type how it computes
``y = act(S(x) + drop(F(x)))``: the attributes that make ``F`` in forward order, the
attribute of ``S``, whether the block has a residual, its output activation and its
stochastic depth. Supported: torchvision's ResNet ``BasicBlock``/``Bottleneck``, MobileNetV2
and V3 ``InvertedResidual``, EfficientNet ``MBConv``/``FusedMBConv``, RegNet
``ResBottleneckBlock``, ConvNeXt ``CNBlock`` (``F`` ends with its layer scale); timm's ResNet
``BasicBlock``/``Bottleneck``, EfficientNet/MobileNet ``InvertedResidual`` and
``DepthwiseSeparableConv``, RegNet ``Bottleneck``.

Blocks without a residual (MobileNet's strided blocks) take ``pre``, ``branch`` and
``post``; with ``placement="skip"`` they are left as they are.

Blocks that have attention of their own inside ``F`` (SE-ResNets, MobileNetV3,
EfficientNet, RegNetY: :data:`OWN_ATTENTION` types) keep it by default, and retrofit says
so (a warning naming them): the new attention is added to theirs.
``own_attention="replace"`` removes theirs (their weights then go unused, and the function
changes even at λ = 0).
"""

from __future__ import annotations

import functools
import logging
import operator
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from . import _validate
from .blocks import ResidualBlock
from .spec import AttentionSpec

__all__ = [
    "BLOCK_LAYOUTS",
    "OWN_ATTENTION",
    "RETROFIT_SPEC",
    "SUPPORTED_BLOCKS",
    "BlockLayout",
    "retrofit",
]

# the starting point of retrofit's options: Pattern-3, CBAM, λ = 0 stored linearly
RETROFIT_SPEC = AttentionSpec(lam=0.0, lam_param="linear")

logger = logging.getLogger("preattn")


def _always(block: nn.Module) -> bool:
    return True


@dataclass(frozen=True)
class BlockLayout:
    """How one block type computes ``y = act(S(x) + drop(F(x)))``.

    ``branch``: the attributes that make ``F``, in forward order (absent, None and identity
    ones are left out; a parameter, ConvNeXt's layer scale, multiplies). ``skip``: the
    attribute of ``S`` (absent or None: the identity). ``residual(block)``: whether the
    block adds ``S(x)`` at all. ``act``: the output activation's attribute (None: none).
    ``drop_path``: the stochastic depth applied to ``F(x)`` before the sum.
    """

    branch: tuple[str, ...]
    skip: str | None = None
    residual: Callable[[nn.Module], bool] = _always
    act: str | None = None
    drop_path: str | None = None


_TIMM_EFFICIENT = ("conv_s2d", "bn_s2d")  # timm's optional space-to-depth stem of a block
BLOCK_LAYOUTS: dict[str, BlockLayout] = {
    "torchvision.models.resnet.BasicBlock": BlockLayout(
        ("conv1", "bn1", "relu", "conv2", "bn2"), skip="downsample", act="relu"
    ),
    "torchvision.models.resnet.Bottleneck": BlockLayout(
        ("conv1", "bn1", "relu", "conv2", "bn2", "relu", "conv3", "bn3"),
        skip="downsample",
        act="relu",
    ),
    "torchvision.models.mobilenetv2.InvertedResidual": BlockLayout(
        ("conv",), residual=operator.attrgetter("use_res_connect")
    ),
    "torchvision.models.mobilenetv3.InvertedResidual": BlockLayout(
        ("block",), residual=operator.attrgetter("use_res_connect")
    ),
    "torchvision.models.efficientnet.MBConv": BlockLayout(
        ("block",),
        residual=operator.attrgetter("use_res_connect"),
        drop_path="stochastic_depth",
    ),
    "torchvision.models.efficientnet.FusedMBConv": BlockLayout(
        ("block",),
        residual=operator.attrgetter("use_res_connect"),
        drop_path="stochastic_depth",
    ),
    "torchvision.models.regnet.ResBottleneckBlock": BlockLayout(
        ("f",), skip="proj", act="activation"
    ),
    "torchvision.models.convnext.CNBlock": BlockLayout(
        ("block", "layer_scale"), drop_path="stochastic_depth"
    ),
    "timm.models.resnet.BasicBlock": BlockLayout(
        ("conv1", "bn1", "drop_block", "act1", "aa", "conv2", "bn2", "se"),
        skip="downsample",
        act="act2",
        drop_path="drop_path",
    ),
    "timm.models.resnet.Bottleneck": BlockLayout(
        ("conv1", "bn1", "act1", "conv2", "bn2", "drop_block", "act2", "aa", "conv3", "bn3", "se"),
        skip="downsample",
        act="act3",
        drop_path="drop_path",
    ),
    "timm.models._efficientnet_blocks.InvertedResidual": BlockLayout(
        (*_TIMM_EFFICIENT, "conv_pw", "bn1", "conv_dw", "bn2", "aa", "se", "conv_pwl", "bn3"),
        residual=operator.attrgetter("has_skip"),
        drop_path="drop_path",
    ),
    "timm.models._efficientnet_blocks.DepthwiseSeparableConv": BlockLayout(
        (*_TIMM_EFFICIENT, "conv_dw", "bn1", "aa", "se", "conv_pw", "bn2"),
        residual=operator.attrgetter("has_skip"),
        drop_path="drop_path",
    ),
    # timm's RegNet: downsample None means no shortcut at all, the identity a plain one
    "timm.models.regnet.Bottleneck": BlockLayout(
        ("conv1", "conv2", "se", "conv3"),
        skip="downsample",
        residual=lambda block: block.downsample is not None,
        act="act3",
        drop_path="drop_path",
    ),
}
SUPPORTED_BLOCKS = tuple(BLOCK_LAYOUTS)

# attention modules the supported networks carry inside their blocks
OWN_ATTENTION = (
    "torchvision.ops.misc.SqueezeExcitation",
    "timm.layers.squeeze_excite.SEModule",
    "timm.layers.squeeze_excite.EffectiveSEModule",
    "timm.models._efficientnet_blocks.SqueezeExcite",
)
_OWN_ATTENTION_CHOICES = ("keep", "replace")


def _qualified_name(module: nn.Module) -> str:
    cls = type(module)
    return f"{cls.__module__}.{cls.__qualname__}"


class _Branch(nn.Sequential):
    """The original block's branch modules, run in order (a ReLU may appear twice)."""


class _Scale(nn.Module):
    """Multiplies by a block's own parameter (ConvNeXt's layer scale, (C, 1, 1))."""

    def __init__(self, scale: nn.Parameter) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x


def _branch_of(block: nn.Module, layout: BlockLayout) -> _Branch:
    modules: OrderedDict[str, nn.Module] = OrderedDict()
    for position, name in enumerate(layout.branch):
        module = getattr(block, name, None)
        if isinstance(module, nn.Parameter):
            module = _Scale(module)
        if module is None or isinstance(module, nn.Identity):
            continue
        key = name if name not in modules else f"{name}_{position}"
        modules[key] = module
    return _Branch(modules)


def _name_pairs(branch: _Branch, skip: str | None) -> list[tuple[str, str]]:
    """(name inside the ResidualBlock, the original block's name) of each renamed part."""
    pairs = [
        (f"transform.{key}.scale", key) if isinstance(module, _Scale) else (f"transform.{key}", key)
        for key, module in branch.named_children()
    ]
    return pairs + ([("skip", skip)] if skip is not None else [])


def _rename(pairs: list[tuple[str, str]], state_dict: dict, prefix: str) -> None:
    """Rename, in place, the keys under ``prefix`` that equal or start with (then ``.``) a
    pair's first name to the pair's second name."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        rest = key[len(prefix) :]
        for old, new in pairs:
            if rest == old or rest.startswith(old + "."):
                state_dict[prefix + new + rest[len(old) :]] = state_dict.pop(key)
                break


def _save_original_names(
    pairs: list[tuple[str, str]], module: nn.Module, state_dict: dict, prefix: str, _: Any
) -> dict:
    _rename(pairs, state_dict, prefix)
    return state_dict


def _load_original_names(
    pairs: list[tuple[str, str]], state_dict: dict, prefix: str, *_: Any
) -> None:
    _rename([(new, old) for old, new in pairs], state_dict, prefix)


def _keep_original_names(block: ResidualBlock, pairs: list[tuple[str, str]]) -> None:
    """Save and load the converted block under the original block's names (``conv1``,
    ``downsample``, ``layer_scale``): an original checkpoint loads with ``strict=False``
    missing only the attention and λ, and the block's own checkpoints load back strictly."""
    block._register_state_dict_hook(functools.partial(_save_original_names, pairs))
    block._register_load_state_dict_pre_hook(functools.partial(_load_original_names, pairs))


def _channels(branch: nn.Module) -> tuple[int, int, int]:
    """``(C_in, C_out, stride)`` of a branch: its first conv's input, its last conv's or
    linear layer's output (ConvNeXt ends with a linear layer), its largest conv stride."""
    convs = [m for m in branch.modules() if isinstance(m, nn.Conv2d)]
    last = [m for m in branch.modules() if isinstance(m, nn.Conv2d | nn.Linear)][-1]
    out_ch = last.out_channels if isinstance(last, nn.Conv2d) else last.out_features
    return convs[0].in_channels, out_ch, max(max(c.stride) for c in convs)


def _stage_of(name: str) -> int | None:
    first = name.split(".", 1)[0]
    if first.startswith("layer") and first[5:].isdigit():
        return int(first[5:])
    return None


def _block_types(model: nn.Module) -> list[str]:
    """The types of the convolutional modules held in ``model``'s sequences: what a user's
    blocks are, to name them when none is supported."""
    found: list[str] = []
    for container in model.modules():
        if isinstance(container, nn.Sequential | nn.ModuleList):
            for child in container.children():
                has_conv = any(isinstance(m, nn.Conv2d) for m in child.modules())
                kind = _qualified_name(child)
                if has_conv and not isinstance(child, nn.Conv2d) and kind not in found:
                    found.append(kind)
    return found


def _parts(model: nn.Module, within: Iterable[str] | None) -> list[str] | None:
    """``within`` as a list of names, each checked to be a submodule of ``model``."""
    if within is None:
        return None
    if isinstance(within, str):
        raise TypeError(f"within must be a list of submodule names, got the str {within!r}")
    parts = list(within)
    names = {name for name, _ in model.named_modules()}
    unknown = [p for p in parts if p not in names]
    if unknown:
        raise ValueError(
            f"within names {unknown}, which {type(model).__name__} has no submodule of; "
            "names are those of model.named_modules(), e.g. 'features.14' or 'blocks.5'"
        )
    return parts


def _own_attention(block: nn.Module) -> list[str]:
    """Names (inside ``block``) of the attention modules it carries itself."""
    return [
        name for name, m in block.named_modules() if name and _qualified_name(m) in OWN_ATTENTION
    ]


def _remove_own_attention(block: nn.Module) -> None:
    for name in _own_attention(block):
        parent, _, attr = name.rpartition(".")
        setattr(block.get_submodule(parent) if parent else block, attr, nn.Identity())


def _convert(block: nn.Module, layout: BlockLayout, spec: AttentionSpec) -> ResidualBlock:
    """``block`` as a ResidualBlock holding its own modules (module docstring)."""
    branch = _branch_of(block, layout)
    in_ch, out_ch, stride = _channels(branch)
    new = ResidualBlock(in_ch, out_ch, stride, spec=spec, transform=lambda i, o, s: branch)
    residual = layout.residual(block)
    skip = getattr(block, layout.skip, None) if layout.skip else None
    new.skip = (skip if skip is not None else nn.Identity()) if residual else None
    new.act = getattr(block, layout.act) if layout.act else nn.Identity()
    drop = getattr(block, layout.drop_path, None) if layout.drop_path else None
    new.drop_path = drop if drop is not None else nn.Identity()
    weight = next(m for m in branch.modules() if isinstance(m, nn.Conv2d)).weight
    for part in (new.attention, new.mix):
        if part is not None:
            part.to(device=weight.device, dtype=weight.dtype)
    new.train(block.training)
    own_skip = layout.skip if residual and skip is not None else None  # S is the block's own
    _keep_original_names(new, _name_pairs(branch, own_skip))
    return new


def retrofit(
    model: nn.Module,
    spec: AttentionSpec | None = None,
    *,
    stages: Iterable[int] | None = None,
    within: Iterable[str] | None = None,
    own_attention: str = "keep",
    **attention_options: Any,
) -> nn.Module:
    """Convert the residual blocks of ``model`` in place and return ``model``.

    Args:
        model: a torchvision or timm network holding blocks of :data:`BLOCK_LAYOUTS`
            (ResNet, MobileNetV2/V3, EfficientNet, RegNet, ConvNeXt).
        spec: attention, placement and λ of the converted blocks; default
            :data:`RETROFIT_SPEC` (``pre``, CBAM, ``lam=0.0``, ``lam_param="linear"``),
            which keeps the model's function exactly.
        stages: convert only blocks under ``layer{k}`` for k in ``stages`` (the ResNets'
            layout; default: all).
        within: convert only blocks that are, or lie inside, the submodules of these names
            (any layout: ``within=["features.14", "features.15"]``, ``within=["blocks.5"]``).
        own_attention: what happens to attention a block already has inside ``F`` (SE):
            ``"keep"`` (the default; a warning names those blocks) or ``"replace"``
            (removed: only the new attention acts, and the function changes at λ = 0).
        **attention_options: fields of :class:`~preattn.AttentionSpec` applied on top of
            ``spec`` (``placement="branch"``, ``attention="se"``, ``lam_warmup_steps=100``,
            ...).

    The names of the converted blocks are logged on the ``preattn`` logger (INFO) and added
    to ``model.preattn_retrofitted`` (stages may be converted in several calls; a block is
    converted once: calling again on it is an error naming it). New parameters are created
    on the device and in the dtype of the block's first conv. With ``placement="skip"``,
    blocks without a residual are left unconverted (and not listed).

    Raises:
        ValueError: ``placement`` is ``none``, ``stages`` is out of range, ``within``
            names a submodule the model does not have, a chosen block
            was converted by an earlier call, or the model holds no supported block in the
            chosen stages (the message names the block types it found and the supported
            ones).
    """
    spec = AttentionSpec.build(spec, base=RETROFIT_SPEC, **attention_options)
    _validate.choice("own_attention", own_attention, _OWN_ATTENTION_CHOICES)
    if not spec.has_attention:
        raise ValueError(
            "placement must be one of ['pre', 'branch', 'post', 'skip'] for retrofit, got 'none'"
        )
    wanted = None if stages is None else set(_validate.stages(stages, count=4, default=()))
    parts = _parts(model, within)

    done = list(getattr(model, "preattn_retrofitted", []))
    targets: list[tuple[str, nn.Module, BlockLayout]] = []
    again: list[str] = []
    for name, module in model.named_modules():
        if wanted is not None and _stage_of(name) not in wanted:
            continue
        if parts is not None and not any(name == p or name.startswith(p + ".") for p in parts):
            continue
        if isinstance(module, ResidualBlock) and name in done:
            again.append(name)
            continue
        layout = BLOCK_LAYOUTS.get(_qualified_name(module))
        if layout is None:
            continue
        if spec.placement == "skip" and not layout.residual(module):
            continue  # no residual: nothing for skip attention to act on
        targets.append((name, module, layout))
    if again:
        raise ValueError(
            f"retrofit: {', '.join(again)} already converted by an earlier retrofit call "
            "(model.preattn_retrofitted); convert each block once, or pass stages= naming "
            "only stages not converted yet"
        )
    if not targets:
        where = "" if wanted is None else f" in stages {sorted(wanted)}"
        where += "" if parts is None else f" within {parts}"
        found = _block_types(model)
        held = f" (it holds {', '.join(found[:5])})" if found else ""
        raise ValueError(
            f"retrofit found no supported residual block{where} in "
            f"{type(model).__name__}{held}; supported block types are {list(SUPPORTED_BLOCKS)}. "
            "For your own network, build its blocks as preattn.ResidualBlock(in_ch, out_ch, "
            "stride, transform=<factory (in_ch, out_ch, stride) -> F>), or declare your "
            "block's layout (from preattn.retrofit import BLOCK_LAYOUTS, BlockLayout; "
            "BLOCK_LAYOUTS['module.Class'] = BlockLayout(...))"
        )

    stacked = [f"{name}.{inner}" for name, block, _ in targets for inner in _own_attention(block)]
    if stacked and own_attention == "replace":
        for _, block, _ in targets:
            _remove_own_attention(block)
        logger.info("retrofit: removed the blocks' own attention: %s", ", ".join(stacked))
    elif stacked:
        logger.warning(
            "retrofit: %d converted blocks have attention of their own inside F (%s%s); "
            "the new attention is added to it. own_attention='replace' removes theirs",
            len(stacked),
            ", ".join(stacked[:3]),
            ", ..." if len(stacked) > 3 else "",
        )
    converted: list[str] = []
    for name, block, layout in targets:
        new = _convert(block, layout, spec)
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

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

One table, :data:`~preattn.block_layouts.BLOCK_LAYOUTS`, says for each supported block type
how it computes ``y = act(S(x) + drop(F(x)))``: the attributes that make ``F`` in forward
order, the attribute of ``S``, whether the block has a residual, its output activation and
its stochastic depth. Supported: torchvision's ResNet ``BasicBlock``/``Bottleneck``,
MobileNetV2 and V3 ``InvertedResidual``, EfficientNet ``MBConv``/``FusedMBConv``, RegNet
``ResBottleneckBlock``, ConvNeXt ``CNBlock`` (``F`` ends with its layer scale), and so the
detectors and segmenters built on them; timm's ResNet ``BasicBlock``/``Bottleneck``,
EfficientNet/MobileNet ``InvertedResidual`` and ``DepthwiseSeparableConv``, RegNet
``Bottleneck``. :func:`~preattn.register_block_layout` (or ``layouts=``) adds a user's type;
such a block is checked before it is converted (its attributes; its outputs at λ = 0 on a
probe input).

The model is seen through ``nn.DataParallel`` and ``torch.compile`` wrappers, a block held at
several places is converted at each, and a model with a ``backbone`` child (torchvision's
detectors and segmenters) or an ``encoder`` child (segmentation_models.pytorch) is converted
inside it by default. docs/retrofit.md has the table
of what converts and the promises tested for each family.

Blocks without a residual (MobileNet's strided blocks) take ``pre``, ``branch`` and
``post``; with ``placement="skip"`` they are left as they are.

Blocks that have attention of their own inside ``F`` (SE-ResNets, MobileNetV3,
EfficientNet, RegNetY: :data:`OWN_ATTENTION` types) keep it by default, and retrofit says
so (a warning naming them): the new attention is added to theirs.
``own_attention="replace"`` removes theirs (their weights then go unused, and the function
changes even at λ = 0).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from . import _validate
from ._module_places import places, strip_wrapper_prefix, unwrap
from .block_layouts import (
    BLOCK_LAYOUTS,
    BUILT_IN_LAYOUTS,
    BlockLayout,
    is_declared_by_user,
    layouts_for_call,
    register_block_layout,
    unregister_block_layout,
)
from .blocks import ResidualBlock
from .spec import AttentionSpec

__all__ = [
    "BLOCK_LAYOUTS",
    "OWN_ATTENTION",
    "RETROFIT_SPEC",
    "SUPPORTED_BLOCKS",
    "BlockLayout",
    "register_block_layout",
    "retrofit",
    "unregister_block_layout",
]

# the starting point of retrofit's options: Pattern-3, CBAM, λ = 0 stored linearly
RETROFIT_SPEC = AttentionSpec(lam=0.0, lam_param="linear")

logger = logging.getLogger("preattn")
SUPPORTED_BLOCKS = tuple(BUILT_IN_LAYOUTS)


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


def _channels(branch: nn.Module, name: str) -> tuple[int, int, int]:
    """``(C_in, C_out, stride)`` of a branch: its first conv's input, its last conv's or
    linear layer's output (ConvNeXt ends with a linear layer), its largest conv stride."""
    convs = [m for m in branch.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"retrofit: {name}'s layout gives a branch F without any Conv2d")
    last = [m for m in branch.modules() if isinstance(m, nn.Conv2d | nn.Linear)][-1]
    out_ch = last.out_channels if isinstance(last, nn.Conv2d) else last.out_features
    return convs[0].in_channels, out_ch, max(max(c.stride) for c in convs)


def _stage_of(name: str) -> int | None:
    """k of the first ``layer{k}`` in a block's name (``backbone.body.layer3.0``: 3)."""
    for part in name.split("."):
        if part.startswith("layer") and part[5:].isdigit():
            return int(part[5:])
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


def _convert(
    block: nn.Module, layout: BlockLayout, spec: AttentionSpec, name: str
) -> ResidualBlock:
    """``block`` as a ResidualBlock holding its own modules (module docstring)."""
    branch = _branch_of(block, layout)
    in_ch, out_ch, stride = _channels(branch, name)
    residual = layout.is_residual(block)
    skip = getattr(block, layout.skip, None) if layout.skip else None
    drop = getattr(block, layout.drop_path, None) if layout.drop_path else None
    weight = next(m for m in branch.modules() if isinstance(m, nn.Conv2d)).weight
    new = ResidualBlock.from_parts(
        branch,
        in_ch=in_ch,
        out_ch=out_ch,
        stride=stride,
        skip=(skip if skip is not None else nn.Identity()) if residual else None,
        act=getattr(block, layout.act) if layout.act else nn.Identity(),
        drop_path=drop if drop is not None else nn.Identity(),
        spec=spec,
        device=weight.device,
        dtype=weight.dtype,
    )
    new.train(block.training)
    own_skip = layout.skip if residual and skip is not None else None  # S is the block's own
    _keep_original_names(new, _name_pairs(branch, own_skip))
    return new


def _check_unchanged_at_zero(
    name: str, block: nn.Module, layout: BlockLayout, spec: AttentionSpec
) -> None:
    """Raise ``ValueError`` when ``block`` converted with ``layout`` at λ = 0 computes
    something else than ``block`` on a probe input ``(2, C_in, 16, 16)`` (eval mode, no
    gradient; every module's mode is restored): the layout does not describe its forward."""
    probe_spec = dataclasses.replace(
        spec, lam=0.0, lam_param="linear", lam_learnable=True, lam_warmup_steps=0
    )
    modes = {module: module.training for module in block.modules()}
    with torch.random.fork_rng(devices=[]):  # the probe's attention draws no user randomness
        probe = _convert(block, layout, probe_spec, name)
    conv = next(m for m in probe.transform.modules() if isinstance(m, nn.Conv2d))
    if conv.weight.is_meta:
        _restore_modes(modes)
        return  # nothing to compute with: deferred initialisation
    x = torch.randn(2, conv.in_channels, 16, 16, generator=torch.Generator().manual_seed(0))
    x = x.to(device=conv.weight.device, dtype=conv.weight.dtype)
    try:
        with torch.no_grad():
            want = block.eval()(x)
            got = probe.eval()(x)
    except Exception as error:
        raise ValueError(
            f"retrofit: block {name!r} ({_qualified_name(block)}) could not be checked against "
            f"its BlockLayout on a probe input of shape {tuple(x.shape)}: {error}"
        ) from error
    finally:
        _restore_modes(modes)
    kind = _qualified_name(block)
    if not isinstance(want, torch.Tensor) or want.shape != got.shape:
        shape = tuple(want.shape) if isinstance(want, torch.Tensor) else type(want).__name__
        raise ValueError(
            f"retrofit: block {name!r} ({kind}) gives {shape} on a probe input but its layout "
            f"gives {tuple(got.shape)}; the BlockLayout does not describe its forward, "
            "nothing was converted"
        )
    scale = float(want.abs().max()) or 1.0
    diff = float((want - got).abs().max())
    if diff > 1e-4 * scale:
        raise ValueError(
            f"retrofit: block {name!r} ({kind}) computes something else than its BlockLayout "
            f"says at λ = 0 (largest difference {diff:.3g} on outputs up to {scale:.3g}, on a "
            "probe input); check the layout's branch order, skip, residual and act. Nothing "
            "was converted"
        )


def _restore_modes(modes: dict[nn.Module, bool]) -> None:
    for module, training in modes.items():
        module.training = training


# the children that hold a dense-prediction model's feature extractor
_FEATURE_CHILDREN = ("backbone", "encoder")


def _default_within(model: nn.Module, within: Iterable[str] | None) -> Iterable[str] | None:
    """``["backbone"]`` for a model with a ``backbone`` child (torchvision's detectors and
    segmenters), ``["encoder"]`` for one with an ``encoder`` child (segmentation_models.pytorch):
    heads, necks and decoders keep their function; else ``within`` as given."""
    if within is not None:
        return within
    for name in _FEATURE_CHILDREN:
        if isinstance(getattr(model, name, None), nn.Module):
            logger.info("retrofit: converting within %r (within=[''] converts everywhere)", name)
            return [name]
    return within


def _chosen(name: str, wanted: set[int] | None, parts: list[str] | None) -> bool:
    if wanted is not None and _stage_of(name) not in wanted:
        return False
    return parts is None or any(p == "" or name == p or name.startswith(p + ".") for p in parts)


_Target = tuple[list[str], nn.Module, BlockLayout]  # every name of a block, it, its layout


def _targets(
    model: nn.Module,
    table: Mapping[str, BlockLayout],
    skip_placement: bool,
    wanted: set[int] | None,
    parts: list[str] | None,
    done: list[str],
) -> list[_Target]:
    """The blocks to convert, each once with all its places; errors for blocks converted
    before, shared with a place not chosen, lacking an attribute, or for none found."""
    where = places(model)
    targets: list[_Target] = []
    again: list[str] = []
    seen: set[int] = set()
    for name, module in model.named_modules(remove_duplicate=False):
        if id(module) in seen or not _chosen(name, wanted, parts):
            continue
        seen.add(id(module))
        if isinstance(module, ResidualBlock) and name in done:
            again.append(name)
            continue
        layout = table.get(_qualified_name(module))
        if layout is None or (skip_placement and not layout.is_residual(module)):
            continue  # unknown, or no residual for skip attention to act on
        left_out = [n for n in where[id(module)] if not _chosen(n, wanted, parts)]
        if left_out:
            raise ValueError(
                f"retrofit: the block at {name!r} is also held at {left_out}, which stages/"
                "within leave out; converting it at one place would change the other; choose "
                "every place it sits, or give each place its own copy (copy.deepcopy)"
            )
        layout.check(module, name)
        targets.append((where[id(module)], module, layout))
    if again:
        raise ValueError(
            f"retrofit: {', '.join(again)} already converted by an earlier retrofit call "
            "(model.preattn_retrofitted); convert each block once, or pass stages= naming "
            "only stages not converted yet"
        )
    if not targets:
        where_text = "" if wanted is None else f" in stages {sorted(wanted)}"
        where_text += "" if parts is None else f" within {parts}"
        found = _block_types(model)
        held = f" (it holds {', '.join(found[:5])})" if found else ""
        raise ValueError(
            f"retrofit found no supported residual block{where_text} in "
            f"{type(model).__name__}{held}; supported block types are {list(table)}. "
            "For your own network, build its blocks as preattn.ResidualBlock(in_ch, out_ch, "
            "stride, transform=<factory (in_ch, out_ch, stride) -> F>), or declare your "
            "block's layout with preattn.register_block_layout (docs/retrofit.md)"
        )
    return targets


def _handle_own_attention(targets: list[_Target], own_attention: str) -> None:
    """Keep (and warn about) or remove the attention the blocks carry inside ``F``."""
    stacked = [
        f"{names[0]}.{inner}" for names, block, _ in targets for inner in _own_attention(block)
    ]
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


def _put_converted(model: nn.Module, targets: list[_Target], spec: AttentionSpec) -> list[str]:
    """Convert each block once and put it at each of its places; the names, logged."""
    converted: list[str] = []
    for names, block, layout in targets:
        new = _convert(block, layout, spec, names[0])
        for name in names:
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
    return converted


def retrofit(
    model: nn.Module,
    spec: AttentionSpec | None = None,
    *,
    stages: Iterable[int] | None = None,
    within: Iterable[str] | None = None,
    own_attention: str = "keep",
    layouts: Mapping[type | str, BlockLayout] | None = None,
    **attention_options: Any,
) -> nn.Module:
    """Convert the residual blocks of ``model`` in place and return ``model``.

    Args:
        model: a network holding blocks of :data:`BLOCK_LAYOUTS` (torchvision's and timm's
            ResNet, MobileNetV2/V3, EfficientNet, RegNet, ConvNeXt, the detectors and
            segmenters built on them, and types added by :func:`register_block_layout`),
            possibly inside ``nn.DataParallel`` or ``torch.compile`` (converted underneath;
            ``DistributedDataParallel`` is refused: retrofit first, then wrap).
        spec: attention, placement and λ of the converted blocks; default
            :data:`RETROFIT_SPEC` (``pre``, CBAM, ``lam=0.0``, ``lam_param="linear"``),
            which keeps the model's function exactly.
        stages: convert only blocks under a ``layer{k}`` for k in ``stages`` (the ResNets'
            layout, also as a detector's ``backbone.body.layer{k}``; default: all).
        within: convert only blocks that are, or lie inside, the submodules of these names
            (any layout: ``within=["features.14", "features.15"]``, ``within=["blocks.5"]``;
            ``[""]``: the whole model). Default: ``["backbone"]`` for a model with a
            ``backbone`` child (torchvision's detectors and segmenters), ``["encoder"]`` for
            one with an ``encoder`` child (segmentation_models.pytorch), else everywhere.
        own_attention: what happens to attention a block already has inside ``F`` (SE):
            ``"keep"`` (the default; a warning names those blocks) or ``"replace"``
            (removed: only the new attention acts, and the function changes at λ = 0).
        layouts: block layouts for this call only, ``{type or "pkg.module.Class":
            BlockLayout}``, on top of :data:`BLOCK_LAYOUTS`.
        **attention_options: fields of :class:`~preattn.AttentionSpec` applied on top of
            ``spec`` (``placement="branch"``, ``attention="se"``, ``lam_warmup_steps=100``,
            ...).

    The names of the converted blocks are logged on the ``preattn`` logger (INFO) and added
    to ``model.preattn_retrofitted`` (stages may be converted in several calls; a block is
    converted once: calling again on it is an error naming it). A block held at several
    places is converted once and the converted block put at each of them (it stays shared);
    one of whose places is chosen and another not is refused. New parameters are created
    on the device and in the dtype of the block's first conv. With ``placement="skip"``,
    blocks without a residual are left unconverted (and not listed). A block whose layout
    is not built in is first checked: at λ = 0 its converted form must give its outputs on
    a probe input.

    Raises:
        ValueError: ``placement`` is ``none``, ``stages`` is out of range, ``within``
            names a submodule the model does not have, a chosen block
            was converted by an earlier call or is shared with a place not chosen, a block
            lacks an attribute its layout names or does not compute what its layout says, or
            the model holds no supported block in the chosen stages (the message names the
            block types it found and the supported ones).
    """
    spec = AttentionSpec.build(spec, base=RETROFIT_SPEC, **attention_options)
    _validate.choice("own_attention", own_attention, _OWN_ATTENTION_CHOICES)
    if not spec.has_attention:
        raise ValueError(
            "placement must be one of ['pre', 'branch', 'post', 'skip'] for retrofit, got 'none'"
        )
    table = layouts_for_call(layouts)
    wanted = None if stages is None else set(_validate.stages(stages, count=4, default=()))
    wrapped, model = model, unwrap(model, "retrofit")
    if within is not None and not isinstance(within, str):
        within = strip_wrapper_prefix(within, wrapped)
    parts = _parts(model, _default_within(model, within))

    done = list(getattr(model, "preattn_retrofitted", []))
    targets = _targets(model, table, spec.placement == "skip", wanted, parts, done)
    for names, block, layout in targets:
        if is_declared_by_user(_qualified_name(block), layout):
            _check_unchanged_at_zero(names[0], block, layout, spec)
    _handle_own_attention(targets, own_attention)
    converted = _put_converted(model, targets, spec)
    model.preattn_retrofitted = done + converted  # type: ignore[assignment]
    if wrapped is not model:
        wrapped.preattn_retrofitted = model.preattn_retrofitted  # type: ignore[assignment]
    return wrapped

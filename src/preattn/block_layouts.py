"""The table of block layouts retrofit reads, and the public way to add to it.

A :class:`BlockLayout` says how one residual block type computes
``y = act(S(x) + drop(F(x)))`` by naming the block's own attributes: those that make ``F``
in forward order, the skip ``S``, whether the residual is there at all, the output
activation and the stochastic depth. :data:`BLOCK_LAYOUTS` maps a block's class path
(``"torchvision.models.resnet.BasicBlock"``) to its layout; it holds torchvision's and
timm's families, and :func:`register_block_layout` adds a user's own block type without
preattn importing the library that defines it::

    preattn.register_block_layout(
        "mypkg.nn.Bottleneck", BlockLayout(branch=("cv1", "cv2"), residual="add")
    )

A layout is checked against each block it converts (:meth:`BlockLayout.check`): an
attribute it names that the block lacks is an error naming the block and the attribute.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from torch import nn

__all__ = [
    "BLOCK_LAYOUTS",
    "BUILT_IN_LAYOUTS",
    "BlockLayout",
    "block_type_name",
    "register_block_layout",
    "unregister_block_layout",
]


def block_type_name(block_type: type | str) -> str:
    """The key of a block type in :data:`BLOCK_LAYOUTS`: ``module.QualName``."""
    if isinstance(block_type, type):
        return f"{block_type.__module__}.{block_type.__qualname__}"
    if not isinstance(block_type, str) or "." not in block_type.strip(". "):
        raise ValueError(
            f"block_type must be a class or its path 'package.module.ClassName', got {block_type!r}"
        )
    return block_type


def _always(block: nn.Module) -> bool:
    return True


def _names(field: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):  # type: ignore[attr-defined]
        raise TypeError(f"BlockLayout.{field} must be a tuple of attribute names, got {value!r}")
    return tuple(value)  # type: ignore[arg-type]


@dataclass(frozen=True)
class BlockLayout:
    """How one block type computes ``y = act(S(x) + drop(F(x)))``.

    ``branch``: the attributes that make ``F``, in forward order (None and identity ones are
    left out; a parameter, ConvNeXt's layer scale, multiplies). ``skip``: the attribute of
    ``S`` (its value None: the identity). ``residual``: whether the block adds ``S(x)`` at
    all, as a function of the block or the name of its boolean attribute (``"add"``).
    ``act``: the output activation's attribute (None: none). ``drop_path``: the stochastic
    depth applied to ``F(x)`` before the sum. ``optional``: branch attributes a block of this
    type may lack (versions of a library that add one); every other attribute named here
    must exist on the block.
    """

    branch: tuple[str, ...]
    skip: str | None = None
    residual: Callable[[nn.Module], bool] | str = _always
    act: str | None = None
    drop_path: str | None = None
    optional: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "branch", _names("branch", self.branch))
        object.__setattr__(self, "optional", _names("optional", self.optional))
        if not self.branch:
            raise ValueError("BlockLayout.branch must name at least one attribute, got ()")
        for field in ("skip", "act", "drop_path"):
            value = getattr(self, field)
            if value is not None and not isinstance(value, str):
                raise TypeError(
                    f"BlockLayout.{field} must be an attribute name or None, got {value!r}"
                )
        if not (isinstance(self.residual, str) or callable(self.residual)):
            raise TypeError(
                "BlockLayout.residual must be a callable or an attribute name, "
                f"got {self.residual!r}"
            )
        stray = [name for name in self.optional if name not in self.branch]
        if stray:
            raise ValueError(f"BlockLayout.optional names {stray}, which branch does not list")

    def is_residual(self, block: nn.Module) -> bool:
        """Whether ``block`` adds its skip ``S(x)`` to ``F(x)``."""
        if isinstance(self.residual, str):
            return bool(getattr(block, self.residual))
        return bool(self.residual(block))

    def check(self, block: nn.Module, name: str) -> None:
        """Raise ``ValueError`` naming ``name``, its type and the attribute when ``block``
        lacks an attribute this layout names (``optional`` branch ones may be absent)."""
        wanted = [a for a in self.branch if a not in self.optional]
        wanted += [a for a in (self.skip, self.act, self.drop_path) if a is not None]
        wanted += [self.residual] if isinstance(self.residual, str) else []
        missing = [a for a in wanted if not hasattr(block, a)]
        if missing:
            raise ValueError(
                f"retrofit: block {name!r} ({block_type_name(type(block))}) has no attribute "
                f"{missing[0]!r}, which its BlockLayout names; it has "
                f"{sorted(n for n, _ in block.named_children())}"
            )


_TIMM_EFFICIENT = ("conv_s2d", "bn_s2d")  # timm's optional space-to-depth stem of a block
BUILT_IN_LAYOUTS: Mapping[str, BlockLayout] = {
    "torchvision.models.resnet.BasicBlock": BlockLayout(
        ("conv1", "bn1", "relu", "conv2", "bn2"), skip="downsample", act="relu"
    ),
    "torchvision.models.resnet.Bottleneck": BlockLayout(
        ("conv1", "bn1", "relu", "conv2", "bn2", "relu", "conv3", "bn3"),
        skip="downsample",
        act="relu",
    ),
    "torchvision.models.mobilenetv2.InvertedResidual": BlockLayout(
        ("conv",), residual="use_res_connect"
    ),
    "torchvision.models.mobilenetv3.InvertedResidual": BlockLayout(
        ("block",), residual="use_res_connect"
    ),
    "torchvision.models.efficientnet.MBConv": BlockLayout(
        ("block",), residual="use_res_connect", drop_path="stochastic_depth"
    ),
    "torchvision.models.efficientnet.FusedMBConv": BlockLayout(
        ("block",), residual="use_res_connect", drop_path="stochastic_depth"
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
        residual="has_skip",
        drop_path="drop_path",
        optional=_TIMM_EFFICIENT,
    ),
    "timm.models._efficientnet_blocks.DepthwiseSeparableConv": BlockLayout(
        (*_TIMM_EFFICIENT, "conv_dw", "bn1", "aa", "se", "conv_pw", "bn2"),
        residual="has_skip",
        drop_path="drop_path",
        optional=_TIMM_EFFICIENT,
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
# the table retrofit reads: the built-in layouts and those registered since
BLOCK_LAYOUTS: dict[str, BlockLayout] = dict(BUILT_IN_LAYOUTS)


def register_block_layout(
    block_type: type | str, layout: BlockLayout, *, overwrite: bool = False
) -> None:
    """Declare how blocks of ``block_type`` compute ``y = act(S(x) + drop(F(x)))``.

    ``block_type`` is the class or its path ``"package.module.ClassName"`` (a path needs no
    import of the package). From then on :func:`~preattn.retrofit` converts such blocks,
    checking each against ``layout`` (attributes present; outputs unchanged at λ = 0 on a
    probe input). Registering a type that has a layout raises ``ValueError`` unless
    ``overwrite=True``.
    """
    key = block_type_name(block_type)
    if not isinstance(layout, BlockLayout):
        raise TypeError(f"layout must be a preattn.BlockLayout, got {type(layout).__name__}")
    if key in BLOCK_LAYOUTS and not overwrite:
        raise ValueError(
            f"block type {key!r} already has a layout; pass overwrite=True to replace it"
        )
    BLOCK_LAYOUTS[key] = layout


def unregister_block_layout(block_type: type | str) -> None:
    """Remove a layout :func:`register_block_layout` added (built-in ones stay)."""
    key = block_type_name(block_type)
    if key in BUILT_IN_LAYOUTS:
        raise ValueError(f"block type {key!r} is built in; its layout cannot be removed")
    if key not in BLOCK_LAYOUTS:
        raise KeyError(f"block type {key!r} has no registered layout")
    del BLOCK_LAYOUTS[key]


def layouts_for_call(layouts: Mapping[type | str, BlockLayout] | None) -> dict[str, BlockLayout]:
    """:data:`BLOCK_LAYOUTS` with a call's own ``layouts=`` on top, each validated."""
    table = dict(BLOCK_LAYOUTS)
    if layouts is None:
        return table
    if not isinstance(layouts, Mapping):
        raise TypeError(
            "layouts must be a mapping from block type to BlockLayout, "
            f"got {type(layouts).__name__}"
        )
    for block_type, layout in layouts.items():
        if not isinstance(layout, BlockLayout):
            raise TypeError(
                f"layouts[{block_type!r}] must be a preattn.BlockLayout, "
                f"got {type(layout).__name__}"
            )
        table[block_type_name(block_type)] = layout
    return table


def is_declared_by_user(key: str, layout: BlockLayout) -> bool:
    """Whether ``layout`` for ``key`` is not preattn's own (it is then checked on a probe)."""
    return BUILT_IN_LAYOUTS.get(key) is not layout

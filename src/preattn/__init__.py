"""preattn: pre-residual attention (Pattern-3) for convolutional networks.

``y = act(S(x) + F(mix(x, A(x))))`` with ``mix(x, a) = x + λ(a − x)``: attention ``A``
conditions the residual branch's input, the skip carries the raw input, and a learnable
λ keeps it stable. See :class:`ResidualBlock` for the other placements.

``preattn.retrofit``, ``preattn.check`` and ``preattn.summary`` are the functions, exported
under their modules' names, so ``import preattn.retrofit as r`` binds the function too; a
module's other names come with ``from preattn.retrofit import BLOCK_LAYOUTS, BlockLayout``
(or ``importlib.import_module("preattn.retrofit")``).
"""

from .attention import (
    CBAM,
    ECA,
    SE,
    ChannelAttention,
    CoordAttention,
    SpatialAttention,
    attention_names,
    create_attention,
    register_attention,
    unregister_attention,
)
from .block_layouts import BlockLayout, register_block_layout, unregister_block_layout
from .blocks import BasicTransform, BottleneckTransform, ResidualBlock, make_skip
from .check import Finding, check
from .deploy import export_onnx, fuse
from .inverted_residual import InvertedResidualTransform
from .lean_autograd import fast_attention, set_fast_attention, use_fast_attention
from .maps import AttentionMaps, attention_maps
from .mixing import LambdaMix, lambdas
from .retrofit import retrofit
from .spec import LAMBDA_PARAMS, PLACEMENTS, AttentionSpec
from .summary import ModelSummary, summary

__version__ = "0.1.0"

__all__ = [
    "CBAM",
    "ECA",
    "LAMBDA_PARAMS",
    "PLACEMENTS",
    "SE",
    "AttentionMaps",
    "AttentionSpec",
    "BasicTransform",
    "BlockLayout",
    "BottleneckTransform",
    "ChannelAttention",
    "CoordAttention",
    "Finding",
    "InvertedResidualTransform",
    "LambdaMix",
    "ModelSummary",
    "ResidualBlock",
    "SpatialAttention",
    "__version__",
    "attention_maps",
    "attention_names",
    "check",
    "create_attention",
    "export_onnx",
    "fast_attention",
    "fuse",
    "lambdas",
    "make_skip",
    "register_attention",
    "register_block_layout",
    "retrofit",
    "set_fast_attention",
    "summary",
    "unregister_attention",
    "unregister_block_layout",
    "use_fast_attention",
]

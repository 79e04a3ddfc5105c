"""The flags that describe a network without a run (``summary``, ``check``): one per field
of :class:`~preattn.models.ModelConfig` (as training's), the attention spec, and the data's
shape (``--num-classes``, ``--input-size``); :func:`network_from_flags` builds it."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..models.factory import MODELS
from ..spec import AttentionSpec
from ._flags import add_attention_flags, add_field_flags, given, spec_values

if TYPE_CHECKING:
    from torch import nn

__all__ = ["MAX_INPUT_CHANNELS", "add_network_flags", "input_size", "network_from_flags"]

# the most input channels `summary`/`check` build a network for (multispectral data has ~13)
MAX_INPUT_CHANNELS = 16


def add_network_flags(p: argparse.ArgumentParser, *, default_model: str) -> None:
    """The network flags (module docstring), ``--model`` defaulting to ``default_model``."""
    from ..models.config import ModelConfig

    defaults = {**ModelConfig.defaults(), "model": default_model}
    group = p.add_argument_group("network (preattn.models.ModelConfig)")
    add_field_flags(group, ModelConfig.option_fields(), defaults)
    group.add_argument(
        "--num-classes", type=int, help="classes (default: simplecnn 10, the others 1000)"
    )
    group.add_argument(
        "--input-size",
        type=input_size,
        help="C,H,W (default: simplecnn 1,28,28 as Fashion-MNIST, the others 3,224,224)",
    )
    add_attention_flags(p, AttentionSpec().to_dict())
    p.set_defaults(default_model=default_model)


class _InputShape:
    """The data shape :meth:`ModelConfig.build` needs, from ``--num-classes`` and
    ``--input-size`` (the image size that picks a stem is the input's height)."""

    def __init__(self, num_classes: int, size: tuple[int, ...]) -> None:
        self.num_classes, self.in_chans, self.image_size = num_classes, size[0], size[1]


def network_from_flags(args: argparse.Namespace) -> tuple[nn.Module, tuple[int, ...], str]:
    """The network :func:`add_network_flags` describes, its input size (C, H, W) and a
    title naming it."""
    from ..models.config import ModelConfig

    flags = {"model": args.default_model, **given(args, ModelConfig.keys()), **spec_values(args)}
    config = ModelConfig.from_flat(flags).validate()
    entry = MODELS[config.model]
    size = args.input_size or entry.input_size
    if args.num_classes is not None and args.num_classes < 1:
        raise ValueError(f"--num-classes must be an integer >= 1, got {args.num_classes}")
    shape = _InputShape(args.num_classes or entry.num_classes, size)
    return config.build(shape), size, config.describe()


def input_size(text: str) -> tuple[int, ...]:
    """``--input-size C,H,W``, within what a run may train on (:data:`MAX_INPUT_CHANNELS`,
    ``MAX_IMAGE_SIZE``): a 60000x60000 input is tens of GB of activations, not a summary."""
    from ..data.registry import MAX_IMAGE_SIZE

    try:
        size = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected C,H,W such as 3,224,224, got {text!r}"
        ) from None
    if len(size) != 3 or min(size) < 1:
        raise argparse.ArgumentTypeError(f"expected C,H,W such as 3,224,224, got {text!r}")
    if size[0] > MAX_INPUT_CHANNELS or max(size[1:]) > MAX_IMAGE_SIZE:
        raise argparse.ArgumentTypeError(
            f"expected C <= {MAX_INPUT_CHANNELS} and H, W <= {MAX_IMAGE_SIZE} (the largest "
            f"--image-size), got {text!r}"
        )
    return size

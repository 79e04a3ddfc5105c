"""``attention_maps(model, x)``: what each block's attention computes, for looking at it.

For every :class:`~preattn.ResidualBlock` with attention (preattn's own blocks and
retrofitted torchvision/timm blocks alike), keyed by the block's module name:

- ``spatial``: the spatial gate ``M_s`` (N, 1, H, W) in [0, 1], where the attention has one
  (CBAM, spatial attention); for CBAM it is computed on the channel-attended input, as in
  the forward pass;
- ``channel``: the channel gate ``M_c`` (N, C) in [0, 1], where it has one (CBAM, channel
  attention, SE, ECA);
- for coordinate attention, whose gate ``a_h · a_w`` is (N, C, H, W): its mean over
  channels as ``spatial`` and its mean over (H, W) as ``channel``;
- ``lam``: the effective λ (1.0 for uncontrolled attention, ``controlled=False``; the mean
  over channels for a per-channel λ);
- ``modulation``: how much the λ-mixed attention changes the tensor it acts on, scale-free
  (the per-sample coefficient of variation of the effective multiplier for gates;
  :mod:`preattn.modulation`), averaged over the batch;
- ``placement``; ``input_size``: (H, W) of the tensor the attention saw.

A gate an attention type does not have is ``None``, never faked. Forward hooks on each
block, its ``F`` and its ``S`` capture the tensor the attention acts on, and the gates are
recomputed from it under ``torch.no_grad()``: the model is not changed, runs in eval mode
(its mode is restored), and no gradient is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .attention import CBAM, ECA, SE, ChannelAttention, CoordAttention, SpatialAttention
from .blocks import ResidualBlock
from .modulation import modulation_of

__all__ = ["AttentionMaps", "attention_blocks", "attention_maps", "gates_of"]


@dataclass
class AttentionMaps:
    """The gates of one block for a batch (see the module docstring)."""

    placement: str
    lam: float
    controlled: bool
    input_size: tuple[int, int]
    spatial: torch.Tensor | None = None  # (N, 1, H, W)
    channel: torch.Tensor | None = None  # (N, C)
    modulation: float = 0.0  # coefficient of variation of the effective multiplier


def gates_of(attention: nn.Module, z: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
    """``(spatial (N, 1, H, W) | None, channel (N, C) | None)`` of ``attention`` on ``z``."""
    if isinstance(attention, CBAM):
        channel = attention.channel.gate(z)
        spatial = attention.spatial.gate(z * channel.to(z.dtype))
        return spatial, channel.flatten(1)
    if isinstance(attention, SpatialAttention):
        return attention.gate(z), None
    if isinstance(attention, ChannelAttention | SE | ECA):
        return None, attention.gate(z).flatten(1)
    if isinstance(attention, CoordAttention):  # a_h · a_w (N, C, H, W), summarised both ways
        gate = attention.gate(z)
        return gate.mean(dim=1, keepdim=True), gate.mean(dim=(2, 3))
    return None, None


def attention_blocks(model: nn.Module) -> dict[str, ResidualBlock]:
    """Every ResidualBlock of ``model`` that has attention, by module name."""
    return {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, ResidualBlock) and m.attention is not None
    }


def _attended_input(block: ResidualBlock, seen: dict[str, torch.Tensor]) -> torch.Tensor:
    """The tensor ``z`` the block's attention acted on, from what the hooks saw."""
    placement = block.placement
    if placement == "pre":
        return seen["x"]
    if placement == "branch":
        return seen["f"]
    if placement == "skip":
        return seen["s"]
    if "s" not in seen:  # post without a residual: r = act(F(x))
        return block.act(seen["f"].clone())
    return block.act(seen["s"] + seen["f"])  # post: r = act(S(x) + F(x)), a new tensor


@torch.no_grad()
def attention_maps(model: nn.Module, x: torch.Tensor) -> dict[str, AttentionMaps]:
    """Run ``model`` on ``x`` (N, C, H, W) in eval mode and return every block's gates.

    Hooks on each block (its input), its transform ``F`` and skip ``S`` (their outputs)
    give the tensor its attention acts on; the gates are computed from it.
    """
    blocks = attention_blocks(model)
    found: dict[str, AttentionMaps] = {}
    handles = []

    def watch(name: str, block: ResidualBlock) -> None:
        seen: dict[str, torch.Tensor] = {}

        def keep(key: str):
            def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
                seen[key] = output

            return hook

        def block_input(module: nn.Module, inputs: tuple) -> None:
            seen["x"] = inputs[0]

        def block_done(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            assert block.attention is not None
            z = _attended_input(block, seen)
            spatial, channel = gates_of(block.attention, z)
            found[name] = AttentionMaps(
                placement=block.placement,
                lam=1.0 if block.mix is None else float(block.mix.value().mean()),
                controlled=block.mix is not None,
                input_size=(int(z.shape[-2]), int(z.shape[-1])),
                spatial=None if spatial is None else spatial.float().cpu(),
                channel=None if channel is None else channel.float().cpu(),
                modulation=modulation_of(block.attention, block.mix, z),
            )
            seen.clear()

        handles.append(block.register_forward_pre_hook(block_input))
        handles.append(block.transform.register_forward_hook(keep("f")))
        if block.skip is not None:
            handles.append(block.skip.register_forward_hook(keep("s")))
        handles.append(block.register_forward_hook(block_done))

    for name, block in blocks.items():
        watch(name, block)
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return {name: found[name] for name in blocks if name in found}

"""``check(model)``: the Pattern-3 checklist for every block with attention, automated.

The specification's questions (docs/pattern3.md §7), answered by probing the model, not by
reading its ``placement`` strings:

1. Is attention applied to the block's input ``x`` (Pattern-3), and does ``F`` receive the
   attended input? A hook on ``F`` sees its input; it is compared with ``x`` and with
   ``mix(x, A(x))`` recomputed from the block's own attention and λ.
2. Is the skip matched when the stride or the channel count changes? ``S(x)`` must have the
   shape of ``F(x)``, and be a projection rather than the identity.
3. Is λ-control used? Its value, learnable or fixed; a warning when λ is saturated
   (< 0.01 or > 0.99) after training, or fixed at 0 (attention that can never act).
   Does the attention act? Its *modulation* (:mod:`preattn.modulation`: the coefficient of
   variation of the effective multiplier ``w``, which is what BatchNorm lets through to
   ``F``) on the probe images; below :data:`~preattn.modulation.MODULATION_FLOOR` (2 %)
   it is an ``info``, "attention is effectively off", with the reason (λ = 0.1, the
   specification's default, passes a tenth of the gate's variation) and what to try
   (``--preset pattern3-depth``, a larger λ): one rule for trained and untrained models,
   so the CLI and ``check(model)`` agree and a default run passes its own checklist.
   Probe with real images (``images=``) for a trained model: gates respond to noise
   differently.
4. Aggressive early use: uncontrolled attention in the first stage or the first block is a
   warning.
5. Info: the attention's parameters and MACs as a share of the block's.

Severities: ``info``, ``warning``, ``error``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .blocks import ResidualBlock
from .maps import attention_blocks, attention_maps
from .modulation import MODULATION_FLOOR

__all__ = ["SEVERITIES", "Finding", "check"]

SEVERITIES = ("info", "warning", "error")
SATURATED = 0.01


@dataclass(frozen=True)
class Finding:
    """One answer of the checklist for one block."""

    severity: str
    block: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity:<7}  {self.block or '(model)'}: {self.message}"


def _at_start(block: ResidualBlock) -> bool:
    """λ stored linearly, learnable and exactly 0: the identity start of ``retrofit``."""
    mix = block.mix
    return (
        mix is not None
        and mix.learnable
        and mix.param == "linear"
        and bool((mix.value() == 0).all())
    )


def _input_channels(model: nn.Module) -> int:
    """The channels a model takes: its ``in_chans``, a block's ``in_ch``, else its first
    convolution's input channels (3 when it has none)."""
    if isinstance(model, ResidualBlock):
        return model.in_ch
    channels = getattr(model, "in_chans", None)
    if isinstance(channels, int):
        return channels
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return first.in_channels if first is not None else 3


def _is_early(name: str, index: int) -> bool:
    """The network's first block, or a block of its first stage (``layer1``)."""
    return index == 0 or name.split(".", 1)[0] == "layer1"


def _block_inputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The input of every ResidualBlock when ``model`` runs on ``x``."""
    inputs: dict[str, torch.Tensor] = {}
    handles = []
    # a broken block stops the forward pass: the blocks before it (and it) are still checked
    for name, module in model.named_modules():
        if isinstance(module, ResidualBlock):

            def keep(module, args, name=name):
                inputs[name] = args[0].detach().clone()

            handles.append(module.register_forward_pre_hook(keep))
    try:
        model(x)
    except RuntimeError:
        pass
    finally:
        for h in handles:
            h.remove()
    return inputs


def _probe_branch_input(block: ResidualBlock, x: torch.Tensor) -> tuple[torch.Tensor, str]:
    """What ``F`` receives when the block runs on ``x``, and the block's error if it fails
    (``F`` runs before the sum that a mismatched skip breaks)."""
    seen: list[torch.Tensor] = []
    handle = block.transform.register_forward_pre_hook(
        lambda module, args: seen.append(args[0].detach().clone())
    )
    failure = ""
    try:
        block(x.clone())
    except RuntimeError as exc:
        failure = str(exc).splitlines()[0]
    finally:
        handle.remove()
    return seen[0], failure


def _macs(module: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of ``module`` per image of the batch ``x``."""
    mode = FlopCounterMode(display=False)
    with mode:
        module(x.clone())
    return mode.get_total_flops() // 2 // max(1, x.shape[0])


def _cost(name: str, block: ResidualBlock, x: torch.Tensor, attended: torch.Tensor) -> Finding:
    """Attention parameters and MACs (block minus F and S) as a share of the block."""
    parts = [m for m in (block.attention, block.mix) if m is not None]
    attention_params = sum(p.numel() for m in parts for p in m.parameters())
    block_params = sum(p.numel() for p in block.parameters())
    block_macs = _macs(block, x)
    skip_macs = _macs(block.skip, x) if block.skip is not None else 0
    attention_macs = block_macs - _macs(block.transform, attended) - skip_macs
    return Finding(
        "info",
        name,
        f"attention cost: {attention_params:,} of {block_params:,} parameters "
        f"({100 * attention_params / max(block_params, 1):.2f}%), "
        f"{attention_macs:,} of {block_macs:,} MACs per image "
        f"({100 * attention_macs / max(block_macs, 1):.2f}%)",
    )


def _effectively_off(name: str, block: ResidualBlock, modulation: str) -> str:
    """Why a block's attention barely changes its input, and what to try (one line).

    Always ``info``: the network is wired as specified, and with the specification's
    λ = 0.1 a small modulation is what the design does, not a fault."""
    advice = "--preset pattern3-depth"
    if block.mix is None:
        why = "its gates are nearly uniform"
    else:
        lam = float(block.mix.value().mean())
        share = "a tenth" if abs(lam - 0.1) < 1e-3 else f"{lam:.2g}"
        default = "the specification's λ = 0.1" if share == "a tenth" else f"λ = {lam:.3g}"
        why = f"with {default} the mix passes about {share} of the gate's variation to F"
        if lam < 0.5:
            advice += " or a larger λ (--lam 0.5)"
    return (
        f"attention is effectively off in {name or 'the block'} ({modulation}: it changes "
        f"its input by less than {100 * MODULATION_FLOOR:g} % beyond a uniform scale); "
        f"{why}. To let attention act, try {advice}; see docs/lambda.md"
    )


def _check_block(
    name: str,
    index: int,
    block: ResidualBlock,
    x: torch.Tensor,
    trained: bool,
    modulation: float | None,
) -> list[Finding]:
    """The checklist's findings for one attended block on input ``x``, in its order:
    wiring, skip, λ-control and modulation, early use, cost."""
    out: list[Finding] = []

    def say(severity: str, message: str) -> None:
        out.append(Finding(severity, name, message))

    assert block.attention is not None
    f_input, failure = _probe_branch_input(block, x)
    if failure:
        say("error", f"the block's forward fails: {failure}")
    attended = _check_wiring(say, block, x, f_input, trained)  # 1. what F receives
    _check_skip(say, block, x, attended)  # 2. the skip
    _check_lambda(say, block, trained)  # 3. λ-control
    if modulation is not None and not _at_start(block):
        _check_modulation(say, name, block, modulation)
    # 4. aggressive early use
    if block.mix is None and _is_early(name, index):
        say(
            "warning",
            "uncontrolled attention in the first stage/block is aggressive "
            "(the specification: avoid it or use λ-control)",
        )
    # 5. cost (of a block that runs)
    if not failure:
        out.append(_cost(name, block, x, attended))
    return out


def _check_wiring(
    say: Callable[[str, str], None],
    block: ResidualBlock,
    x: torch.Tensor,
    f_input: torch.Tensor,
    trained: bool,
) -> torch.Tensor:
    """Where attention acts and what F receives; returns F's expected input (the attended
    ``x`` for ``pre``, else ``x``)."""
    moved = float((f_input - x).abs().max())
    attended = x
    if block.placement == "pre":
        attended = block.attention(x) if block.mix is None else block.mix.attend(x, block.attention)
        if not torch.allclose(f_input, attended, rtol=1e-4, atol=1e-5):
            say("error", "placement 'pre', but F does not receive mix(x, A(x))")
        elif moved > 0:
            say(
                "info",
                "Pattern-3: attention acts on the block input x and F receives the attended "
                f"input (max |F_in − x| = {moved:.3g})",
            )
        else:
            say(
                "warning" if trained and not _at_start(block) else "info",
                "Pattern-3 wiring, but F's input equals x: attention has no effect at the "
                "current λ",
            )
    elif moved == 0:
        say(
            "info",
            f"attention sits at '{block.placement}' (not Pattern-3): F receives the raw input x",
        )
    else:
        say("error", f"placement '{block.placement}', yet F's input differs from x")
    return attended


def _check_skip(
    say: Callable[[str, str], None], block: ResidualBlock, x: torch.Tensor, attended: torch.Tensor
) -> None:
    """The skip: present, of F's shape, a projection where stride or channels change."""
    changes = block.stride != 1 or block.in_ch != block.out_ch
    if block.skip is None:
        say("info", "no residual connection: y = F(x) (its shape changes, as MobileNet's)")
    else:
        with torch.no_grad():
            s, f = block.skip(x), block.transform(attended)
        if s.shape != f.shape:
            say("error", f"skip S(x) has shape {tuple(s.shape)} but F(x) has {tuple(f.shape)}")
        elif changes and isinstance(block.skip, nn.Identity):
            say("error", "stride or channels change but the skip is the identity")
        elif changes:
            say(
                "info",
                f"skip matched by a projection (stride {block.stride}, "
                f"{block.in_ch} -> {block.out_ch} channels)",
            )


def _check_lambda(say: Callable[[str, str], None], block: ResidualBlock, trained: bool) -> None:
    """λ-control: uncontrolled, fixed at 0, at a retrofit's start, or saturated."""
    if block.mix is None:
        say("info", "uncontrolled attention (λ = None): A(x) replaces x entirely")
    else:
        values = block.mix.value().detach().float().flatten()
        low, high = float(values.min()), float(values.max())
        lam = float(values.mean())
        kind = "learnable" if block.mix.learnable else "fixed"
        if values.numel() == 1:
            shown = f"λ = {lam:.4g}"
        else:  # per channel: its mean and range
            shown = (
                f"λ = {lam:.4g} on average ({low:.4g} to {high:.4g} over {values.numel()} channels)"
            )
        say("info", f"λ-controlled: {shown} ({block.mix.param}, {kind})")
        if not block.mix.learnable and low == high == 0.0:
            say("warning", "λ is fixed at 0: this attention can never act")
        elif _at_start(block):
            say(
                "info",
                "λ = 0 (linear, learnable): the block computes exactly its plain function "
                "(a retrofit's start); λ learns from here",
            )
        elif trained and (high < SATURATED or low > 1 - SATURATED):  # every channel
            side = "off (λ < 0.01)" if high < SATURATED else "fully on (λ > 0.99)"
            say("warning", f"λ is saturated after training: attention is {side}")


def _check_modulation(
    say: Callable[[str, str], None], name: str, block: ResidualBlock, modulation: float
) -> None:
    """Whether the attention acts on its input beyond a uniform scale."""
    text = f"modulation {100 * modulation:.2g} %"
    if modulation < MODULATION_FLOOR:
        say("info", _effectively_off(name, block, text))
    else:
        say("info", f"attention acts: {text} (std(w)/mean(w) of its input's multiplier)")


@torch.no_grad()
def check(
    model: nn.Module,
    input_size: Sequence[int] | None = None,
    *,
    trained: bool = True,
    images: torch.Tensor | None = None,
) -> list[Finding]:
    """Answer the checklist for every block with attention in ``model``.

    Args:
        model: any module holding :class:`~preattn.ResidualBlock` s (preattn networks,
            retrofitted torchvision/timm models, a single block).
        input_size: ``(C, H, W)`` of one input; default ``(C, 32, 32)`` with ``C`` the
            model's ``in_chans``, a block's ``in_ch``, or its first convolution's input
            channels.
        trained: the weights are trained, so a saturated λ is a warning (attention that
            is effectively off, modulation below 2 %, is ``info`` either way).
        images: real inputs (N, C, H, W) to probe with (default: two random images of
            ``input_size``); the modulation is measured on them.

    Returns:
        The findings, blocks in model order; a model without attention gives one warning.
    """
    if input_size is None:
        input_size = (_input_channels(model), 32, 32)
    was_training = model.training
    model.eval()
    try:
        if images is None:
            x = torch.randn(2, *input_size, generator=torch.Generator().manual_seed(0))
        else:
            x = images
        parameter = next(model.parameters(), None)
        if parameter is not None:
            x = x.to(parameter.device, parameter.dtype)
        blocks = attention_blocks(model)
        if not blocks:
            return [Finding("warning", "", "no residual block with attention in this model")]
        inputs = {"": x} if isinstance(model, ResidualBlock) else _block_inputs(model, x)
        try:
            modulation = {k: m.modulation for k, m in attention_maps(model, x).items()}
        except Exception:  # a broken block: the wiring checks below name it
            modulation = {}
        findings: list[Finding] = []
        for index, (name, block) in enumerate(blocks.items()):
            if name not in inputs:
                findings.append(Finding("error", name, "not reached: an earlier block fails"))
                continue
            findings += _check_block(
                name, index, block, inputs[name], trained, modulation.get(name)
            )
        return findings
    finally:
        model.train(was_training)

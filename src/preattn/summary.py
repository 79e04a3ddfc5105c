"""``summary(model, input_size)``: parameters, MACs, attention overhead and λ per block.

MACs come from PyTorch's own ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2 of the
convolutions and matrix products of one forward pass); element-wise work (sigmoids, the
attention products, BatchNorm in eval) is not counted, as in the CBAM and SENet papers'
tables. The attention share of a :class:`ResidualBlock` is what the block computes beyond
its branch ``F`` and skip ``S``: ``MACs(block) − MACs(F) − MACs(S)`` (attention and λ-mixing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .blocks import ResidualBlock
from .mixing import lambdas

__all__ = ["ModelSummary", "summary"]


@dataclass
class ModelSummary:
    """What :func:`summary` measured; ``str()`` renders it as a table."""

    name: str
    input_size: tuple[int, ...]
    params: int
    attention_params: int
    macs: int
    attention_macs: int
    lambdas: dict[str, float] = field(default_factory=dict)

    @property
    def base_params(self) -> int:
        """Parameters of the same model without attention (placement ``none``)."""
        return self.params - self.attention_params

    @property
    def base_macs(self) -> int:
        return self.macs - self.attention_macs

    def __str__(self) -> str:
        def pct(extra: int, base: int) -> str:
            return f"+{100 * extra / base:.2f}%" if base else "-"

        rows = [
            ("input", "x".join(map(str, self.input_size))),
            ("parameters", f"{self.params:,}"),
            ("  without attention", f"{self.base_params:,}"),
            (
                "  attention overhead",
                f"{self.attention_params:,} ({pct(self.attention_params, self.base_params)})",
            ),
            ("MACs", f"{self.macs / 1e9:.4f} G"),
            ("  without attention", f"{self.base_macs / 1e9:.4f} G"),
            (
                "  attention overhead",
                f"{self.attention_macs / 1e6:.3f} M ({pct(self.attention_macs, self.base_macs)})",
            ),
        ]
        width = max(len(k) for k, _ in rows)
        lines = [self.name, "-" * (width + 30)]
        lines += [f"{k:<{width}}  {v}" for k, v in rows]
        if self.lambdas:
            lines.append("λ per block (effective)")
            lines += [f"  {k:<{width - 2}}  {v:.4f}" for k, v in self.lambdas.items()]
        return "\n".join(lines)


def _attention_modules(model: nn.Module) -> list[nn.Module]:
    """The attention and λ-mixing modules of every ResidualBlock (for parameter counts)."""
    found: list[nn.Module] = []
    for module in model.modules():
        if isinstance(module, ResidualBlock):
            found += [m for m in (module.attention, module.mix) if m is not None]
    return found


class _MacCounter:
    """FLOPs spent inside ``modules`` (none nested in another), via forward hooks."""

    def __init__(self, modules: Sequence[nn.Module], mode: FlopCounterMode) -> None:
        self.mode = mode
        self.start = 0
        self.total = 0
        self.handles = []
        for m in modules:
            self.handles.append(m.register_forward_pre_hook(self._enter))
            self.handles.append(m.register_forward_hook(self._leave))

    def _enter(self, *_: object) -> None:
        self.start = self.mode.get_total_flops()

    def _leave(self, *_: object) -> None:
        self.total += self.mode.get_total_flops() - self.start

    def close(self) -> None:
        for h in self.handles:
            h.remove()


@torch.no_grad()
def summary(
    model: nn.Module, input_size: Sequence[int], *, name: str | None = None
) -> ModelSummary:
    """Measure ``model`` on one input of shape ``(1, *input_size)`` in eval mode.

    Args:
        model: any ``nn.Module``; attention is found in its :class:`ResidualBlock` s.
        input_size: ``(C, H, W)`` of one image.
    """
    input_size = tuple(int(v) for v in input_size)
    if len(input_size) != 3 or min(input_size) < 1:
        raise ValueError(f"input_size must be (C, H, W) with positive sizes, got {input_size}")
    attention = _attention_modules(model)
    params = sum(p.numel() for p in model.parameters())
    attention_params = sum(p.numel() for m in attention for p in m.parameters())
    was_training = model.training
    model.eval()
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    x = torch.zeros(1, *input_size, device=device)
    mode = FlopCounterMode(display=False)
    blocks = [m for m in model.modules() if isinstance(m, ResidualBlock)]
    counters = [
        _MacCounter(blocks, mode),
        _MacCounter([b.transform for b in blocks], mode),
        _MacCounter([b.skip for b in blocks if b.skip is not None], mode),
    ]
    try:
        with mode:
            model(x)
    finally:
        for counter in counters:
            counter.close()
        model.train(was_training)
    block_flops, branch_flops, skip_flops = (c.total for c in counters)
    return ModelSummary(
        name=name or type(model).__name__,
        input_size=input_size,
        params=params,
        attention_params=attention_params,
        macs=mode.get_total_flops() // 2,
        attention_macs=(block_flops - branch_flops - skip_flops) // 2,
        lambdas=lambdas(model),
    )

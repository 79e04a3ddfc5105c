"""Deterministic cost counts: full-size passes and allocations of one step, per operator.

Timings on a small shared machine move by ±10 %; counts do not. A *full-size pass* is an
ATen operator call that reads or writes a tensor with at least as many elements as the
block's input (a read or write of the whole activation); a *full-size allocation* is such
a call that returns a new full-size tensor (not ``out=`` or in-place). On CPU a new
full-size tensor is more than its arithmetic: glibc returns large blocks to the system,
so each allocation also pays the page faults of fresh memory.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

__all__ = ["FullSizeCounts", "count_full_size"]


@dataclass
class FullSizeCounts:
    """Full-size passes and allocations of one call, with the operators behind them."""

    passes: int = 0
    allocations: int = 0
    by_operator: Counter[str] = field(default_factory=Counter)


class _Counter(TorchDispatchMode):
    def __init__(self, full: int) -> None:
        super().__init__()
        self.full = full
        self.counts = FullSizeCounts()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if not any(_is_full(t, self.full) for t in tree_leaves((args, kwargs, out))):
            return out
        new = [t for t in tree_leaves(out) if _is_full(t, self.full)]
        mutates = func._schema.is_mutable
        if new and not mutates and _aliases(new, args, kwargs):
            return out  # a view (view, permute, expand, detach): no pass over the data
        name = func.overloadpacket.__name__
        self.counts.passes += 1
        if new and not mutates:
            self.counts.allocations += 1
            name += " (new)"
        self.counts.by_operator[name] += 1
        return out


def _is_full(t: object, full: int) -> bool:
    return isinstance(t, torch.Tensor) and t.numel() >= full


def _aliases(new: list[torch.Tensor], args: tuple, kwargs: dict) -> bool:
    """A view of an argument (``view``, ``permute``, ``expand``...) allocates nothing."""
    storages = {
        t.untyped_storage().data_ptr()
        for t in tree_leaves((args, kwargs))
        if isinstance(t, torch.Tensor)
    }
    return all(t.untyped_storage().data_ptr() in storages for t in new)


def count_full_size(step: Callable[[], object], full: int) -> FullSizeCounts:
    """Run ``step()`` once and count its full-size passes and allocations (``full`` =
    element count of a full-size tensor)."""
    mode = _Counter(full)
    with mode:
        step()
    return mode.counts

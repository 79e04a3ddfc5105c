"""Interleaved timing and saved-for-backward memory, shared by the benchmark scripts.

Every repeat times each candidate once, in turn, so slow drifts of the machine (other
load, frequency changes) hit all candidates alike; ratios are taken per repeat against the
baseline measured in the same repeat, then summarised by median, min and max.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def time_once(step: Callable[[], object], iterations: int) -> float:
    """Seconds per call of ``step``, averaged over ``iterations`` calls."""
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    return (time.perf_counter() - start) / iterations


def interleaved(
    steps: dict[str, Callable[[], object]], *, repeats: int, iterations: int, warmup: int = 2
) -> dict[str, list[float]]:
    """Per-repeat seconds per call of each step; the steps run in turn within a repeat."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            times[name].append(time_once(step, iterations))
    return times


def ratios(times: dict[str, list[float]], baseline: str) -> dict[str, tuple[float, float, float]]:
    """(median, min, max) of the per-repeat ratio of each step to ``baseline``."""
    out = {}
    for name, values in times.items():
        r = [v / b for v, b in zip(values, times[baseline], strict=True)]
        out[name] = (statistics.median(r), min(r), max(r))
    return out


def saved_bytes(forward: Callable[[], torch.Tensor]) -> int:
    """Bytes of the distinct storages autograd saves for backward during ``forward()``."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward()
    return sum(storages.values())

"""Interleaved timing and saved-for-backward memory, shared by the benchmark scripts.

Every repeat times each candidate once, in turn, so slow drifts of the machine (other
load, frequency changes) hit all candidates alike; ratios are taken per repeat against the
baseline measured in the same repeat, then summarised by median, min and max.

On a CUDA device the work is timed with CUDA events around the calls, after a
synchronisation, so the time is the device's work and not the host's kernel launches.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def time_once(
    step: Callable[[], object], iterations: int, device: torch.device | None = None
) -> float:
    """Seconds per call of ``step``, averaged over ``iterations`` calls (CUDA events on a
    CUDA ``device``, the host's clock otherwise)."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
        start_event = torch.cuda.Event(enable_timing=True)
        end_event = torch.cuda.Event(enable_timing=True)
        start_event.record()
        for _ in range(iterations):
            step()
        end_event.record()
        end_event.synchronize()
        return start_event.elapsed_time(end_event) / 1000 / iterations
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    return (time.perf_counter() - start) / iterations


def interleaved(
    steps: dict[str, Callable[[], object]],
    *,
    repeats: int,
    iterations: int,
    warmup: int = 2,
    device: torch.device | None = None,
) -> dict[str, list[float]]:
    """Per-repeat seconds per call of each step; the steps run in turn within a repeat."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            times[name].append(time_once(step, iterations, device))
    return times


def peak_memory(step: Callable[[], object], device: torch.device) -> int | None:
    """Peak bytes allocated on a CUDA ``device`` during one call of ``step`` beyond what was
    allocated before it (None on other devices)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


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

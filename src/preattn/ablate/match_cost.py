"""A plain network as costly as an attended one: ``match_cost`` in a grid.

``match_cost: {variant: none-wide, to: pre}`` asks that the variant ``none-wide`` (a
network without attention) get the channel width at which one of its training steps takes
as long as one of ``pre``'s: "spend the attention's compute on width instead" is then a
fair baseline, measured and not guessed.

:func:`match_width` measures it on this machine before anything trains: SGD steps (forward,
backward, update) of ``pre`` and of the plain network at widths 1 and
:data:`PROBE_WIDTH`, interleaved (each repeat times every candidate once, in turn), on
random inputs of the runs' shape, batch size, precision and memory format. Step time is
modelled as ``t(w) = a + b·w²`` (convolution cost grows with the square of the width)
through the two plain medians and solved for ``t(w) = t_pre``. Step time is not smooth in
the width: kernels differ with the channel counts (on a bf16 CPU with one thread, plain
SimpleCNN measured 0.84x ``pre``'s step at width 1, where the fit was made, but 1.14x at the
fitted 1.097 and 1.17x at 1.125). So the fitted width and the nearest widths on a grid of
eighths are timed against ``pre`` again, interleaved, and the one whose measured ratio is
closest to 1 is kept (all timings and that ratio are saved and reported). The result is saved in
``OUT/match_cost.json`` and reused by every later ``ablate`` on that folder, so the
variant's runs keep one width across resumes.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._io import atomic_write_text
from ..data.registry import DATASET_SPECS
from ..train.build import build_model
from ..train.config import ConfigError, TrainConfig
from ..train.distributed import pick_device
from ..train.precision import amp_dtype

__all__ = ["MATCH_FILE", "PROBE_WIDTH", "match_width", "matched_widths"]

MATCH_FILE = "match_cost.json"
PROBE_WIDTH = 1.5


def _step(config: TrainConfig) -> Callable[[], None]:
    """One SGD step of ``config``'s network on random inputs (CPU or the config's device)."""
    spec = DATASET_SPECS[config.dataset]
    classes = spec.classes or tuple(str(i) for i in range(10))
    info = spec.info(config.image_size, classes)
    device = pick_device(config.device)
    fmt = torch.channels_last if config.channels_last else torch.contiguous_format
    model = build_model(config, info).to(device, memory_format=fmt).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    size = info.image_size
    x = torch.randn(config.batch_size, info.in_chans, size, size, device=device)
    x = x.contiguous(memory_format=fmt)
    y = torch.randint(0, info.num_classes, (config.batch_size,), device=device)
    dtype = amp_dtype(config.amp, device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = nn.functional.cross_entropy(model(x).float(), y)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return step


def _interleaved(steps: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median seconds per step of each candidate over ``repeats`` interleaved repeats."""
    for step in steps.values():
        step()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def match_width(target: TrainConfig, plain: TrainConfig, *, repeats: int = 7) -> dict[str, Any]:
    """The width at which ``plain``'s training step costs ``target``'s (module docstring):
    ``{"width", "ratio"  (plain at that width / target, checked), "seconds": {...}}``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        first = _interleaved(
            {
                "target": _step(target),
                "plain@1": _step(plain.replace(width=1.0)),
                f"plain@{PROBE_WIDTH}": _step(plain.replace(width=PROBE_WIDTH)),
            },
            repeats,
        )
        t1, tp, tt = first["plain@1"], first[f"plain@{PROBE_WIDTH}"], first["target"]
        b = max((tp - t1) / (PROBE_WIDTH**2 - 1), 1e-12)
        a = t1 - b
        fitted = round(min(math.sqrt(max((tt - a) / b, 1.0)), 4.0), 3)
        candidates = sorted(
            {fitted, max(1.0, math.floor(8 * fitted) / 8), min(4.0, math.ceil(8 * fitted) / 8)}
        )
        check = _interleaved(
            {
                "target": _step(target),
                **{f"plain@{w}": _step(plain.replace(width=w)) for w in candidates},
            },
            repeats,
        )
    ratios = {w: check[f"plain@{w}"] / check["target"] for w in candidates}
    width = min(candidates, key=lambda w: abs(math.log(ratios[w])))
    return {
        "width": width,
        "ratio": ratios[width],
        "fitted": fitted,
        "seconds": {
            **first,
            **{k: v for k, v in check.items() if k != "target"},
            "target (check)": check["target"],
        },
        "repeats": repeats,
    }


def matched_widths(
    grid: Any,
    out: Path,
    *,
    measure: bool,
    threads: int | None = None,
    progress: Callable[[str], None] = print,
) -> dict[str, dict[str, Any]]:
    """``{variant: match_width result}`` of ``grid.match_cost``: read from
    ``out/match_cost.json``, else measured now (``measure``; with ``threads`` torch threads,
    those the runs will train with, since the cost ratio depends on them) and saved there."""
    if grid.match_cost is None:
        return {}
    variant, to = grid.match_cost["variant"], grid.match_cost["to"]
    path = Path(out) / MATCH_FILE
    saved = json.loads(path.read_text()) if path.is_file() else {}
    if variant in saved and saved[variant].get("to") == to:
        return {variant: saved[variant]}
    if not measure:
        raise ConfigError(
            f"{grid.source}: match_cost {variant} -> {to} has not been measured in {out} "
            "(run ablate without --report-only first)"
        )
    seed = grid.seeds[0]
    progress(f"match_cost: timing {to} against a plain network to size {variant} ...")
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        result = match_width(
            grid.config(to, seed, out, matched=False),
            grid.config(variant, seed, out, matched=False),
        )
    finally:
        torch.set_num_threads(before)
    result["to"] = to
    result["threads"] = threads or before
    saved[variant] = result
    Path(out).mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(saved, indent=1) + "\n")
    progress(
        f"match_cost: {variant} gets width {result['width']:.3f}: its step measured "
        f"{result['ratio']:.2f}x {to}'s"
    )
    return {variant: result}

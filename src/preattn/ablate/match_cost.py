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
fitted 1.097 and 1.17x at 1.125), and a first round can misjudge the target (on the
cluttered 34 × 34 canvases it once put plain SimpleCNN at width 1 as dear as ``pre``, which
the check then measured at 0.87x). So the fitted width and the nearest widths on a grid of
eighths are timed against ``pre`` again, interleaved, and the search goes on from the
measured ratios: up by eighths while every timed width is cheaper than ``pre``, then by
halving the bracket between the cheaper and the dearer width closest to it (on a grid of
1/:data:`WIDTH_STEPS`), until a width is within the tolerance or no width of that grid lies
between them. All timings are saved and reported.

What is kept depends on the grid's ``cost``: ``matched`` (the default) keeps the width
measured closest to ``pre``'s step and refuses it when that is off by more than the
tolerance; ``at_least`` keeps the narrowest width whose step measured no less than
``1 − tolerance`` times ``pre``'s, for a baseline that must cost at least about what the
attended network does when step time jumps with the width (on this CPU in bf16 plain
SimpleCNN measured 0.87x ``pre`` at width 1 and 1.11x at 33/32 on the cluttered canvases),
refuses it when none does, and the report names the widest width measured below it, so
the two plain networks bracket ``pre``.

The check is timed until it can be trusted: each repeat gives a ratio (plain / target, the
two steps timed next to each other), the ratio is their median, and rounds of repeats are
added until the median's 95 % interval (order statistics, :func:`median_interval`) lies
within ±5 % (:data:`TOLERANCE`) of it, or :data:`MAX_REPEATS` are spent (then the result
says it was not placed). The ratio is reported with the min–max of the repeats and that
interval. A width whose ratio is off 1 by more than the tolerance (``at_least``: below
``1 − tolerance``) is refused (one line, a ``ConfigError``), and a saved width is timed
again before its runs train and refused the same way when the machine no longer gives that
ratio; a width saved under the other ``cost`` is refused too (delete the file to size it
again). The result is saved in
``OUT/match_cost.json`` and reused by every later ``ablate`` on that folder, so the
variant's runs keep one width across resumes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import statistics
import time
from collections.abc import Callable, Iterator
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
from .results import COST_MODES, MatchCost

__all__ = [
    "COST_MODES",
    "MATCH_FILE",
    "PROBE_WIDTH",
    "TOLERANCE",
    "check_width",
    "match_width",
    "matched_widths",
    "median_interval",
    "ratio_summary",
    "timed_ratios",
]

_logger = logging.getLogger(__name__)

MATCH_FILE = "match_cost.json"
PROBE_WIDTH = 1.5
# the matched plain step may cost this much more or less than the target's (relative)
TOLERANCE = 0.05
# at most this many interleaved repeats to place a ratio within the tolerance
MAX_REPEATS = 42
# the widest plain network the search times (4x the channels: 16x a convolution's cost)
MAX_SEARCH_WIDTH = 4.0
# the search's finest width step, 1/128: SimpleCNN's widest stage (128 channels) gains one
# channel per step (its channel counts are round(w·32), round(w·64), round(w·128))
WIDTH_STEPS = 128


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


# the clock steps are timed with (a fake one in tests)
_clock: Callable[[], float] = time.perf_counter


def _interleaved(steps: dict[str, Callable[[], None]], repeats: int) -> dict[str, list[float]]:
    """Seconds per step of each candidate in each of ``repeats`` interleaved repeats (each
    repeat times every candidate once, in turn; one untimed warm-up step each first)."""
    for step in steps.values():
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            started = _clock()
            step()
            times[name].append(_clock() - started)
    return times


def median_interval(values: list[float], coverage: float = 0.95) -> tuple[float, float]:
    """A distribution-free interval for the median of ``values``: the order statistics
    ``(v_(k), v_(n+1-k))`` with the largest ``k`` whose binomial coverage
    ``1 − 2·P(Bin(n, ½) < k)`` is at least ``coverage`` (the whole range while ``n`` is too
    small for it: at least 6 values are needed for 95 %)."""
    ordered = sorted(values)
    n = len(ordered)
    k, tail = 1, 0.0
    while k < (n + 1) // 2:
        tail += math.comb(n, k - 1) / 2**n  # P(Bin(n, ½) <= k − 1)
        if 1 - 2 * (tail + math.comb(n, k) / 2**n) < coverage:
            break
        k += 1
    return ordered[k - 1], ordered[n - k]


def ratio_summary(plain: list[float], target: list[float]) -> dict[str, Any]:
    """Per-repeat ratios ``plain / target`` (interleaved pairs): ``{"ratio"`` (median),
    ``"ratio_interval"`` (95 % interval of the median, :func:`median_interval`),
    ``"ratio_min", "ratio_max", "repeats"}``."""
    ratios = [p / t for p, t in zip(plain, target, strict=True)]
    low, high = median_interval(ratios)
    return {
        "ratio": statistics.median(ratios),
        "ratio_interval": [low, high],
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "repeats": len(ratios),
    }


def _placed(summary: dict[str, Any], tolerance: float) -> bool:
    """The median's interval lies within ``ratio·(1 ± tolerance)``."""
    low, high = summary["ratio_interval"]
    return high <= summary["ratio"] * (1 + tolerance) and low >= summary["ratio"] * (1 - tolerance)


def timed_ratios(
    target: Callable[[], None],
    plains: dict[float, Callable[[], None]],
    *,
    tolerance: float = TOLERANCE,
    repeats: int = 7,
    max_repeats: int = MAX_REPEATS,
) -> tuple[dict[float, dict[str, Any]], dict[str, list[float]]]:
    """``{width: ratio_summary}`` of each plain step against ``target``, timed interleaved in
    rounds of ``repeats`` until the ratio closest to 1 is placed within ``±tolerance`` by
    its interval or ``max_repeats`` repeats are spent (then its ``"placed"`` is False);
    with all seconds measured."""
    steps = {"target": target, **{f"plain@{w}": step for w, step in plains.items()}}
    times: dict[str, list[float]] = {name: [] for name in steps}
    while True:
        for name, values in _interleaved(steps, repeats).items():
            times[name].extend(values)
        summaries = {w: ratio_summary(times[f"plain@{w}"], times["target"]) for w in plains}
        closest = min(plains, key=lambda w: abs(math.log(summaries[w]["ratio"])))
        placed = _placed(summaries[closest], tolerance)
        if placed or len(times["target"]) + repeats > max_repeats:
            for summary in summaries.values():
                summary["placed"] = _placed(summary, tolerance)
            return summaries, times


def _next_width(ratios: dict[float, float], tolerance: float) -> float | None:
    """The width to time next, or None when the search is done: done when a timed width
    is within ``±tolerance``, when even width 1 costs more than the target (the floor;
    width 1 is timed first when every timed width was dearer), or
    when the bracket ``(cheaper, dearer)`` has no width of the 1/:data:`WIDTH_STEPS` grid
    strictly inside it; otherwise the next eighth above the widest timed one while every
    timed width is cheaper (up to :data:`MAX_SEARCH_WIDTH`), else the midpoint of the
    bracket on that grid."""
    if any(abs(r - 1) <= tolerance for r in ratios.values()):
        return None
    cheaper = [w for w, r in ratios.items() if r < 1]
    dearer = [w for w, r in ratios.items() if r > 1]
    if not cheaper:
        return 1.0 if 1.0 not in ratios else None
    low = max(cheaper)
    high = min((w for w in dearer if w > low), default=None)
    if high is None:
        step = math.floor(8 * low + 1e-9) / 8 + 1 / 8
        return step if step <= MAX_SEARCH_WIDTH and step not in ratios else None
    middle = round(WIDTH_STEPS * (low + high) / 2) / WIDTH_STEPS
    return middle if low < middle < high and middle not in ratios else None


def _chosen(ratios: dict[float, float], cost: str, tolerance: float) -> float:
    """The width kept: the narrowest at or above the target (ratio ≥ 1 − tolerance) for
    ``cost="at_least"`` (the widest timed when none is), else the one closest to it."""
    if cost == "at_least":
        enough = [w for w, r in ratios.items() if r >= 1 - tolerance]
        return min(enough) if enough else max(ratios)
    return min(ratios, key=lambda w: abs(math.log(ratios[w])))


def match_width(
    target: TrainConfig,
    plain: TrainConfig,
    *,
    repeats: int = 7,
    tolerance: float = TOLERANCE,
    cost: str = "matched",
) -> dict[str, Any]:
    """The width at which ``plain``'s training step costs ``target``'s (``cost="matched"``:
    the closest measured; ``"at_least"``: the narrowest measured at no less than
    ``1 − tolerance`` times it; module docstring):
    ``{"width", "ratio"`` (plain at that width / target, median of the checked repeats),
    ``"ratio_interval", "ratio_min", "ratio_max", "repeats", "placed"`` (the interval lies
    within ``±tolerance`` of the ratio), ``"cost", "fitted", "candidates", "seconds": {...}}``.

    The fit ``t(w) = a + b·w²`` proposes a width; it and the nearest eighths are timed
    against the target, then (:func:`_next_width`) one width at a time is added, each
    timed against the target again, until one is within the tolerance or the cheaper and
    the dearer widths closest to the target have nothing between them. A first round that
    misjudges the cost (a noisy repeat, a kernel slower at one width) is corrected by the
    measured ratios, not kept."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        first = {
            name: statistics.median(values)
            for name, values in _interleaved(
                {
                    "target": _step(target),
                    "plain@1": _step(plain.replace(width=1.0)),
                    f"plain@{PROBE_WIDTH}": _step(plain.replace(width=PROBE_WIDTH)),
                },
                repeats,
            ).items()
        }
        t1, tp, tt = first["plain@1"], first[f"plain@{PROBE_WIDTH}"], first["target"]
        b = max((tp - t1) / (PROBE_WIDTH**2 - 1), 1e-12)
        a = t1 - b
        fitted = round(min(math.sqrt(max((tt - a) / b, 1.0)), MAX_SEARCH_WIDTH), 3)
        pending = sorted(
            {
                fitted,
                max(1.0, math.floor(8 * fitted) / 8),
                min(MAX_SEARCH_WIDTH, math.ceil(8 * fitted) / 8),
            }
        )
        summaries: dict[float, dict[str, Any]] = {}
        seconds: dict[str, float] = dict(first)
        rounds = 0
        while pending:
            timed, times = timed_ratios(
                _step(target),
                {w: _step(plain.replace(width=w)) for w in pending},
                tolerance=tolerance,
                repeats=repeats,
            )
            summaries.update(timed)
            seconds.update({k: statistics.median(v) for k, v in times.items() if k != "target"})
            rounds += 1
            label = "target (check)" if rounds == 1 else f"target (check {rounds})"
            seconds[label] = statistics.median(times["target"])
            following = _next_width({w: s["ratio"] for w, s in summaries.items()}, tolerance)
            pending = [] if following is None else [following]
    width = _chosen({w: s["ratio"] for w, s in summaries.items()}, cost, tolerance)
    return {
        "width": width,
        **summaries[width],
        "cost": cost,
        "tolerance": tolerance,
        "fitted": fitted,
        "candidates": {str(w): summaries[w] for w in sorted(summaries)},
        "seconds": seconds,
    }


def check_width(
    target: TrainConfig, plain: TrainConfig, *, repeats: int = 7, tolerance: float = TOLERANCE
) -> dict[str, Any]:
    """``plain`` (at its matched width) timed against ``target`` again, interleaved until
    placed (:func:`timed_ratios`): its ``ratio_summary`` with ``"placed"``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        summaries, _ = timed_ratios(
            _step(target),
            {plain.width: _step(plain)},
            tolerance=tolerance,
            repeats=repeats,
        )
    return summaries[plain.width]


def describe(result: dict[str, Any]) -> str:
    """``1.03x (min–max 0.97–1.10, 95 % interval 1.00–1.05, 14 repeats)``."""
    low, high = result["ratio_interval"]
    return (
        f"{result['ratio']:.2f}x (min–max {result['ratio_min']:.2f}–{result['ratio_max']:.2f}, "
        f"95 % interval {low:.2f}–{high:.2f}, {result['repeats']} repeats)"
    )


@contextlib.contextmanager
def _threads(threads: int | None) -> Iterator[int]:
    """``threads`` torch threads for the ``with`` block (None: as they are); yields the
    count in use."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield threads or before
    finally:
        torch.set_num_threads(before)


def _refuse_if_off(variant: str, to: str, result: dict[str, Any], when: str, cost: str) -> None:
    """ConfigError (one line) when the ratio is off 1 by more than the tolerance
    (``cost="at_least"``: below ``1 − tolerance``)."""
    tolerance = result.get("tolerance", TOLERANCE)
    if cost == "at_least" and result["ratio"] < 1 - tolerance:
        off = f"below {1 - tolerance:.2f}x; not training a baseline cheaper than {to}"
    elif cost != "at_least" and abs(result["ratio"] - 1) > tolerance:
        off = f"off by more than ±{tolerance:.0%}; not training a baseline that is not matched"
    else:
        return
    raise ConfigError(
        f"match_cost: {variant} at width {result['width']:.3f} {when} {describe(result)} "
        f"{to}'s step, {off} (delete {MATCH_FILE} to size it again)"
    )


def matched_widths(
    grid: Any,
    out: Path,
    *,
    measure: bool,
    check: bool = False,
    threads: int | None = None,
    progress: Callable[[str], None] = _logger.info,
) -> dict[str, dict[str, Any]]:
    """``{variant: match_width result}`` of ``grid.match_cost``: read from
    ``out/match_cost.json``, else measured now (``measure``; with ``threads`` torch threads,
    those the runs will train with, since the cost ratio depends on them) and saved there.

    A width measured now whose ratio is off 1 by more than the tolerance (±5 %; with the
    grid's ``cost: at_least``, below 1 − tolerance) is refused with a one-line
    ``ConfigError`` (and not saved); the returned result then carries
    ``"measured_now": True``. ``check`` (its runs are about to train): a saved width is timed
    against ``to`` again (:func:`check_width`) and refused the same way. A ratio whose
    interval stayed wider than the tolerance after :data:`MAX_REPEATS` repeats is reported
    as such.
    """
    if grid.match_cost is None:
        return {}
    variant, to = grid.match_cost["variant"], grid.match_cost["to"]
    cost = grid.match_cost.get("cost", "matched")
    path = Path(out) / MATCH_FILE
    saved = json.loads(path.read_text()) if path.is_file() else {}
    seed = grid.seeds[0]
    earlier = saved.get(variant, {})
    if earlier.get("to") == to and earlier.get("cost", "matched") != cost:
        raise ConfigError(
            f"match_cost: {variant} was sized with cost: {earlier.get('cost', 'matched')} in "
            f"{path}, the grid declares cost: {cost}; delete {MATCH_FILE} to size it again "
            "(its finished runs keep the width they trained with)"
        )
    if earlier.get("to") == to:
        result = saved[variant]
        if check:
            progress(f"match_cost: timing {variant} at width {result['width']:.3f} again ...")
            plain = grid.config(variant, seed, out, matched=False).replace(width=result["width"])
            with _threads(threads or result.get("threads")):
                again = check_width(grid.config(to, seed, out, matched=False), plain)
            again = {**again, "width": result["width"], "tolerance": TOLERANCE}
            progress(f"match_cost: {variant} now measures {describe(again)} {to}'s step")
            _refuse_if_off(variant, to, again, "now measures", cost)
        return {variant: result}
    if not measure:
        raise ConfigError(
            f"{grid.source}: match_cost {variant} -> {to} has not been measured in {out} "
            "(run ablate without --report-only first)"
        )
    progress(f"match_cost: timing {to} against a plain network to size {variant} ...")
    with _threads(threads) as used:
        result = match_width(
            grid.config(to, seed, out, matched=False),
            grid.config(variant, seed, out, matched=False),
            cost=cost,
        )
    result["to"] = to
    result["threads"] = used
    below = MatchCost(result).below
    progress(
        f"match_cost: {variant} gets width {result['width']:.3f}"
        + ("" if below is None else f" (width {below[0]:.3f} measured {below[1]:.2f}x)")
        + ": its step measured "
        f"{describe(result)} {to}'s"
        + ("" if result["placed"] else f", not placed within ±{TOLERANCE:.0%} by the timing")
    )
    _refuse_if_off(variant, to, result, "measured", cost)
    saved[variant] = result
    Path(out).mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(saved, indent=1) + "\n")
    return {variant: {**result, "measured_now": True}}

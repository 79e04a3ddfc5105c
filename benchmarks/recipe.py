"""SimpleCNN per variant in the recipe people run, and in float32: eager and compiled,
training and inference, as ratios to the plain network measured in the same process.

Run: ``python benchmarks/recipe.py [--repeats 7] [--threads 1] [--before REV]
[--modes eager,compiled] [--precisions recipe,float32]``.

The recipe is bf16 autocast with channels-last where the CPU computes bf16 natively
(:func:`preattn.train.precision.cpu_has_native_bf16`), float32 with channels-last
otherwise (what ``--amp auto --channels-last`` trains with); ``float32`` is float32 with
channels-last everywhere. Variants: ``none`` (plain), ``pre`` (Pattern-3: CBAM on the
block input, λ = 0.1) and ``cbam`` (standard CBAM on the residual branch, no λ), as the
evidence grids define them, on Fashion-MNIST shapes (1×28×28, batch 128, random data).
Train = one SGD step (forward, backward, update), eval = one forward under
``torch.inference_mode()``. Every repeat times each variant once, in turn; the ratio to
``none`` is taken per repeat and summarised as median (min–max). ``--before REV`` adds
``pre`` and ``cbam`` with the attention code of git revision ``REV`` (``_revision.py``)
to the eager tables: before and after in the same process. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _revision import attention_at, use_revision

from preattn.models.simple import SimpleCNN
from preattn.train.precision import cpu_has_native_bf16

VARIANTS: dict[str, dict[str, object]] = {
    "none": {"placement": "none"},
    "pre": {"placement": "pre"},
    "cbam": {"placement": "branch", "lam": None},
}
BATCH = 128


@dataclass(frozen=True)
class Precision:
    name: str
    dtype: torch.dtype | None  # autocast dtype, None: float32


def precisions() -> dict[str, Precision]:
    """``recipe`` (what ``--amp auto`` picks on this CPU) and ``float32``."""
    native = cpu_has_native_bf16()
    recipe = Precision(
        "bf16 + channels-last" if native else "float32 + channels-last",
        torch.bfloat16 if native else None,
    )
    return {"recipe": recipe, "float32": Precision("float32 + channels-last", None)}


def _network(variant: str) -> nn.Module:
    torch.manual_seed(0)
    return SimpleCNN(10, in_chans=1, **VARIANTS[variant]).to(memory_format=torch.channels_last)


def make_step(
    model: nn.Module,
    precision: Precision,
    phase: str,
    *,
    compiled: bool = False,
    attention: ModuleType | None = None,
) -> Callable[[], None]:
    """One training step (``phase="train"``) or one inference forward (``"eval"``)."""
    x = torch.randn(BATCH, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (BATCH,))
    run = torch.compile(model) if compiled else model
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    dtype = precision.dtype

    def forward() -> torch.Tensor:
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            return run(x)

    def train() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        with use_revision(model, attention):
            loss = nn.functional.cross_entropy(forward().float(), y)
            loss.backward()
        optimizer.step()

    def evaluate() -> None:
        model.eval()
        with torch.inference_mode(), use_revision(model, attention):
            forward()

    return train if phase == "train" else evaluate


def interleaved(steps: dict[str, Callable[[], None]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each step per repeat; two untimed warm-up calls each (compiles)."""
    for step in steps.values():
        step()
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - started)
    return times


def summary(times: dict[str, list[float]], baseline: str = "none") -> dict[str, tuple]:
    """``{name: (median ratio, min, max, median ms)}``, ratios per repeat to ``baseline``."""
    out = {}
    for name, values in times.items():
        ratios = [v / b for v, b in zip(values, times[baseline], strict=True)]
        out[name] = (
            statistics.median(ratios),
            min(ratios),
            max(ratios),
            statistics.median(values) * 1000,
        )
    return out


def measure(
    precision: Precision, mode: str, repeats: int, before: ModuleType | None, revision: str
) -> dict[str, dict[str, tuple]]:
    """``{phase: summary}`` for one precision and mode (eager or compiled)."""
    compiled = mode == "compiled"
    results = {}
    for phase in ("train", "eval"):
        steps = {
            name: make_step(_network(name), precision, phase, compiled=compiled)
            for name in VARIANTS
        }
        if before is not None and not compiled:
            for name in ("pre", "cbam"):
                steps[f"{name} @ {revision}"] = make_step(
                    _network(name), precision, phase, attention=before
                )
        results[phase] = summary(interleaved(steps, repeats))
    return results


def cell(value: tuple) -> str:
    return f"{value[0]:.3f} ({value[1]:.2f}–{value[2]:.2f})"


Results = dict[tuple[str, str], dict[str, dict[str, tuple]]]


def report(keys: list[str], modes: list[str], repeats: int, revision: str = "") -> Results:
    """Measure and print the table; ``{(precision key, mode): {phase: summary}}``."""
    before = attention_at(revision) if revision else None
    table = precisions()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), SimpleCNN, "
        f"1×28×28, batch {BATCH}, {repeats} interleaved repeats; ratio to `none`, "
        "median (min–max)\n"
    )
    names = list(VARIANTS)[1:]
    if before is not None:
        names += [f"{n} @ {revision}" for n in ("pre", "cbam")]
    print("| precision | mode | phase | `none` ms | " + " | ".join(f"`{n}`" for n in names) + " |")
    print("|---" * (4 + len(names)) + "|")
    out: Results = {}
    for key in keys:
        precision = table[key]
        for mode in modes:
            out[key, mode] = measure(precision, mode, repeats, before, revision)
            for phase, result in out[key, mode].items():
                cells = [cell(result[n]) if n in result else "" for n in names]
                print(
                    f"| {precision.name} | {mode} | {phase} | {result['none'][3]:.0f} | "
                    + " | ".join(cells)
                    + " |",
                    flush=True,
                )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--before", default="", help="git revision to compare (eager)")
    parser.add_argument("--modes", default="eager,compiled")
    parser.add_argument("--precisions", default="recipe,float32")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report(args.precisions.split(","), args.modes.split(","), args.repeats, args.before)


if __name__ == "__main__":
    main()

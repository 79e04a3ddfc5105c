"""Where Pattern-3's time goes in the recipe people run: ``torch.profiler`` per operator
of SimpleCNN's training step, ``pre`` against ``none``.

Run: ``python benchmarks/profile_recipe.py [--steps 12] [--top 20] [--threads 1]
[--precision recipe|float32] [--before REV]``.

The step is ``recipe.py``'s (bf16 autocast + channels-last where the CPU computes bf16
natively, Fashion-MNIST shapes, batch 128, SGD). The networks are profiled in
alternating rounds of one step each (after two warm-up steps), so a drift of the
machine's speed hits all of them; the table gives per operator and input shape the
self CPU milliseconds per step, largest difference first, and the operators that
touch a tensor of the attended size ((B, 64, 28, 28): the attention's memory-bound
passes). ``--before REV`` adds ``pre`` with the attention code of git revision ``REV``.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import recipe
from _revision import attention_at

Key = tuple[str, str]


def self_times(step: Callable[[], None]) -> dict[Key, float]:
    """Self CPU milliseconds of one call of ``step`` per (operator, input shapes)."""
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        step()
    out: dict[Key, float] = defaultdict(float)
    for event in prof.key_averages(group_by_input_shape=True):
        shapes = ", ".join(str(list(s)) for s in event.input_shapes if s)
        out[(event.key, shapes)] += event.self_cpu_time_total / 1000
    return out


def alternating(steps: dict[str, Callable[[], None]], rounds: int) -> dict[str, dict[Key, float]]:
    """Mean self milliseconds per step of each candidate over ``rounds`` alternating rounds."""
    for step in steps.values():
        step()
        step()
    totals: dict[str, dict[Key, float]] = {name: defaultdict(float) for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            for key, ms in self_times(step).items():
                totals[name][key] += ms / rounds
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--precision", default="recipe", choices=["recipe", "float32"])
    parser.add_argument("--before", default="", help="git revision to compare")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    precision = recipe.precisions()[args.precision]
    steps = {
        name: recipe.make_step(recipe._network(name), precision, "train")
        for name in ("none", "pre")
    }
    if args.before:
        before = attention_at(args.before)
        steps[f"pre @ {args.before}"] = recipe.make_step(
            recipe._network("pre"), precision, "train", attention=before
        )
    times = alternating(steps, args.steps)
    names = list(steps)
    keys = set().union(*(t.keys() for t in times.values()))
    last = names[-1]

    def extra(key: Key) -> float:
        return times[last].get(key, 0.0) - times["none"].get(key, 0.0)

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), SimpleCNN, "
        f"{precision.name}, batch {recipe.BATCH}, {args.steps} profiled steps each; "
        "self CPU ms per step\n"
    )
    print("| operator | input shapes | " + " | ".join(f"`{n}`" for n in names) + " |")
    print("|---" * (2 + len(names)) + "|")
    for key in sorted(keys, key=extra, reverse=True)[: args.top]:
        cells = " | ".join(f"{times[n].get(key, 0.0):.2f}" for n in names)
        print(f"| `{key[0]}` | {key[1][:60]} | {cells} |")
    full = str([recipe.BATCH, 64, 28, 28])
    for label, select in (
        ("**all operators**", lambda k: True),
        (f"operators on a {full} tensor", lambda k: full in k[1]),
    ):
        cells = " | ".join(
            f"{sum(ms for k, ms in times[n].items() if select(k)):.1f}" for n in names
        )
        print(f"| {label} | | {cells} |")
    totals = {n: sum(times[n].values()) for n in names}
    print("\n" + ", ".join(f"`{n}` / `none`: {totals[n] / totals['none']:.3f}" for n in names[1:]))


if __name__ == "__main__":
    main()

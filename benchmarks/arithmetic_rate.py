"""How close SimpleCNN's training step comes to the machine's arithmetic rate.

Run: ``python benchmarks/arithmetic_rate.py [--repeats 7] [--iterations 3] [--size 2048]``.

The step is ``recipe.py``'s (bf16 autocast + channels-last where the CPU computes bf16
natively, float32 otherwise; Fashion-MNIST shapes, batch 128, SGD). Its floating-point
operations per step, forward and backward, are counted once by PyTorch's
``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products: what
dominates the step). The reference rate is a square matrix product of ``--size`` in the
same precision on the same threads — about the fastest work the machine does — timed
interleaved with the steps in every repeat. The table gives each step's milliseconds,
its GFLOP/s and that rate's share of the matrix product's, medians over the repeats: a
step already at a large share of it cannot be made much faster without less arithmetic.
Nothing here is a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import recipe
from _timing import interleaved


def step_flops(step: Callable[[], None]) -> int:
    """Floating-point operations of one call of ``step`` (forward and backward)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=3, help="calls per timing")
    parser.add_argument("--size", type=int, default=2048, help="side of the matrix product")
    args = parser.parse_args()
    precision = recipe.precisions()["recipe"]
    dtype = precision.dtype or torch.float32
    steps = {v: recipe.make_step(recipe._network(v), precision, "train") for v in ("none", "pre")}
    flops = {name: step_flops(step) for name, step in steps.items()}
    a = torch.randn(args.size, args.size, dtype=dtype)
    b = torch.randn(args.size, args.size, dtype=dtype)
    flops["matmul"] = 2 * args.size**3
    timed = {**steps, "matmul": lambda: a @ b}
    times = interleaved(timed, repeats=args.repeats, iterations=args.iterations)
    rates = {n: [flops[n] / t / 1e9 for t in ts] for n, ts in times.items()}
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {precision.name}, "
        f"batch {recipe.BATCH}, {args.repeats} interleaved repeats of {args.iterations} calls"
    )
    print("\n| step | GFLOP per call | ms per call | GFLOP/s | share of the matrix product's |")
    print("|---|---|---|---|---|")
    for name in timed:
        shares = [r / m for r, m in zip(rates[name], rates["matmul"], strict=True)]
        print(
            f"| {name} | {flops[name] / 1e9:.1f} | {1e3 * statistics.median(times[name]):.0f} | "
            f"{statistics.median(rates[name]):.0f} | {statistics.median(shares):.2f} "
            f"({min(shares):.2f}–{max(shares):.2f}) |"
        )


if __name__ == "__main__":
    main()

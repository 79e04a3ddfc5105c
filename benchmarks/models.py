"""Training throughput of resnet18 (CIFAR stem, 3x32x32, batch 128): none / branch / pre.

Run: ``python benchmarks/models.py [--repeats 5] [--iterations 2]`` (or ``make bench``).
Each repeat times one SGD step of every variant in turn; prints images/s (median of the
repeats) and the median (min–max) per-repeat time ratio to ``placement="none"``.
Attention (CBAM, λ-controlled) is in stages 2–4, the library's default.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from functools import partial
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved, ratios

from preattn.models import resnet18

PLACEMENTS = ("none", "branch", "pre")


def sgd_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> None:
    optimizer.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(args.batch_size, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch_size,))
    steps = {}
    for placement in PLACEMENTS:
        model = resnet18(num_classes=10, stem="cifar", placement=placement).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        steps[placement] = partial(sgd_step, model, optimizer, x, y)
    times = interleaved(steps, repeats=args.repeats, iterations=args.iterations, warmup=1)
    relative = ratios(times, "none")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch "
        f"{args.batch_size}, {args.repeats} interleaved repeats x {args.iterations} steps\n"
    )
    print("| resnet18 placement | train images/s | time ratio to none |")
    print("|---|---|---|")
    for placement in PLACEMENTS:
        r = relative[placement]
        speed = args.batch_size / statistics.median(times[placement])
        print(f"| {placement} | {speed:.1f} | {r[0]:.3f} ({r[1]:.2f}–{r[2]:.2f}) |")


if __name__ == "__main__":
    main()

"""Time per training step of each variant of an ablation grid, interleaved.

Run: ``python benchmarks/grid_step_times.py GRID.yaml [--repeats 7] [--iterations 3]``.
Each variant's network is built as its runs build it (the grid's base plus the variant, on
the grid's data set description: channels, classes, image size), and one SGD step on a
random batch of the grid's batch size is timed for every variant in turn within a repeat,
with the grid's ``amp`` (bf16 on the CPU) and ``channels_last``. Prints the median step
time and the median (min–max) per-repeat ratio to the grid's reference variant: the cost
side of "accuracy against time", free of the other load a grid's own images/s carry.
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

from preattn.ablate import Grid
from preattn.data.registry import DATASET_SPECS
from preattn.train import build_model
from preattn.train.precision import amp_dtype


def _step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    dtype: torch.dtype | None,
) -> None:
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("grid", type=Path)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=3)
    args = parser.parse_args()
    grid = Grid.from_yaml(args.grid)
    steps, params = {}, {}
    for name in grid.variants:
        config = grid.config(name, grid.seeds[0], "unused")  # no run is written
        info = DATASET_SPECS[config.dataset].info(config.image_size)
        torch.manual_seed(0)
        model = build_model(config, info)
        memory = torch.channels_last if config.channels_last else torch.contiguous_format
        model = model.to(memory_format=memory).train()
        params[name] = sum(p.numel() for p in model.parameters())
        x = torch.randn(config.batch_size, info.in_chans, info.image_size, info.image_size)
        y = torch.randint(0, info.num_classes, (config.batch_size,))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        steps[name] = partial(
            _step,
            model,
            optimizer,
            x.contiguous(memory_format=memory),
            y,
            amp_dtype(config.amp, torch.device("cpu")),
        )
    times = interleaved(steps, repeats=args.repeats, iterations=args.iterations, warmup=1)
    relative = ratios(times, grid.reference)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.grid}: "
        f"{args.repeats} interleaved repeats x {args.iterations} steps\n"
    )
    print(f"| variant | parameters | ms per step | ratio to {grid.reference} |")
    print("|---|---|---|---|")
    for name, (median, low, high) in relative.items():
        ms = 1000 * statistics.median(times[name])
        print(f"| {name} | {params[name]:,} | {ms:.0f} | {median:.2f} ({low:.2f}–{high:.2f}) |")


if __name__ == "__main__":
    main()

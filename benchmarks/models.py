"""Training throughput of a network per placement (and of wider plain networks).

Run: ``python benchmarks/models.py [--model resnet18] [--repeats 5] [--iterations 2]``
(or ``make bench``). Each repeat times one SGD step of every variant in turn; prints
images/s (median of the repeats) and the median (min–max) per-repeat time ratio to
``placement="none"``. Attention (CBAM, λ-controlled) is in the model's default stages.
``--widths 1.08`` adds plain (``none``) networks with that channel-width multiplier: the
width at which a plain network costs what ``pre`` costs is the fair "spend the compute
on width instead" baseline.

Defaults: resnet18 with the CIFAR stem on 3x32x32, batch 128; ``--model simplecnn
--input-size 1,28,28`` measures the notebook's network on Fashion-MNIST-sized images.
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

from preattn.models import create_model


def sgd_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> None:
    optimizer.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()


def measure_models(
    model: str = "resnet18",
    input_size: tuple[int, int, int] = (3, 32, 32),
    variants: dict[str, dict] | None = None,
    *,
    batch_size: int = 128,
    repeats: int = 5,
    iterations: int = 2,
    channels_last: bool = False,
) -> tuple[dict[str, int], dict[str, list[float]], dict[str, tuple[float, float, float]]]:
    """Parameters, per-repeat seconds per step and time ratios to ``none`` of each variant
    (name -> ``create_model`` options; default: ``none``, ``branch``, ``pre``)."""
    variants = variants or {p: {"placement": p} for p in ("none", "branch", "pre")}
    c, h, w = input_size
    x = torch.randn(batch_size, c, h, w)
    y = torch.randint(0, 10, (batch_size,))
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    x = x.contiguous(memory_format=memory_format)
    steps, params = {}, {}
    for name, options in variants.items():
        net = create_model(model, image_size=h, num_classes=10, in_chans=c, **options)
        net = net.to(memory_format=memory_format).train()
        params[name] = sum(p.numel() for p in net.parameters())
        optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        steps[name] = partial(sgd_step, net, optimizer, x, y)
    times = interleaved(steps, repeats=repeats, iterations=iterations, warmup=1)
    return params, times, ratios(times, "none")


def table(
    model: str,
    batch_size: int,
    params: dict[str, int],
    times: dict[str, list[float]],
    relative: dict[str, tuple[float, float, float]],
) -> str:
    lines = [f"| {model} | parameters | train images/s | time ratio to none |", "|---|---|---|---|"]
    for name, r in relative.items():
        speed = batch_size / statistics.median(times[name])
        lines.append(
            f"| {name} | {params[name]:,} | {speed:.1f} | {r[0]:.3f} ({r[1]:.2f}–{r[2]:.2f}) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--input-size", default="3,32,32", help="C,H,W (default 3,32,32)")
    parser.add_argument("--placements", default="none,branch,pre")
    parser.add_argument("--widths", default="", help="widths of extra plain networks, e.g. 1.08")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    c, h, w = (int(v) for v in args.input_size.split(","))
    variants: dict[str, dict] = {p: {"placement": p} for p in args.placements.split(",")}
    for width in filter(None, args.widths.split(",")):
        variants[f"none x{float(width):g}"] = {"placement": "none", "width": float(width)}
    params, times, relative = measure_models(
        args.model,
        (c, h, w),
        variants,
        batch_size=args.batch_size,
        repeats=args.repeats,
        iterations=args.iterations,
        channels_last=args.channels_last,
    )
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.model} on "
        f"{args.input_size}, batch {args.batch_size}, {args.repeats} interleaved repeats x "
        f"{args.iterations} steps\n"
    )
    print(table(args.model, args.batch_size, params, times, relative))


if __name__ == "__main__":
    main()

"""Share of a training step spent in the data pipeline: SimpleCNN on Fashion-MNIST.

Run: ``python benchmarks/data_pipeline.py [--batches 4] [--repeats 3]`` (``make bench``
runs it through ``benchmarks/targets.py``). The pipeline is the training loop's own: the
data set as ``preattn train --dataset fashion-mnist`` builds it (uint8 images in memory,
per-sample random crop and normalisation) behind the loop's ``DataLoader`` (``workers
0``, the default). Every repeat times fetching ``--batches`` batches, then the loop's
``train_one_epoch`` over those same batches already in memory; the share is
``fetch / (fetch + step)`` per repeat, median (min–max), for contiguous and channels-last
training. Fashion-MNIST is read from ``/usr/share/datasets/fashion-mnist`` (Debian's
``dataset-fashion-mnist``) or ``$PREATTN_DATA``; without it, random images are written
in the same IDX format to a temporary folder (the pipeline's cost does not depend on the
pixels).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _training_speed import fashion_splits

from preattn.train.build import build_model
from preattn.train.config import TrainConfig
from preattn.train.distributed import DistContext
from preattn.train.loop import StepContext, _train_loader, train_one_epoch


def measure_share(
    batches: int = 4, repeats: int = 3, batch_size: int = 128, channels_last: bool = False
) -> tuple[tuple[float, float, float], float, float, str]:
    """(median, min, max) data share, median seconds of fetching and of stepping a batch,
    and the data's source."""
    n = batches * batch_size
    config = TrainConfig(
        dataset="fashion-mnist",
        model="simplecnn",
        batch_size=batch_size,
        limit_train=n,
        limit_test=16,
        channels_last=channels_last,
    )
    with contextlib.ExitStack() as stack:
        splits, config, source = fashion_splits(config, stack)
        torch.manual_seed(0)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        net = build_model(config, splits.info).to(memory_format=memory_format)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        ctx = StepContext(
            net=net,
            optimizer=optimizer,
            loss_fn=torch.nn.CrossEntropyLoss(),
            scaler=torch.amp.GradScaler("cpu", enabled=False),
            lr_at=lambda step: 0.01,
            device=torch.device("cpu"),
            memory_format=memory_format,
            amp_dtype=None,
        )
        dist = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
        fetch, step, shares = [], [], []
        for repeat in range(repeats + 1):  # the first repeat warms up
            started = time.perf_counter()
            loaded = list(_train_loader(splits, config, dist, repeat))
            fetched = (time.perf_counter() - started) / len(loaded)
            started = time.perf_counter()
            train_one_epoch(ctx, loaded, 0, 1)
            stepped = (time.perf_counter() - started) / len(loaded)
            if repeat:
                fetch.append(fetched)
                step.append(stepped)
                shares.append(fetched / (fetched + stepped))
    summary = (statistics.median(shares), min(shares), max(shares))
    return summary, statistics.median(fetch), statistics.median(step), source


def measure_both(
    batches: int = 4, repeats: int = 3, batch_size: int = 128
) -> dict[str, tuple[tuple[float, float, float], float, float, str]]:
    """:func:`measure_share` for contiguous and channels-last training, by name."""
    return {
        name: measure_share(batches, repeats, batch_size, channels_last)
        for name, channels_last in (("contiguous", False), ("channels-last", True))
    }


def table(results: dict[str, tuple[tuple[float, float, float], float, float, str]]) -> str:
    lines = [
        "| training | fetch ms / batch | step ms / batch | data share of the step |",
        "|---|---|---|---|",
    ]
    for name, (share, fetched, stepped, _) in results.items():
        lines.append(
            f"| {name} | {fetched * 1000:.1f} | {stepped * 1000:.0f} | "
            f"{share[0]:.1%} ({share[1]:.1%}–{share[2]:.1%}) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    results = measure_both(args.batches, args.repeats, args.batch_size)
    source = next(iter(results.values()))[3]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, SimpleCNN, batch "
        f"{args.batch_size}, {args.batches} batches x {args.repeats} repeats, data from "
        f"{source}\n"
    )
    print(table(results))


if __name__ == "__main__":
    sys.exit(main())

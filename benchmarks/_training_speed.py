"""Training images/s of SimpleCNN on Fashion-MNIST per recipe (precision, memory format,
data path), shared by ``cpu_recipe.py`` and ``device_check.py``.

Each recipe trains its own copy of the network (same seed) with the library's own step
(:func:`preattn.train.loop.train_one_epoch`) on ``batches`` batches drawn by the loop's own
data paths; after a warm-up pass per recipe, every repeat runs each recipe once in turn
(interleaved), and the per-repeat ratios to the first recipe are summarised by median, min
and max. ``train_one_epoch`` reads the losses at its end, so each timed pass includes the
device's work.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from preattn.data.device_batches import DeviceImages
from preattn.data.errors import DatasetError
from preattn.train.build import build_data, build_model
from preattn.train.config import TrainConfig
from preattn.train.distributed import DistContext
from preattn.train.loop import StepContext, _epoch_generator, _train_loader, train_one_epoch
from preattn.train.precision import amp_dtype, make_scaler


@dataclass(frozen=True)
class Recipe:
    name: str
    amp: str = "off"
    channels_last: bool = False
    device_data: bool = False
    workers: int = 0
    placement: str = "pre"
    compile: bool = False
    batch_size: int | None = None  # None: the batch size given to training_speed


def fashion_splits(
    config: TrainConfig, stack: contextlib.ExitStack
) -> tuple[Any, TrainConfig, str]:
    """The splits of ``config`` (Fashion-MNIST) where the usual places hold the files, else
    of random images in its format written to a folder ``stack`` removes; with the config
    that reads them and their source."""
    try:
        splits = build_data(config)
    except DatasetError:
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from _helpers import write_idx_files

        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        write_idx_files(folder, n_train=config.limit_train or 0, n_test=16)
        config = config.replace(data_dir=str(folder))
        splits = build_data(config)
    return splits, config, splits.source


def training_speed(
    recipes: Iterable[Recipe],
    device: torch.device,
    *,
    batch_size: int,
    batches: int,
    repeats: int,
    data_dir: str | None = None,
) -> dict[str, Any]:
    """``{"source", "rows": [{"recipe", "images_per_s" (median), "ratio" (median, min,
    max) to the first recipe}], "warmup_s": {recipe: seconds of its untimed first pass}}``."""
    recipes = list(recipes)
    with contextlib.ExitStack() as stack:
        base = TrainConfig(
            dataset="fashion-mnist",
            data_dir=data_dir,
            model="simplecnn",
            batch_size=batch_size,
            limit_train=max(r.batch_size or batch_size for r in recipes) * batches,
            limit_test=16,
            device=str(device),
        )
        splits, base, source = fashion_splits(base, stack)
        dist = DistContext(0, 1, 0, device)
        on_device = DeviceImages.of(splits.train, device)
        runs = {}
        warmup_s: dict[str, float] = {}
        for recipe in recipes:
            config = base.replace(
                amp=recipe.amp,
                channels_last=recipe.channels_last,
                workers=recipe.workers,
                placement=recipe.placement,
                batch_size=recipe.batch_size or batch_size,
            )
            dtype = amp_dtype(config.amp, device)
            fmt = torch.channels_last if recipe.channels_last else torch.contiguous_format
            torch.manual_seed(0)
            model = build_model(config, splits.info).to(device, memory_format=fmt)
            ctx = StepContext(
                net=torch.compile(model) if recipe.compile else model,
                optimizer=torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
                loss_fn=nn.CrossEntropyLoss(),
                scaler=make_scaler(dtype, device),
                lr_at=lambda step: 0.01,
                device=device,
                memory_format=fmt,
                amp_dtype=dtype,
            )

            def epoch(index: int, recipe: Recipe = recipe, config: TrainConfig = config) -> Any:
                if recipe.device_data:
                    assert on_device is not None
                    generator = _epoch_generator(config, index)
                    return on_device.epoch(config.batch_size, generator=generator, drop_last=True)
                return _train_loader(splits, config, dist, index)

            started = time.perf_counter()
            train_one_epoch(ctx, epoch(0), 0, 1)  # warm-up: kernels, workers, caches, compile
            warmup_s[recipe.name] = time.perf_counter() - started
            runs[recipe.name] = (ctx, epoch)
        speeds: dict[str, list[float]] = {r.name: [] for r in recipes}
        for repeat in range(1, repeats + 1):
            for name, (ctx, epoch) in runs.items():
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                started = time.perf_counter()
                stats, _ = train_one_epoch(ctx, epoch(repeat), 0, 1)
                speeds[name].append(stats["seen"] / (time.perf_counter() - started))
    first = speeds[recipes[0].name]
    rows = []
    for recipe in recipes:
        values = speeds[recipe.name]
        ratio = [v / f for v, f in zip(values, first, strict=True)]
        rows.append(
            {
                "recipe": recipe.name,
                "images_per_s": statistics.median(values),
                "ratio": (statistics.median(ratio), min(ratio), max(ratio)),
            }
        )
    return {"source": source, "rows": rows, "warmup_s": warmup_s}


def speed_table(result: dict[str, Any], first: str) -> list[str]:
    """Markdown rows of :func:`training_speed`'s result."""
    lines = [
        f"| recipe | training images/s (median) | ratio to {first}, median (min–max) |",
        "|---|---|---|",
    ]
    for row in result["rows"]:
        median, low, high = row["ratio"]
        lines.append(
            f"| {row['recipe']} | {row['images_per_s']:.0f} | {median:.2f} ({low:.2f}–{high:.2f}) |"
        )
    return lines

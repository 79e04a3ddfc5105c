"""The measurements of the device check (``make gpu-check``): Pattern-3 against
torchvision on one device, and training images/s per data path.

Run: ``python benchmarks/device_check.py --device cuda --out DIR [--smoke]``. Writes
``DIR/device_check.md`` (the tables) and ``DIR/device_check.json`` (every number):

1. **Blocks and networks**: ``ResidualBlock(C, C)`` (Pattern-3, CBAM, λ-controlled) against
   torchvision's ``BasicBlock``, and preattn's ``resnet18`` (attention in stages 2-4)
   against torchvision's ``resnet18``; eager and ``torch.compile``, float32 and bf16
   autocast with channels-last; per case the median (min–max) time ratio to torchvision
   over interleaved repeats (CUDA events on a GPU), the milliseconds of each, and on CUDA
   the peak memory of a training step.
2. **Data paths**: SimpleCNN training images/s on Fashion-MNIST through the data loader
   (0 and 4 workers) and through the device-resident path (``--device-data``), the same
   model, precision and batch size (``_training_speed.py``).

``--smoke`` runs every code path at toy sizes (CPU, under a minute of measuring): it checks
the script, not the device. Nothing here is a test; numbers move with the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import resnet18 as tv_resnet18
from torchvision.models.resnet import BasicBlock

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _timing import interleaved, peak_memory, ratios
from _training_speed import Recipe, speed_table, training_speed

from preattn import ResidualBlock
from preattn.models import create_model


@dataclass(frozen=True)
class Sizes:
    block: tuple[int, int, int, int]  # N, C, H, W
    network: tuple[int, int, int]  # N, side, classes
    repeats: int
    iterations: int
    data_batch: int
    data_batches: int
    loader_workers: tuple[int, ...]
    time_limit_s: float  # the compiled cases are skipped once the measuring took this long


FULL = Sizes((128, 64, 32, 32), (128, 224, 1000), 7, 10, 256, 60, (0, 4), 120.0)
SMOKE = Sizes((4, 16, 8, 8), (2, 32, 10), 2, 1, 32, 3, (0,), 10.0)


def _subjects(sizes: Sizes) -> dict[str, tuple[Callable[[], nn.Module], Callable[[], nn.Module]]]:
    """``{subject: (torchvision builder, preattn builder)}``."""
    _, channels, _, _ = sizes.block
    _, side, classes = sizes.network
    return {
        "block": (
            lambda: BasicBlock(channels, channels),
            lambda: ResidualBlock(channels, channels),
        ),
        "resnet18": (
            lambda: tv_resnet18(num_classes=classes),
            lambda: create_model("resnet18", num_classes=classes, image_size=side),
        ),
    }


def _input(subject: str, sizes: Sizes, device: torch.device) -> torch.Tensor:
    if subject == "block":
        return torch.randn(sizes.block, device=device)
    n, side, _ = sizes.network
    return torch.randn(n, 3, side, side, device=device)


def _steps(
    model: nn.Module, x: torch.Tensor, amp: torch.dtype | None, compiled: bool
) -> tuple[Callable[[], object], Callable[[], object]]:
    """(training step: forward + backward, evaluation forward) of ``model`` on ``x``."""
    net = torch.compile(model) if compiled else model
    kind = x.device.type

    def autocast() -> Any:
        return torch.autocast(kind, dtype=amp or torch.float32, enabled=amp is not None)

    def train() -> None:
        model.zero_grad(set_to_none=True)
        with autocast():
            out = net(x)
        out.float().square().mean().backward()

    def evaluate() -> None:
        with torch.inference_mode(), autocast():
            net(x)

    return train, evaluate


def measure_models(device: torch.device, sizes: Sizes, compile_: bool) -> list[dict[str, Any]]:
    """The table's rows; compiled cases are left out once ``sizes.time_limit_s`` has passed
    (compiling a network takes a minute or more), and said so."""
    rows: list[dict[str, Any]] = []
    precisions = {"fp32": None, "bf16 channels-last": torch.bfloat16}
    begun = time.perf_counter()
    for subject, (theirs, ours) in _subjects(sizes).items():
        for precision, amp in precisions.items():
            for compiled in (False, True) if compile_ else (False,):
                if compiled and time.perf_counter() - begun > sizes.time_limit_s:
                    print(f"| {subject} | {precision} | compiled | skipped: time limit |")
                    continue
                fmt = torch.channels_last if amp is not None else torch.contiguous_format
                torch.manual_seed(0)
                x = _input(subject, sizes, device).contiguous(memory_format=fmt)
                models = {
                    "torchvision": theirs().to(device, memory_format=fmt).train(),
                    "preattn": ours().to(device, memory_format=fmt).train(),
                }
                steps = {name: _steps(m, x, amp, compiled) for name, m in models.items()}
                started = time.perf_counter()
                for phase, which in (("train", 0), ("eval", 1)):
                    calls = {name: pair[which] for name, pair in steps.items()}
                    times = interleaved(
                        calls,
                        repeats=sizes.repeats,
                        iterations=sizes.iterations,
                        device=device,
                    )
                    ratio = ratios(times, "torchvision")["preattn"]
                    memory = {
                        name: peak_memory(call, device) if phase == "train" else None
                        for name, call in calls.items()
                    }
                    rows.append(
                        {
                            "subject": subject,
                            "precision": precision,
                            "mode": "compiled" if compiled else "eager",
                            "phase": phase,
                            "ms": {k: 1000 * statistics.median(v) for k, v in times.items()},
                            "ratio": ratio,
                            "peak_bytes": memory,
                        }
                    )
                rows[-1]["seconds"] = time.perf_counter() - started
                print(_model_line(rows[-2]), _model_line(rows[-1]), sep="\n", flush=True)
    return rows


def _model_line(row: dict[str, Any]) -> str:
    median, low, high = row["ratio"]
    ms = row["ms"]
    memory = ""
    if row["peak_bytes"]["preattn"] is not None:
        mib = {k: v / 2**20 for k, v in row["peak_bytes"].items()}
        memory = f" {mib['preattn']:.0f} / {mib['torchvision']:.0f}"
    return (
        f"| {row['subject']} | {row['precision']} | {row['mode']} | {row['phase']} | "
        f"{median:.2f} ({low:.2f}–{high:.2f}) | {ms['preattn']:.2f} / "
        f"{ms['torchvision']:.2f} |{memory} |"
    )


def data_path_recipes(sizes: Sizes) -> list[Recipe]:
    """SimpleCNN with bf16 where native and channels-last, per data path."""
    loaders = [
        Recipe(f"data loader, {w} workers", amp="auto", channels_last=True, workers=w)
        for w in sizes.loader_workers
    ]
    device = Recipe("device-resident (--device-data)", "auto", True, device_data=True)
    return [*loaders, device]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="runs/device-check", help="folder of the tables")
    parser.add_argument("--data-dir", help="Fashion-MNIST files (default: the usual places)")
    parser.add_argument("--smoke", action="store_true", help="toy sizes: checks the script")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    args = parser.parse_args()
    device = torch.device(args.device)
    sizes = SMOKE if args.smoke else FULL
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    header = (
        f"torch {torch.__version__} on {device} ({name}); block {sizes.block}, resnet18 batch "
        f"{sizes.network[0]} at {sizes.network[1]}x{sizes.network[1]}; {sizes.repeats} "
        f"interleaved repeats x {sizes.iterations} iterations"
    )
    print(header, flush=True)
    table = [
        "| subject | precision | mode | phase | time ratio preattn / torchvision, median "
        "(min–max) | ms preattn / torchvision | peak MiB preattn / torchvision (train) |",
        "|---|---|---|---|---|---|---|",
    ]
    print("\n".join(table), flush=True)
    models = measure_models(device, sizes, compile_=not args.no_compile)
    recipes = data_path_recipes(sizes)
    data = training_speed(
        recipes,
        device,
        batch_size=sizes.data_batch,
        batches=sizes.data_batches,
        repeats=max(2, sizes.repeats // 2),
        data_dir=args.data_dir,
    )
    speeds = [
        f"SimpleCNN training on Fashion-MNIST ({data['source']}), batch {sizes.data_batch}, "
        "bf16 where native, channels-last",
        "",
        *speed_table(data, recipes[0].name),
    ]
    print("\n" + "\n".join(speeds), flush=True)
    report = {"header": header, "models": models, "data_paths": data}
    (out / "device_check.json").write_text(json.dumps(report, indent=1))
    lines = [header, "", *table, *(_model_line(r) for r in models), "", *speeds]
    (out / "device_check.md").write_text("\n".join(lines) + "\n")
    print(f"tables: {out / 'device_check.md'}")


if __name__ == "__main__":
    main()

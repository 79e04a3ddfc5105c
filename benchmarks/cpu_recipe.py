"""The CPU training recipe: float32 against bf16 autocast with channels-last, through the
data loader and the device-resident path, on this machine.

Run: ``python benchmarks/cpu_recipe.py [--batches 12] [--repeats 5]``. Prints SimpleCNN's
training images/s on Fashion-MNIST (batch 128, the library's own training step) per recipe
and the median (min–max) per-repeat ratio to float32 (interleaved repeats,
``_training_speed.py``). bf16 is native on CPUs with AVX512-BF16 or AMX
(:func:`preattn.train.precision.cpu_has_native_bf16`); elsewhere it is emulated and slower
than float32, and ``--amp auto`` stays in float32.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _training_speed import Recipe, speed_table, training_speed

from preattn.train.precision import cpu_has_native_bf16

RECIPES = [
    Recipe("float32, data loader"),
    Recipe("float32, device-resident data", device_data=True),
    Recipe("bf16 + channels-last, data loader", amp="bf16", channels_last=True),
    Recipe("bf16 + channels-last, device-resident data", "bf16", True, device_data=True),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--batches", type=int, default=12, help="batches per timed pass")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    result = training_speed(
        RECIPES,
        torch.device("cpu"),
        batch_size=args.batch_size,
        batches=args.batches,
        repeats=args.repeats,
    )
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: "
        f"{cpu_has_native_bf16()}; SimpleCNN on Fashion-MNIST ({result['source']}), batch "
        f"{args.batch_size}, {args.batches} batches per pass, {args.repeats} interleaved "
        "repeats\n"
    )
    print("\n".join(speed_table(result, RECIPES[0].name)))


if __name__ == "__main__":
    main()

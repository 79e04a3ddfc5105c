"""Today's default training recipe against faster candidates, per variant, in one process.

Run: ``python benchmarks/default_recipe.py [--batches 16] [--repeats 5] [--placements
pre,none]``. The recipe ``make demo``, ``preattn train --amp auto`` and the evidence grids
use: bf16 autocast with channels-last and the device-resident data path, batch 128, the
network eager. Candidates: the network compiled (``--compile``), batch 256, and both.
SimpleCNN on Fashion-MNIST, the library's own training step
(:func:`preattn.train.loop.train_one_epoch`), every repeat runs each recipe once in turn
(interleaved); images/s per recipe (median) and the per-repeat ratio to the first recipe
of the same placement, median (min–max). A compiled recipe compiles during its warm-up
pass, which is not timed: the compile time is printed separately (it is paid once per run).
Nothing here is a test.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _training_speed import Recipe, speed_table, training_speed

from preattn.train.precision import cpu_has_native_bf16


def recipes(placement: str, amp: str) -> list[Recipe]:
    """Today's default first (the ratios' reference), then the candidates."""
    today = {"amp": amp, "channels_last": True, "device_data": True, "placement": placement}
    return [
        Recipe(f"{placement}: today (eager, batch 128)", **today),
        Recipe(f"{placement}: compiled, batch 128", compile=True, **today),
        Recipe(f"{placement}: eager, batch 256", batch_size=256, **today),
        Recipe(f"{placement}: compiled, batch 256", compile=True, batch_size=256, **today),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--batches", type=int, default=16, help="batches of 256 per pass")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--placements", default="pre,none")
    args = parser.parse_args()
    amp = "bf16" if cpu_has_native_bf16() else "off"
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, amp {amp}; SimpleCNN "
        f"on Fashion-MNIST, {args.batches} × 256 images per pass, {args.repeats} interleaved "
        "repeats\n"
    )
    for placement in args.placements.split(","):
        chosen = recipes(placement, amp)
        result = training_speed(
            chosen,
            torch.device("cpu"),
            batch_size=128,
            batches=args.batches,
            repeats=args.repeats,
        )
        print("\n".join(speed_table(result, "today")))
        warmups = result["warmup_s"].items()
        listed = ", ".join(f"{name.split(': ')[1]} {s:.0f} s" for name, s in warmups)
        print(f"warm-up pass (compiles): {listed}\n")


if __name__ == "__main__":
    main()

"""Time per training step of each λ design on the reference SimpleCNN (Fashion-MNIST size).

Run: ``python benchmarks/lambda_designs.py [--repeats 7] [--iterations 3]``. The designs
are those of ``experiments/lambda-designs.yaml``; each repeat times one SGD step of every
design in turn (interleaved, same process), batch 128, 1x28x28, channels-last, float32.
Prints the median seconds per step and the median (min-max) ratio to ``placement="none"``.
"""

from __future__ import annotations

import argparse
import statistics

from models import measure_models

DESIGNS: dict[str, dict] = {
    "none": {"placement": "none"},
    "notebook": {},
    "linear": {"lam_param": "linear"},
    "channel": {"lam_shape": "channel"},
    "depth": {"lam_param": "depth", "lam": 0.5},
    "fixed-0.5": {"lam_learnable": False, "lam": 0.5},
    "uncontrolled": {"lam": None},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=3)
    args = parser.parse_args()
    _, steps, ratios = measure_models(
        "simplecnn",
        (1, 28, 28),
        DESIGNS,
        repeats=args.repeats,
        iterations=args.iterations,
        channels_last=True,
    )
    print(f"{'design':<14}{'ms/step':>10}  ratio to none (median, min-max)")
    for name in DESIGNS:
        median, low, high = ratios[name]
        ms = 1000 * statistics.median(steps[name])
        print(f"{name:<14}{ms:>10.1f}  {median:.3f} ({low:.3f}-{high:.3f})")


if __name__ == "__main__":
    main()

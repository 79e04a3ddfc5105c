"""Every performance measurement of the project, and its targets: ``make bench``.

Run: ``python benchmarks/targets.py [--repeats 7] [--iterations 3] [--no-compile]
[--before REV]``.
Prints the block table (``blocks.py``), the compiled block table, the network table
(``models.py``, resnet18 with the CIFAR stem, batch 128), the data-pipeline table
(``data_pipeline.py``), SimpleCNN per variant in the recipe people run (bf16 +
channels-last on a CPU with native bf16, float32 otherwise) and in float32, eager and
compiled, train and eval, on one thread (``recipe.py``; ``--before REV`` adds that
revision's attention code to its eager rows), then one table of the targets with what was
measured and whether each is met. Takes about half an hour on a 2-core CPU
(``torch.compile`` compiles two blocks per shape twice and three networks per precision).
Timings are medians of interleaved repeats; nothing here is a test.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import blocks
import data_pipeline
import models
import recipe

PRE, TIMM = blocks.PRE, "timm cbam"


def _verdict(values: list[float], limit: float) -> str:
    met = sum(v <= limit for v in values)
    return "yes" if met == len(values) else f"no ({met} of {len(values)} shapes)"


def _listing(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--shapes", default="", help="block shapes N,C,H,W;... (default six)")
    parser.add_argument(
        "--before", default="", help="git revision whose attention code recipe.py compares"
    )
    args = parser.parse_args()
    block_shapes = blocks.parse_shapes(args.shapes)
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.repeats} "
        f"interleaved repeats x {args.iterations} iterations; median (min–max)\n"
    )
    print("## Blocks (ratios to torchvision BasicBlock)\n")
    eager, compiled = blocks.report(
        block_shapes, args.repeats, args.iterations, compiled=not args.no_compile
    )
    print("\n## resnet18 (CIFAR stem, batch 128), one SGD step\n")
    params, times, relative = models.measure_models(repeats=args.repeats, iterations=2)
    print(models.table("resnet18", 128, params, times, relative), flush=True)
    print("\n## Data pipeline: SimpleCNN on Fashion-MNIST, batch 128\n")
    pipeline = data_pipeline.measure_both()
    print(data_pipeline.table(pipeline), flush=True)
    print("\n## SimpleCNN in the recipe people run and in float32, one thread\n")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    modes = ["eager"] if args.no_compile else ["eager", "compiled"]
    simple = recipe.report(["recipe", "float32"], modes, args.repeats, args.before)
    torch.set_num_threads(threads)

    shapes = " / ".join(",".join(map(str, s)) for s in block_shapes)
    train = [eager[s][PRE].train[0] for s in block_shapes]
    evals = [eager[s][PRE].eval[0] for s in block_shapes]
    memory = [
        eager[s][PRE].saved_bytes / eager[s][blocks.BASELINE].saved_bytes for s in block_shapes
    ]
    timm_train = [eager[s][PRE].train[0] - eager[s][TIMM].train[0] for s in block_shapes]
    timm_eval = [eager[s][PRE].eval[0] - eager[s][TIMM].eval[0] for s in block_shapes]
    rows = [
        ("eager block train ≤ 1.10", _listing(train), _verdict(train, 1.10)),
        ("eager block eval ≤ 1.06", _listing(evals), _verdict(evals, 1.06)),
        ("saved for backward ≤ 1.15", _listing(memory), _verdict(memory, 1.15)),
        (
            "train no slower than timm cbam (difference)",
            _listing(timm_train),
            _verdict(timm_train, 0.0),
        ),
        (
            "eval no slower than timm cbam (difference)",
            _listing(timm_eval),
            _verdict(timm_eval, 0.0),
        ),
    ]
    if compiled:
        ctrain = [compiled[s][PRE][0][0] for s in block_shapes]
        ceval = [compiled[s][PRE][1][0] for s in block_shapes]
        rows += [
            ("compiled block train ≤ 1.05", _listing(ctrain), _verdict(ctrain, 1.05)),
            ("compiled block eval ≤ 1.03", _listing(ceval), _verdict(ceval, 1.03)),
        ]
    net = relative["pre"][0]
    rows.append(("resnet18 `pre` train step ≤ 1.08 of `none`", f"{net:.3f}", _yes(net <= 1.08)))
    for name, (share, *_rest) in pipeline.items():
        rows.append(
            (
                f"data pipeline < 5 % of a SimpleCNN step ({name})",
                f"{share[0]:.1%}",
                _yes(share[0] < 0.05),
            )
        )
    rows += _recipe_rows(simple)
    print(f"\n## Targets (block shapes in order: {shapes})\n")
    print("| target | measured (medians) | met |\n|---|---|---|")
    for target, measured, met in rows:
        print(f"| {target} | {measured} | {met} |")


# SimpleCNN: (mode, phase, limit) for the ratios of `pre` and `cbam` to `none`
RECIPE_TARGETS = [
    ("eager", "train", 1.15),
    ("compiled", "train", 1.10),
    ("eager", "eval", 1.10),
    ("compiled", "eval", 1.10),
]


def _recipe_rows(results: recipe.Results) -> list[tuple[str, str, str]]:
    """Target rows of ``recipe.report``'s results (medians of the per-repeat ratios)."""
    rows = []
    names = recipe.precisions()
    for (key, mode), phases in results.items():
        for target_mode, phase, limit in RECIPE_TARGETS:
            if mode != target_mode:
                continue
            for variant in ("pre", "cbam"):
                value = phases[phase][variant][0]
                rows.append(
                    (
                        f"SimpleCNN {names[key].name}, {mode} {phase}: `{variant}` ≤ "
                        f"{limit:.2f} of `none`",
                        f"{value:.3f}",
                        _yes(value <= limit),
                    )
                )
    return rows


def _yes(ok: bool) -> str:
    return "yes" if ok else "no"


if __name__ == "__main__":
    main()

"""Pattern-3 block vs torchvision's BasicBlock vs timm's CBAM block, on this machine.

Run: ``python benchmarks/blocks.py [--repeats 7] [--iterations 3] [--compile]`` (``make
bench`` runs it with ``--compile`` through ``benchmarks/targets.py``). Prints, per shape
(N, C, H, W), the median (min–max) time ratio to torchvision's ``BasicBlock`` in train
(forward + backward) and eval (``inference_mode``), the bytes saved for backward relative
to it, and the full-size passes and allocations of one training step
(``benchmarks/_counting.py``: counts, not timings, so they do not move with the machine's
load). Candidates:

- ``preattn pre``: ``ResidualBlock(C, C)`` (Pattern-3, CBAM, λ-controlled)
- ``notebook pre``: the notebook's ``Pattern3_PreResidualCBAM_Controlled`` as rebuilt in
  ``tests/_reference.py``
- ``timm cbam``: ``timm.models.resnet.BasicBlock`` with ``attn_layer="cbam"`` (branch CBAM)

``--compile`` adds ``torch.compile`` of ``BasicBlock`` and ``preattn pre`` (ratios of the
compiled block to the compiled ``BasicBlock``, and of the eager ``BasicBlock`` to it;
eval under ``no_grad``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from timm.layers import get_attn
from timm.models.resnet import BasicBlock as TimmBasicBlock
from torchvision.models.resnet import BasicBlock

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _counting import count_full_size
from _timing import interleaved, ratios, saved_bytes

from _reference import NbPattern3Controlled
from preattn import ResidualBlock

SHAPES = [
    (32, 64, 32, 32),
    (64, 64, 32, 32),
    (32, 128, 16, 16),
    (64, 128, 16, 16),
    (32, 256, 8, 8),
    (64, 256, 8, 8),
]
BASELINE = "torchvision BasicBlock"
PRE = "preattn pre"

Ratio = tuple[float, float, float]  # median, min, max


@dataclass
class BlockResult:
    """One candidate at one shape: time ratios to the baseline, memory, full-size work."""

    train: Ratio
    eval: Ratio
    saved_bytes: int
    passes: int
    allocations: int


def candidates(channels: int) -> dict[str, torch.nn.Module]:
    return {
        BASELINE: BasicBlock(channels, channels),
        PRE: ResidualBlock(channels, channels),
        "notebook pre": NbPattern3Controlled(channels, channels),
        "timm cbam": TimmBasicBlock(channels, channels, attn_layer=get_attn("cbam")),
    }


def train_step(module: torch.nn.Module, x: torch.Tensor) -> None:
    module.zero_grad(set_to_none=True)
    module(x).sum().backward()


def eval_step(module: torch.nn.Module, x: torch.Tensor) -> None:
    with torch.inference_mode():
        module(x)


def compiled_eval_step(module: torch.nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        module(x)


def _time_ratios(
    modules: dict[str, torch.nn.Module],
    step: object,
    x: torch.Tensor,
    repeats: int,
    iterations: int,
) -> dict[str, Ratio]:
    steps = {k: partial(step, m, x) for k, m in modules.items()}  # type: ignore[call-overload]
    return ratios(interleaved(steps, repeats=repeats, iterations=iterations), BASELINE)


def measure(shape: tuple[int, ...], repeats: int, iterations: int) -> dict[str, BlockResult]:
    """Eager results of every candidate at one input shape."""
    modules = candidates(shape[1])
    x = torch.randn(*shape)
    x_grad = x.clone().requires_grad_(True)
    for m in modules.values():
        m.train()
    train = _time_ratios(modules, train_step, x_grad, repeats, iterations)
    memory = {k: saved_bytes(partial(m, x_grad)) for k, m in modules.items()}
    counts = {
        k: count_full_size(partial(train_step, m, x_grad), x.numel()) for k, m in modules.items()
    }
    for m in modules.values():
        m.eval()
    evals = _time_ratios(modules, eval_step, x, repeats, iterations)
    return {
        k: BlockResult(train[k], evals[k], memory[k], counts[k].passes, counts[k].allocations)
        for k in modules
    }


def measure_compiled(
    shape: tuple[int, ...], repeats: int, iterations: int
) -> dict[str, tuple[Ratio, Ratio]]:
    """(train, eval) ratios to the compiled BasicBlock of the compiled Pattern-3 block and
    of the eager BasicBlock (below 1: compiling does not pay on this machine)."""
    channels = shape[1]
    base, pre = BasicBlock(channels, channels), ResidualBlock(channels, channels)
    x = torch.randn(*shape)
    x_grad = x.clone().requires_grad_(True)
    out: dict[str, list[Ratio]] = {}
    for mode, step, inp in (("train", train_step, x_grad), ("eval", compiled_eval_step, x)):
        for m in (base, pre):
            m.train(mode == "train")
        modules = {
            BASELINE: torch.compile(base),
            PRE: torch.compile(pre),
            f"{BASELINE} (eager)": base,
        }
        for name, result in _time_ratios(modules, step, inp, repeats, iterations).items():
            out.setdefault(name, []).append(result)
        torch._dynamo.reset()
    return {k: (v[0], v[1]) for k, v in out.items()}


def _fmt(r: Ratio) -> str:
    return f"{r[0]:.3f} ({r[1]:.2f}–{r[2]:.2f})"


def rows(shape: tuple[int, ...], results: dict[str, BlockResult]) -> list[str]:
    base = results[BASELINE]
    label = ",".join(map(str, shape))
    return [
        f"| {label} | {name} | {_fmt(r.train)} | {_fmt(r.eval)} | "
        f"{r.saved_bytes / base.saved_bytes:.2f} ({r.saved_bytes / 2**20:.1f} MiB) | "
        f"{r.passes} / {r.allocations} |"
        for name, r in results.items()
    ]


def compiled_rows(shape: tuple[int, ...], results: dict[str, tuple[Ratio, Ratio]]) -> list[str]:
    label = ",".join(map(str, shape))
    return [f"| {label} | {name} | {_fmt(t)} | {_fmt(e)} |" for name, (t, e) in results.items()]


HEADER = (
    "| shape | block | train | eval | saved for backward | full-size passes / allocations "
    "(train step) |\n|---|---|---|---|---|---|"
)
COMPILED_HEADER = "| shape | compiled block | train | eval |\n|---|---|---|---|"


def parse_shapes(text: str) -> list[tuple[int, ...]]:
    return [tuple(int(v) for v in s.split(",")) for s in text.split(";")] if text else SHAPES


def report(
    shapes: list[tuple[int, ...]], repeats: int, iterations: int, compiled: bool
) -> tuple[dict, dict]:
    """Measure every shape, printing each table row as it comes; returns the eager and the
    compiled results by shape (the latter empty without ``compiled``)."""
    print(HEADER)
    eager = {}
    for shape in shapes:
        eager[shape] = measure(shape, repeats, iterations)
        print("\n".join(rows(shape, eager[shape])), flush=True)
    compiled_results = {}
    if compiled:
        print("\ntorch.compile of both blocks (ratios to the compiled BasicBlock):\n")
        print(COMPILED_HEADER)
        for shape in shapes:
            compiled_results[shape] = measure_compiled(shape, repeats, iterations)
            print("\n".join(compiled_rows(shape, compiled_results[shape])), flush=True)
    return eager, compiled_results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--shapes", default="", help="N,C,H,W;N,C,H,W... (default: six shapes)")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{args.repeats} interleaved repeats x {args.iterations} iterations; "
        "ratios to torchvision BasicBlock: median (min–max)\n"
    )
    report(parse_shapes(args.shapes), args.repeats, args.iterations, args.compile)


if __name__ == "__main__":
    main()

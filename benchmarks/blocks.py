"""Pattern-3 block vs torchvision's BasicBlock vs timm's CBAM block, on this machine.

Run: ``python benchmarks/blocks.py [--repeats 7] [--iterations 3]`` (or ``make bench``).
Prints, per shape (N, C, H, W), the median (min–max) time ratio to torchvision's
``BasicBlock`` in train (forward + backward) and eval (``inference_mode``) and the bytes
saved for backward relative to it. Candidates:

- ``preattn pre``: ``ResidualBlock(C, C)`` (Pattern-3, CBAM, λ-controlled, fused mixing)
- ``notebook pre``: the notebook's ``Pattern3_PreResidualCBAM_Controlled`` as rebuilt in
  ``tests/_reference.py``
- ``timm cbam``: ``timm.models.resnet.BasicBlock`` with ``attn_layer="cbam"`` (branch CBAM)
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import torch
from timm.layers import get_attn
from timm.models.resnet import BasicBlock as TimmBasicBlock
from torchvision.models.resnet import BasicBlock

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _timing import interleaved, ratios, saved_bytes

from _reference import NbPattern3Controlled
from preattn import ResidualBlock

SHAPES = [(64, 64, 32, 32), (64, 128, 16, 16), (64, 256, 8, 8)]


def candidates(channels: int) -> dict[str, torch.nn.Module]:
    return {
        "torchvision BasicBlock": BasicBlock(channels, channels),
        "preattn pre": ResidualBlock(channels, channels),
        "notebook pre": NbPattern3Controlled(channels, channels),
        "timm cbam": TimmBasicBlock(channels, channels, attn_layer=get_attn("cbam")),
    }


def train_step(module: torch.nn.Module, x: torch.Tensor) -> None:
    module.zero_grad(set_to_none=True)
    module(x).sum().backward()


def eval_step(module: torch.nn.Module, x: torch.Tensor) -> None:
    with torch.inference_mode():
        module(x)


def measure(shape: tuple[int, ...], repeats: int, iterations: int) -> list[str]:
    """Table rows for one input shape."""
    modules = candidates(shape[1])
    x = torch.randn(*shape)
    x_grad = x.clone().requires_grad_(True)
    baseline = "torchvision BasicBlock"
    for m in modules.values():
        m.train()
    train = ratios(
        interleaved(
            {k: partial(train_step, m, x_grad) for k, m in modules.items()},
            repeats=repeats,
            iterations=iterations,
        ),
        baseline,
    )
    memory = {k: saved_bytes(partial(m, x_grad)) for k, m in modules.items()}
    for m in modules.values():
        m.eval()
    evals = ratios(
        interleaved(
            {k: partial(eval_step, m, x) for k, m in modules.items()},
            repeats=repeats,
            iterations=iterations,
        ),
        baseline,
    )
    rows = []
    for name in modules:
        t, e, mem = train[name], evals[name], memory[name]
        rows.append(
            f"| {','.join(map(str, shape))} | {name} | {t[0]:.3f} ({t[1]:.2f}–{t[2]:.2f}) "
            f"| {e[0]:.3f} ({e[1]:.2f}–{e[2]:.2f}) | {mem / memory[baseline]:.2f} "
            f"({mem / 2**20:.1f} MiB) |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{args.repeats} interleaved repeats x {args.iterations} iterations; "
        "ratios to torchvision BasicBlock: median (min–max)\n"
    )
    print("| shape | block | train | eval | saved for backward |")
    print("|---|---|---|---|---|")
    for shape in SHAPES:
        print("\n".join(measure(shape, args.repeats, args.iterations)), flush=True)


if __name__ == "__main__":
    main()

"""Where a Pattern-3 block's time goes: ``torch.profiler`` per operator, against BasicBlock.

Run: ``python benchmarks/profile_block.py [--shape 32,64,32,32] [--steps 10]``.
Profiles ``steps`` training steps (forward + backward) of torchvision's ``BasicBlock`` and
of ``preattn.ResidualBlock`` (Pattern-3, CBAM, λ-controlled) on the same input, and prints
per operator the self CPU time per step of each and the difference (the attention's cost),
largest difference first. Backward operators carry autograd's names (``...Backward0``).
The two blocks are profiled in alternating rounds, so a drift of the machine's speed hits
both; still, operators both blocks run (the 3×3 convolutions) differ by a few percent from
run to run, so the last line also sums the operators only the Pattern-3 block runs.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile
from torchvision.models.resnet import BasicBlock

from preattn import ResidualBlock


def self_times(module: torch.nn.Module, x: torch.Tensor, steps: int) -> dict[str, float]:
    """Self CPU milliseconds of every operator in ``steps`` training steps (summed)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            module.zero_grad(set_to_none=True)
            module(x).sum().backward()
    out: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        out[event.key] += event.self_cpu_time_total / 1000
    return out


def alternating(
    modules: list[torch.nn.Module], x: torch.Tensor, steps: int, rounds: int = 5
) -> list[dict[str, float]]:
    """Per-step self milliseconds per operator of each module, profiled in turn over
    ``rounds`` rounds of ``steps // rounds`` steps each (after three warm-up steps)."""
    for module in modules:
        self_times(module, x, 3)
    totals: list[dict[str, float]] = [defaultdict(float) for _ in modules]
    per_round = max(steps // rounds, 1)
    for _ in range(rounds):
        for module, total in zip(modules, totals, strict=True):
            for key, ms in self_times(module, x, per_round).items():
                total[key] += ms / (per_round * rounds)
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--shape", default="32,64,32,32", help="N,C,H,W (default 32,64,32,32)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    n, c, h, w = (int(v) for v in args.shape.split(","))
    torch.manual_seed(0)
    x = torch.randn(n, c, h, w, requires_grad=True)
    base, pre = alternating([BasicBlock(c, c).train(), ResidualBlock(c, c).train()], x, args.steps)
    names = sorted(set(base) | set(pre), key=lambda k: pre.get(k, 0) - base.get(k, 0), reverse=True)
    total_base, total_pre = sum(base.values()), sum(pre.values())
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, shape {args.shape}, "
        f"{args.steps} training steps; self CPU ms per step\n"
    )
    print("| operator | BasicBlock | preattn pre | difference |")
    print("|---|---|---|---|")
    for name in names[: args.top]:
        b, p = base.get(name, 0.0), pre.get(name, 0.0)
        print(f"| `{name}` | {b:.3f} | {p:.3f} | {p - b:+.3f} |")
    print(
        f"| **all operators** | **{total_base:.2f}** | **{total_pre:.2f}** | "
        f"**{total_pre - total_base:+.2f}** ({total_pre / total_base:.3f}×) |"
    )
    own = sum(ms for name, ms in pre.items() if name not in base)
    print(
        f"| **operators only Pattern-3 runs** | | **{own:.2f}** | "
        f"**{own / total_base:.3f}** of BasicBlock |"
    )


if __name__ == "__main__":
    main()

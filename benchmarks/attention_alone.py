"""The attention's own cost at inference, eager and compiled, next to what memory costs.

Run: ``python benchmarks/attention_alone.py [--shape 32,64,32,32] [--repeats 9]``.
Times, interleaved, on one input: torchvision's ``BasicBlock``; the λ-mixed CBAM of a
Pattern-3 block alone (``mix(x, A(x))``), eager and under ``torch.compile``; and two
memory references: ``x.clone()`` (one new full-size tensor: allocation, page faults and a
copy) and ``x.mul_(1.0)`` (one in-place pass over the same tensor). Compiled, CBAM is
three fused passes over ``x`` (channel statistics; channel-pooled maps of ``x·c``; the
output) plus the 7×7 convolution and the MLP, which is the least any implementation
built from PyTorch operators does: each pass needs the whole result of the one before.
Prints milliseconds (median) and the ratio to the block.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from torchvision.models.resnet import BasicBlock

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved

from preattn import ResidualBlock


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--shape", default="32,64,32,32", help="N,C,H,W")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--iterations", type=int, default=3)
    args = parser.parse_args()
    n, c, h, w = (int(v) for v in args.shape.split(","))
    torch.manual_seed(0)
    x = torch.randn(n, c, h, w)
    y = x.clone()
    base = BasicBlock(c, c).eval()
    block = ResidualBlock(c, c).eval()
    assert block.mix is not None and block.attention is not None
    mix, attention = block.mix, block.attention

    def attend(t: torch.Tensor) -> torch.Tensor:
        return mix.attend(t, attention)

    compiled = torch.compile(attend)
    steps = {
        "torchvision BasicBlock": lambda: base(x),
        "CBAM λ-mix, eager": lambda: attend(x),
        "CBAM λ-mix, compiled": lambda: compiled(x),
        "x.clone() (one new tensor)": lambda: x.clone(),
        "y.mul_(1.0) (one in-place pass)": lambda: y.mul_(1.0),
    }
    with torch.no_grad():
        times = interleaved(steps, repeats=args.repeats, iterations=args.iterations)
    block_ms = statistics.median(times["torchvision BasicBlock"]) * 1000
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, shape {args.shape}, "
        f"inference, {args.repeats} interleaved repeats x {args.iterations}\n"
    )
    print("| step | ms | ratio to the block |\n|---|---|---|")
    for name, values in times.items():
        ms = statistics.median(values) * 1000
        print(f"| {name} | {ms:.2f} | {ms / block_ms:.3f} |")


if __name__ == "__main__":
    main()

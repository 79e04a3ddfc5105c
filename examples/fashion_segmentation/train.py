"""Fine-tune LRASPP-MobileNetV3 on Fashion-MNIST items placed on a canvas, with or without
retrofitted attention, and write the test mean IoU to OUT/metric.json.

The task: each 64×64 canvas holds two 28×28 Fashion-MNIST items at random places (the left
one in the left half, the right one in the right half, so they never overlap); a pixel's class
is 0 (background) where the item's intensity is at most 0.2, else 1 for a garment worn on the
upper body (T-shirt, pullover, dress, coat, shirt) and 2 for the others (trouser, sandal,
sneaker, bag, ankle boot): 3 classes, which the network tells apart by the item's shape.
Training canvases are drawn from the first ``--train-items`` training images with a
generator seeded by ``--seed`` (the same data order for every variant of a seed); the test
canvases from the first 1,000 test images, always the same.

The network is built under ``torch.manual_seed(seed)`` (no pretrained weights: nothing is
downloaded) and then, for ``--attention pre``, retrofitted (CBAM before each block's branch,
λ = 0: the same starting function, so both variants of a seed start from identical weights).
Run by ``preattn ablate examples/fashion_segmentation/grid.yaml --out OUT``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.models.segmentation import lraspp_mobilenet_v3_large

import preattn
from preattn.data.idx import read_idx

SIZE, ITEM, CLASSES = 64, 28, 3
UPPER_BODY = (0, 2, 3, 4, 6)  # Fashion-MNIST's T-shirt, pullover, dress, coat, shirt


def canvases(images: np.ndarray, labels: np.ndarray, count: int, seed: int):
    """``count`` canvases ``(count, 1, 64, 64)`` float in [0, 1] and masks ``(count, 64, 64)``
    int64, each with two items of ``images`` drawn with a generator seeded by ``seed``."""
    g = np.random.default_rng(seed)
    x = np.zeros((count, 1, SIZE, SIZE), np.float32)
    y = np.zeros((count, SIZE, SIZE), np.int64)
    for i in range(count):
        for half in (0, 1):
            k = g.integers(len(images))
            item = images[k].astype(np.float32) / 255.0
            top = g.integers(0, SIZE - ITEM + 1)
            left = half * (SIZE // 2) + g.integers(0, SIZE // 2 - ITEM + 1)
            x[i, 0, top : top + ITEM, left : left + ITEM] = item
            region = y[i, top : top + ITEM, left : left + ITEM]
            region[item > 0.2] = 1 if labels[k] in UPPER_BODY else 2
    return torch.from_numpy(x), torch.from_numpy(y)


def recalibrate_batchnorm(model: nn.Module, x: torch.Tensor, batches: int = 20) -> None:
    """Running BatchNorm statistics as the plain average over ``batches`` training batches
    of the final weights (after a short run, the momentum average still remembers the
    first steps' weights, and eval mode would see other statistics than training did)."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for batch in x[: batches * 16].split(16):
            model(batch.expand(-1, 3, -1, -1))


def mean_iou(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean over the classes present of |pred ∩ true| / |pred ∪ true|, and pixel accuracy."""
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(b.expand(-1, 3, -1, -1))["out"].argmax(1) for b in x.split(100)])
    ious = []
    for c in range(CLASSES):
        union = ((pred == c) | (y == c)).sum().item()
        if union:
            ious.append(((pred == c) & (y == c)).sum().item() / union)
    return float(np.mean(ious)), float((pred == y).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--attention", choices=("none", "pre"), required=True)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--train-items", type=int, default=5000)
    parser.add_argument("--data-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("TRAIN_THREADS", "1")))

    images = read_idx(args.data_dir / "train-images-idx3-ubyte.gz")[: args.train_items]
    labels = read_idx(args.data_dir / "train-labels-idx1-ubyte.gz")[: args.train_items]
    x, y = canvases(images, labels, args.steps * args.batch_size, seed=args.seed)
    test_x, test_y = canvases(
        read_idx(args.data_dir / "t10k-images-idx3-ubyte.gz")[:1000],
        read_idx(args.data_dir / "t10k-labels-idx1-ubyte.gz")[:1000],
        500,
        seed=12345,
    )

    torch.manual_seed(args.seed)
    model = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=CLASSES)
    if args.attention == "pre":
        preattn.retrofit(model)  # CBAM before each block's branch, λ = 0: the same function
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    for step in range(args.steps):
        batch = slice(step * args.batch_size, (step + 1) * args.batch_size)
        out = model(x[batch].expand(-1, 3, -1, -1))["out"]
        loss = nn.functional.cross_entropy(out, y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step}: loss {loss.item():.4f}", flush=True)
    recalibrate_batchnorm(model, x)
    miou, pixel_acc = mean_iou(model, test_x, test_y)
    result = {"miou": miou, "pixel_acc": pixel_acc, "lambdas": preattn.lambdas(model)}
    print(json.dumps({"miou": miou, "pixel_acc": pixel_acc}))
    tmp = args.out / "metric.json.tmp"
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(args.out / "metric.json")  # whole or absent: never half-written


if __name__ == "__main__":
    main()

"""Draw test canvases of cluttered-fashion-mnist for the documentation:

    python experiments/canvas_samples.py --out docs/img/cluttered-samples.png

One row per task: the pilot's two tasks (canvas 34, items resized to 16: whole distractor
items of other classes, or patches of other items) and the literature's size (canvas 60,
items 28, four 8 x 8 patches). Each canvas is titled with its label.
"""

from __future__ import annotations

import argparse

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from preattn.data.registry import build_datasets

TASKS = (
    (
        "34 px, 2 items",
        34,
        {"item_size": 16, "patches": 0, "items": 2, "item_scale": 0.6},
    ),
    ("34 px, 4 patches", 34, {"item_size": 16, "patches": 4, "patch": 5}),
    ("60 px, 4 patches", 60, {"patches": 4, "patch": 8}),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--count", type=int, default=8, help="canvases per task")
    args = parser.parse_args()
    fig = Figure(figsize=(1.3 * args.count, 1.6 * len(TASKS)))
    for row, (name, size, canvas) in enumerate(TASKS):
        splits = build_datasets(
            "cluttered-fashion-mnist",
            image_size=size,
            canvas=canvas,
            limit_train=100,
            limit_test=args.count,
        )
        for col in range(args.count):
            image, label = splits.test[col]
            ax = fig.add_subplot(len(TASKS), args.count, row * args.count + col + 1)
            ax.imshow(image[0].numpy(), cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(splits.classes[label], fontsize=7)
            if col == 0:
                ax.set_ylabel(name, fontsize=7)
    fig.tight_layout()
    FigureCanvasAgg(fig).print_png(args.out)


if __name__ == "__main__":
    main()

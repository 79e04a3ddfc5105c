"""What attention costs in a light backbone: parameters, MACs and CPU time per placement ×
attention, for MobileNetV2 and MobileNetV3-Small.

Run: ``python benchmarks/light_backbones.py [--models mobilenet_v2,mobilenet_v3_small]
[--sizes 1,28,28:3,224,224] [--repeats 5]``. For each network and input size, the variants
are the plain network (``none``; MobileNetV3 keeps its own SE), and for each attention
(SE, CBAM, CA, ECA) three places: ``pre`` (Pattern-3, on each block's input, with
``--preset``), ``branch`` (on F's output) and ``dw`` (inside F after the depthwise conv,
uncontrolled: MobileNetV3's SE position, the coordinate attention paper's; for V3 it
replaces its SE). ``pre``/``branch`` attend the network's default stages (all but the
first). Parameters and MACs per image come from :func:`preattn.summary`; times are
interleaved (every repeat times each variant in turn) and given as the median ratio to
``none`` (min–max over repeats): eval = forward of one image under ``inference_mode``
(latency), train = one SGD step of a batch (``--batch-small``/``--batch-large``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved, ratios
from models import sgd_step

from preattn import AttentionSpec, summary
from preattn.models import create_model

ATTENTIONS = {"se": "SE", "cbam": "CBAM", "coord": "CA", "eca": "ECA"}


def variants(model: str, preset: str) -> dict[str, dict]:
    """Name -> ``create_model`` options (module docstring)."""
    out: dict[str, dict] = {"none": {"placement": "none"}}
    if model.startswith("mobilenet_v3"):
        out["none, no SE"] = {"placement": "none", "dw_attention": None}
    spec = AttentionSpec.preset(preset)
    for name, label in ATTENTIONS.items():
        out[f"pre {label}"] = {"spec": spec.replace(attention=name)}
        out[f"branch {label}"] = {"spec": spec.replace(attention=name, placement="branch")}
        if not (model.startswith("mobilenet_v3") and name == "se"):  # V3's own: none
            out[f"dw {label}"] = {"placement": "none", "dw_attention": name}
    return out


def _eval_step(net: nn.Module, x: torch.Tensor) -> None:
    with torch.inference_mode():
        net(x)


def measure(
    model: str,
    input_size: tuple[int, int, int],
    options: dict[str, dict],
    *,
    batch: int,
    repeats: int,
    iterations: tuple[int, int],
) -> list[dict]:
    """One row per variant: params, MACs, eval and train time ratios to ``none``."""
    c, h, _ = input_size
    classes = 10 if h <= 64 else 1000
    x_one = torch.randn(1, *input_size)
    x, y = torch.randn(batch, *input_size), torch.randint(0, classes, (batch,))
    evals: dict[str, Callable[[], None]] = {}
    trains: dict[str, Callable[[], None]] = {}
    rows = []
    for name, kwargs in options.items():
        torch.manual_seed(0)
        net = create_model(model, image_size=h, in_chans=c, num_classes=classes, **kwargs)
        report = summary(net, input_size)
        rows.append({"name": name, "params": report.params, "macs": report.macs})
        evals[name] = partial(_eval_step, net.eval(), x_one)
        train_net = create_model(model, image_size=h, in_chans=c, num_classes=classes, **kwargs)
        optimizer = torch.optim.SGD(train_net.parameters(), lr=0.01, momentum=0.9)
        trains[name] = partial(sgd_step, train_net.train(), optimizer, x, y)
    eval_times = interleaved(evals, repeats=repeats, iterations=iterations[0], warmup=2)
    train_times = interleaved(trains, repeats=repeats, iterations=iterations[1], warmup=1)
    eval_ratio, train_ratio = ratios(eval_times, "none"), ratios(train_times, "none")
    for row in rows:
        row["eval_ms"] = 1000 * statistics.median(eval_times[row["name"]])
        row["eval"] = eval_ratio[row["name"]]
        row["train_ms"] = 1000 * statistics.median(train_times[row["name"]])
        row["train"] = train_ratio[row["name"]]
    return rows


def table(model: str, size: str, batch: int, rows: list[dict]) -> str:
    base = rows[0]
    lines = [
        f"{model}, input {size}, train batch {batch}",
        "",
        "| variant | parameters | Δ params | MACs | Δ MACs | eval ms (1 image) | eval ratio "
        "| train ms (batch) | train ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        dp = 100 * (r["params"] / base["params"] - 1)
        dm = 100 * (r["macs"] / base["macs"] - 1)
        lines.append(
            f"| {r['name']} | {r['params']:,} | {dp:+.1f} % | {r['macs'] / 1e6:.2f} M | "
            f"{dm:+.1f} % | {r['eval_ms']:.2f} | {r['eval'][0]:.2f} ({r['eval'][1]:.2f}–"
            f"{r['eval'][2]:.2f}) | {r['train_ms']:.0f} | {r['train'][0]:.2f} "
            f"({r['train'][1]:.2f}–{r['train'][2]:.2f}) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--models", default="mobilenet_v2,mobilenet_v3_small")
    parser.add_argument("--sizes", default="1,28,28:3,224,224", help="C,H,W sizes, ':'-separated")
    parser.add_argument("--preset", default="pattern3", help="AttentionSpec preset of pre/branch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-small", type=int, default=64, help="train batch up to 64 px")
    parser.add_argument("--batch-large", type=int, default=8, help="train batch above 64 px")
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, preset "
        f"{args.preset}, {args.repeats} interleaved repeats\n"
    )
    for model in args.models.split(","):
        for size in args.sizes.split(":"):
            c, h, w = (int(v) for v in size.split(","))
            small = h <= 64
            batch = args.batch_small if small else args.batch_large
            rows = measure(
                model,
                (c, h, w),
                variants(model, args.preset),
                batch=batch,
                repeats=args.repeats,
                iterations=(20, 3) if small else (5, 1),
            )
            print(table(model, f"{c}×{h}×{w}", batch, rows), "\n", flush=True)


if __name__ == "__main__":
    main()

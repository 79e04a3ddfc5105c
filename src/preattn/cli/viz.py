"""``preattn viz``: figures of a run's attention (:mod:`preattn.viz`) on its first images:
spatial gates with Grad-CAM, channel gates, λ over training, and a second run beside it."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["MAX_VIZ_IMAGES", "add_parser", "run"]

# the most images `viz` draws (one figure row each)
MAX_VIZ_IMAGES = 64

FIGURES = ("attention.png", "channel_gates.png", "lambda.png", "compare.png")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "viz",
        allow_abbrev=False,
        help="figures of a run's attention: spatial maps, Grad-CAM, channel gates, λ",
    )
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="run directory")
    p.add_argument("--images", type=int, default=8, help="how many images, 1-64 (default 8)")
    p.add_argument("--split", choices=("test", "train"), default="test")
    p.add_argument("--out", help="folder for the PNGs (default: DIR/viz)")
    p.add_argument("--compare", metavar="DIR2", help="a second run, side by side")
    p.set_defaults(func=run)
    return p


def distinct_labels(a: Path, b: Path) -> tuple[str, str]:
    """The shortest trailing parts of two run paths that tell them apart (ablate's
    ``variant/seedK`` runs share their last name)."""
    parts_a, parts_b = a.resolve().parts, b.resolve().parts
    for depth in range(1, max(len(parts_a), len(parts_b)) + 1):
        label_a, label_b = "/".join(parts_a[-depth:]), "/".join(parts_b[-depth:])
        if label_a != label_b:
            return label_a, label_b
    return f"{a} (1)", f"{b} (2)"  # the same run twice


def run(args: argparse.Namespace) -> int:
    from ..maps import attention_maps
    from ..train.load import load_model
    from ..train.plots import plot_lambda
    from ..train.rundir import RunDir, guard_output
    from ..viz import GRADCAM_HINT, draw_attention, draw_channel_gates, draw_comparison, run_batch

    if not 1 <= args.images <= MAX_VIZ_IMAGES:
        raise ValueError(
            f"--images must be an int in [1, {MAX_VIZ_IMAGES}] (one figure row each), "
            f"got {args.images}"
        )
    run_record = RunDir(args.checkpoint)
    out = Path(args.out) if args.out else run_record.path / "viz"
    target = {name: guard_output(out / name, "--out", own_run=run_record) for name in FIGURES}
    loaded, batch = run_batch(args.checkpoint, args.split, args.images)
    out.mkdir(parents=True, exist_ok=True)
    name = str(run_record.path)
    path, with_cam = draw_attention(loaded.model, batch, target["attention.png"], name=name)
    written = [path]
    maps = attention_maps(loaded.model, batch.images)
    gates = draw_channel_gates(maps, batch, target["channel_gates.png"], name=name)
    if gates:
        written.append(gates)
    history = run_record.read_metrics()
    if history:
        written.append(plot_lambda(history, target["lambda.png"], name))
    if args.compare:
        other = load_model(args.compare)
        first, second = distinct_labels(Path(args.checkpoint), Path(args.compare))
        models = {first: loaded.model, second: other.model}
        path, cam = draw_comparison(models, batch, target["compare.png"])
        written.append(path)
        with_cam = with_cam and cam
    run_record.record(*written)  # what lies inside the run directory is the run's
    for path in written:
        print(f"wrote {path}")
    if not with_cam:
        print(GRADCAM_HINT)
    return 0

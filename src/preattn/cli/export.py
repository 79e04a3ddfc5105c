"""``preattn export``: a run's model as ONNX with a dynamic batch axis (BatchNorm folded
unless ``--no-fuse``; :func:`preattn.export_onnx`)."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export", allow_abbrev=False, help="export a run's model to ONNX (BatchNorm folded)"
    )
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="run directory")
    p.add_argument("--onnx", required=True, help="output .onnx file")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset, >= 18")
    p.add_argument("--no-fuse", action="store_true", help="keep BatchNorm layers")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..deploy import export_onnx, fuse, onnx_opset
    from ..train.load import load_model
    from ..train.rundir import guard_output

    target = guard_output(args.onnx, "--onnx")
    loaded = load_model(args.checkpoint)
    model = loaded.model if args.no_fuse else fuse(loaded.model)
    shape = (loaded.in_chans, loaded.image_size, loaded.image_size)
    path = export_onnx(model, target, (1, *shape), opset=args.opset)
    print(
        f"wrote {path} (input (batch, {', '.join(map(str, shape))}), dynamic batch, "
        f"opset {onnx_opset(path)}, BatchNorm {'kept' if args.no_fuse else 'folded'})"
    )
    return 0

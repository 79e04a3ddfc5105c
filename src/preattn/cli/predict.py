"""``preattn predict``: the top-k classes of image files with a run's model
(:func:`preattn.predict.iter_predictions`), printed batch by batch; an unreadable image is
a line on stderr and exit 2 at the end, the others are still predicted."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import _validate
from ..data.errors import DatasetError
from ._errors import one_line

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "predict", allow_abbrev=False, help="top-k classes of image files with a run's model"
    )
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="run directory")
    p.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="PNG or JPEG files, or folders (their image files, by name)",
    )
    p.add_argument("--top-k", type=int, default=3, help="classes per image (default 3)")
    p.add_argument(
        "--batch-size",
        type=int,
        help="images decoded and predicted at once: the memory bound (default 64)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..predict import DEFAULT_BATCH, image_files, iter_predictions
    from ..train.load import load_model

    _validate.positive_int("--top-k", args.top_k)
    batch_size = _validate.positive_int(
        "--batch-size", DEFAULT_BATCH if args.batch_size is None else args.batch_size
    )
    loaded = load_model(args.checkpoint)
    failed = 0

    def report(path: str | Path, exc: DatasetError) -> None:  # the others go on
        nonlocal failed
        print(f"preattn predict: error: {one_line(exc)}", file=sys.stderr, flush=True)
        failed += 1

    results = iter_predictions(
        loaded.model,
        image_files(args.images),
        loaded.info,
        top_k=args.top_k,
        on_error=report,
        batch_size=batch_size,
    )
    for result in results:  # printed batch by batch, as they are computed
        print(json.dumps(result.to_dict()) if args.json else str(result), flush=True)
    return 2 if failed else 0

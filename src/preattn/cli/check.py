"""``preattn check``: the Pattern-3 checklist (:func:`preattn.check`) for every attended
block of a network built from flags or of a trained run; exit 1 on a warning or error."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..data.errors import DatasetError
from ._network import add_network_flags, network_from_flags

__all__ = ["add_parser", "run"]

# the test images a trained run's gates are probed on
PROBE_IMAGES = 64


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "check",
        allow_abbrev=False,
        help="the Pattern-3 checklist for every attended block (exit 1 on a warning)",
    )
    p.add_argument("--checkpoint", metavar="DIR", help="check a trained run")
    add_network_flags(p, default_model="simplecnn")
    p.set_defaults(func=run)
    return p


def _test_images(config: Any, count: int) -> Any:
    """The first ``count`` test images of a run's data set, or None (with a note on stderr)
    when the data set cannot be read here."""
    from ..data.registry import first_images
    from ..train.build import build_data

    try:
        test = build_data(config, limit_train=1, limit_test=count).test
    except DatasetError as exc:
        print(f"note: probing with random images ({exc})", file=sys.stderr)
        return None
    return first_images(test, count)


def run(args: argparse.Namespace) -> int:
    from ..check import check

    if args.checkpoint:
        from ..train.load import load_model

        loaded = load_model(args.checkpoint)
        model, trained = loaded.model, True
        size = (loaded.in_chans, loaded.image_size, loaded.image_size)
        images = _test_images(loaded.config, PROBE_IMAGES)
    else:
        model, size, _ = network_from_flags(args)
        trained, images = False, None
    findings = check(model, size, trained=trained, images=images)
    for finding in findings:
        print(finding)
    bad = [f for f in findings if f.severity != "info"]
    print(f"{len(bad)} warning(s)/error(s) in {len(findings)} findings")
    return 1 if bad else 0

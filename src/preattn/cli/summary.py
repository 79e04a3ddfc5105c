"""``preattn summary``: parameters, MACs, attention overhead and λ of a network, built from
flags or read from a run (:func:`preattn.summary`)."""

from __future__ import annotations

import argparse

from ._network import add_network_flags, network_from_flags

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "summary", allow_abbrev=False, help="parameters, MACs, attention overhead and λ of a model"
    )
    p.add_argument(
        "--checkpoint", metavar="DIR", help="summarise a run's network (the other flags: unused)"
    )
    add_network_flags(p, default_model="resnet18")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..summary import summary

    if args.checkpoint:  # the run's own network, built as training built it
        from ..train.load import load_model

        loaded = load_model(args.checkpoint)
        size = (loaded.in_chans, loaded.image_size, loaded.image_size)
        title = f"{args.checkpoint}: {loaded.config.network.describe()}"
        print(summary(loaded.model, size, name=title))
        return 0
    model, size, title = network_from_flags(args)
    print(summary(model, size, name=title))
    return 0

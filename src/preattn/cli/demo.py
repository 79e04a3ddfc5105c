"""``preattn demo``: train the shipped ``demo`` recipe (:mod:`preattn.train.recipes`) in a
few minutes, then say what it learned and draw its attention. Without Fashion-MNIST it
trains the ``demo-synthetic`` recipe instead."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..data.errors import DatasetError
from ..data.registry import find_idx_files

if TYPE_CHECKING:
    from ..train.config import TrainConfig
    from ..train.epoch_record import EpochRecord

__all__ = ["DEMO_IDLE_TIME", "add_parser", "demo_config", "run"]

# `make demo` on an idle 2-core CPU (Fashion-MNIST, bf16, channels-last): 1 min 50 s
DEMO_IDLE_TIME = "about 2 minutes on an idle 2-core CPU"


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from ..train.recipes import recipe_path

    p = sub.add_parser(
        "demo",
        allow_abbrev=False,
        help="train the reference SimpleCNN for a few minutes (8,000 Fashion-MNIST images x 3 "
        "epochs, lr 0.05: shorter than train's defaults)",
        description=f"Train the recipe {recipe_path('demo')} (without Fashion-MNIST: "
        f"{recipe_path('demo-synthetic')}), then draw the attention of the trained model. "
        "'preattn train --config RECIPE' trains the same run.",
    )
    p.add_argument("--data-dir", help="folder with Fashion-MNIST (default: Debian's)")
    p.add_argument(
        "--out", help="run directory (default: a new runs/<date>-<time>-demo, never reused)"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace the run in --out (else refused)"
    )
    p.set_defaults(func=run)
    return p


def demo_config(data_dir: str | None = None, out: str | None = None) -> TrainConfig:
    """What the demo trains: the ``demo`` recipe reading Fashion-MNIST from ``data_dir``
    when it is there, else the ``demo-synthetic`` recipe; into ``out`` (default: a new
    ``runs/<date>-<time>-demo``)."""
    from ..train.recipes import load_recipe
    from ..train.rundir import default_run_dir

    try:
        find_idx_files("fashion-mnist", data_dir)
        config = load_recipe("demo").replace(data_dir=data_dir)
    except DatasetError:
        config = load_recipe("demo-synthetic")
    # a new directory per demo: an earlier demo run is kept
    return config.replace(out=out or str(default_run_dir("demo")))


def _announce(config: TrainConfig) -> None:
    if config.dataset == "fashion-mnist":
        source = find_idx_files("fashion-mnist", config.data_dir)["train_images"].parent
        print(
            "demo: the reference SimpleCNN of docs/pattern3.md (Pattern-3, CBAM, λ=0.1) on "
            f"Fashion-MNIST from {source}; {DEMO_IDLE_TIME} (longer while other programs "
            f"share it; each epoch ends with the time left): {config.limit_train:,} images x "
            f"{config.epochs} epochs, lr {config.lr} with a {config.warmup_epochs}-epoch "
            "warm-up (`preattn train` defaults to the full data "
            "and lr 0.1 over 10 epochs), bf16 where this machine computes it natively "
            "(--amp auto), channels-last, images on the device path (--device-data)"
        )
    else:
        print(
            "demo: Fashion-MNIST is not installed (`apt-get install dataset-fashion-mnist`); "
            "using the built-in synthetic shapes task instead"
        )


def _say_what_it_learned(config: TrainConfig, record: EpochRecord) -> None:
    """The held-out accuracy against chance, each block's λ and where the plots are."""
    from ..train.rundir import RunDir

    out = Path(str(config.out))
    trained_on = RunDir(out).read_data_info()
    chance = 1 / len(trained_on.classes) if trained_on else float("nan")
    print()
    print(
        f"held-out accuracy {record.test_acc:.4f} (chance {chance:.4f}) after {record.epoch} epochs"
    )
    for block, value in record.lam.items():
        print(f"learned λ {block}: {value:.4f} (started at {config.spec.lam})")
    print(f"run directory: {config.out}")
    print(f"plots: {out / 'curves.png'}, {out / 'lambda.png'}")


def _draw_attention(config: TrainConfig) -> None:
    """``attention.png`` of the trained model on six test images, recorded in the run."""
    from ..train.rundir import RunDir
    from ..viz import GRADCAM_HINT, draw_attention, run_batch

    out = Path(str(config.out))
    loaded, batch = run_batch(out, "test", 6)
    path, with_cam = draw_attention(
        loaded.model, batch, out / "attention.png", name=str(config.out)
    )
    RunDir(out).record(path)
    print(f"attention maps: {path}" + ("" if with_cam else f" ({GRADCAM_HINT})"))


def run(args: argparse.Namespace) -> int:
    from ..train.loop import format_duration, train

    config = demo_config(args.data_dir, args.out)
    _announce(config)

    def time_left(record: EpochRecord) -> None:  # after each epoch, at the pace so far
        done, total = record.epoch, config.epochs
        if done < total:
            left = (record.elapsed_s or 0.0) / done * (total - done)
            print(f"demo: epoch {done}/{total} done; about {format_duration(left)} left")

    record = train(config, overwrite=args.overwrite, callbacks=[time_left])
    _say_what_it_learned(config, record)
    _draw_attention(config)
    return 0

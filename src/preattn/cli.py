"""Command line: ``preattn <command>`` (also ``python -m preattn <command>``).

Commands: ``train``, ``compare``, ``eval``, ``demo``, ``summary``, ``export``.
Errors in the arguments or the data end in one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from .blocks import PLACEMENTS
from .data.errors import DatasetError
from .data.registry import DATASETS, find_idx_files
from .mixing import LAMBDA_PARAMS
from .models.factory import MODELS

__all__ = ["main"]


def _optional_float(text: str) -> float | None:
    return None if text.lower() in ("none", "off") else float(text)


def _stages(text: str) -> list[int] | None:
    if text.lower() in ("none", "default"):
        return None
    try:
        return [int(s) for s in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected stage numbers like 2,3,4, got {text!r}"
        ) from None


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


# flag -> (type, help, choices); defaults come from TrainConfig
_TRAIN_FLAGS: dict[str, tuple[Any, str, Sequence[str] | None]] = {
    "dataset": (str, "data set", DATASETS),
    "data_dir": (str, "folder with the data files (also $PREATTN_DATA)", None),
    "model": (str, "network", list(MODELS)),
    "placement": (str, "where attention sits in each residual block", PLACEMENTS),
    "attention": (str, "attention module (cbam, cbam-official, se, eca, channel, spatial)", None),
    "lam": (_optional_float, "initial λ in [0, 1]; 'none' for uncontrolled attention", None),
    "lam_param": (str, "λ parameterisation", LAMBDA_PARAMS),
    "lam_learnable": (_bool, "learn λ (true) or keep it fixed (false)", None),
    "lam_warmup_steps": (int, "ramp λ from 0 over this many training steps", None),
    "stages": (_stages, "ResNet stages with attention, e.g. '2,3,4'", None),
    "epochs": (int, "training epochs", None),
    "batch_size": (int, "batch size per process", None),
    "lr": (float, "peak learning rate", None),
    "optimizer": (str, "optimiser (SGD with Nesterov momentum, or AdamW)", ("sgd", "adamw")),
    "momentum": (float, "SGD momentum", None),
    "weight_decay": (float, "weight decay (never on λ, BatchNorm or biases)", None),
    "label_smoothing": (float, "label smoothing of the cross-entropy", None),
    "warmup_epochs": (float, "linear learning-rate warm-up, in epochs", None),
    "limit_train": (int, "use the first N training images", None),
    "limit_test": (int, "use the first N test images", None),
    "image_size": (int, "image size for imagefolder (224) and synthetic (32)", None),
    "seed": (int, "random seed", None),
    "out": (str, "run directory (config, metrics, checkpoints, plots)", None),
    "device": (str, "auto, cpu, cuda or cuda:N", None),
    "amp": (_bool, "mixed precision (bf16 on CPU, fp16 on CUDA)", None),
    "channels_last": (_bool, "channels-last memory format", None),
    "sync_bn": (_bool, "SyncBatchNorm under DDP (CUDA only)", None),
    "workers": (int, "data-loader worker processes", None),
}


def _add_train_flags(parser: argparse.ArgumentParser) -> None:
    from .train.config import TrainConfig

    defaults = {f.name: f.default for f in fields(TrainConfig)}
    for name, (kind, text, choices) in _TRAIN_FLAGS.items():
        flag = "--" + name.replace("_", "-")
        help_text = f"{text} (default: {defaults[name]})"
        if kind is _bool:
            parser.add_argument(
                flag, nargs="?", const=True, type=_bool, default=argparse.SUPPRESS, help=help_text
            )
        else:
            parser.add_argument(
                flag, type=kind, choices=choices, default=argparse.SUPPRESS, help=help_text
            )


def _train_config(args: argparse.Namespace) -> Any:
    from .train.config import TrainConfig

    given = {name: getattr(args, name) for name in _TRAIN_FLAGS if hasattr(args, name)}
    if args.resume:
        base = TrainConfig.from_yaml(Path(args.resume) / "config.yaml").to_dict()
        base["out"] = str(args.resume)
    elif args.config:
        base = TrainConfig.from_yaml(args.config).to_dict()
    else:
        base = {}
    base.update(given)
    return TrainConfig.from_dict(base).validate()


def _cmd_train(args: argparse.Namespace) -> int:
    from .train.loop import train

    config = _train_config(args)
    record = train(config, resume=bool(args.resume))
    if record and int(os.environ.get("RANK", "0")) == 0:
        print(f"done: test accuracy {record['test_acc']:.4f}; run directory {config.out}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from .train.compare import compare, format_comparison

    config = _train_config(args)
    placements = [p.strip() for p in args.placements.split(",") if p.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    rows = compare(config, placements, seeds)
    print()
    print(format_comparison(rows, placements))
    print(f"\nreport: {Path(config.out) / 'comparison.md'}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import json

    import torch

    from .train.distributed import init_distributed
    from .train.evaluate import evaluate
    from .train.loop import load_run
    from .train.plots import plot_confusion

    run_dir = Path(args.checkpoint)
    config, splits, model, epoch = load_run(
        run_dir, data_dir=args.data_dir, limit_test=args.limit_test
    )
    ctx = init_distributed(args.device)
    model.to(ctx.device)
    loader = torch.utils.data.DataLoader(splits.test, batch_size=args.batch_size)
    result = evaluate(model, loader, splits.num_classes, ctx.device)
    out_dir = Path(args.out) if args.out else run_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    png = plot_confusion(result.confusion, splits.classes, out_dir / "confusion.png")
    print(
        f"{run_dir} (epoch {epoch}) on {config.dataset} test, {int(result.confusion.sum())} "
        f"images: accuracy {result.accuracy:.4f}, loss {result.loss:.4f}"
    )
    for name, acc in zip(splits.classes, result.per_class_accuracy, strict=True):
        print(f"  {name:>16s}  {acc:.4f}")
    report = {
        "epoch": epoch,
        "accuracy": result.accuracy,
        "loss": result.loss,
        "per_class_accuracy": dict(
            zip(splits.classes, map(float, result.per_class_accuracy), strict=True)
        ),
        "confusion": result.confusion.tolist(),
    }
    (out_dir / "eval.json").write_text(json.dumps(report, indent=1))
    print(f"confusion matrix: {png}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .train.config import TrainConfig
    from .train.loop import train

    try:
        source = find_idx_files("fashion-mnist", args.data_dir)["train_images"].parent
        dataset = "fashion-mnist"
    except DatasetError:
        source, dataset = None, "synthetic"
    if dataset == "fashion-mnist":
        print(
            f"demo: the notebook's SimpleCNN (Pattern-3, CBAM, λ=0.1) on Fashion-MNIST from "
            f"{source}"
        )
        config = TrainConfig(
            dataset="fashion-mnist",
            data_dir=args.data_dir,
            epochs=3,
            limit_train=8_000,
            batch_size=128,
            lr=0.05,
            warmup_epochs=0.2,
            out=args.out,
            seed=0,
        )
        chance = 0.1
    else:
        print(
            "demo: Fashion-MNIST is not installed (`apt-get install dataset-fashion-mnist`); "
            "using the built-in synthetic shapes task instead"
        )
        config = TrainConfig(
            dataset="synthetic",
            image_size=20,
            limit_train=4800,
            limit_test=1200,
            epochs=4,
            batch_size=64,
            lr=0.05,
            warmup_epochs=0.25,
            out=args.out,
            seed=0,
        )
        chance = 1 / 6
    record = train(config.validate())
    print()
    print(
        f"held-out accuracy {record['test_acc']:.4f} (chance {chance:.4f}) after "
        f"{record['epoch']} epochs"
    )
    for block, value in record["lambda"].items():
        print(f"learned λ {block}: {value:.4f} (started at {config.lam})")
    print(f"plots: {Path(config.out) / 'curves.png'}, {Path(config.out) / 'lambda.png'}")
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    from .models.factory import create_model
    from .summary import summary

    kwargs: dict[str, Any] = dict(
        num_classes=args.num_classes,
        in_chans=args.input_size[0],
        placement=args.placement,
        attention=args.attention,
        lam=args.lam,
        stages=args.stages,
    )
    if args.model != "simplecnn":
        kwargs["stem"] = args.stem
    model = create_model(args.model, **kwargs)
    title = f"{args.model} placement={args.placement} attention={args.attention}"
    print(summary(model, args.input_size, name=title))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .deploy import export_onnx, fuse
    from .train.loop import load_run

    _, splits, model, _ = load_run(args.checkpoint, limit_test=1)
    if not args.no_fuse:
        model = fuse(model)
    image = splits.test[0][0]
    path = export_onnx(model, args.onnx, (1, *image.shape), opset=args.opset)
    print(
        f"wrote {path} (input (batch, {', '.join(map(str, image.shape))}), dynamic batch, "
        f"opset {args.opset}, BatchNorm {'kept' if args.no_fuse else 'folded'})"
    )
    return 0


def _input_size(text: str) -> tuple[int, ...]:
    try:
        size = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected C,H,W such as 3,224,224, got {text!r}"
        ) from None
    if len(size) != 3:
        raise argparse.ArgumentTypeError(f"expected C,H,W such as 3,224,224, got {text!r}")
    return size


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="preattn", description="Pre-residual attention (Pattern-3) for CNNs."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "train",
        help="train a network",
        description="Train a network; flags override --config / --resume.",
    )
    p.add_argument("--config", help="YAML file with any of the flags below (flags win)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its checkpoint")
    _add_train_flags(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "compare",
        help="train one run per placement and seed, report test accuracy side by side",
        description="Paired comparison: every placement is trained with the same seeds; "
        "accepts every flag of 'train' except --placement.",
    )
    p.add_argument(
        "--placements",
        default="none,pre,branch,post,skip",
        help="comma-separated placements; the first is the reference "
        "(default: none,pre,branch,post,skip)",
    )
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: 0,1,2)")
    p.add_argument("--config", help="YAML file with train flags (flags win)")
    p.set_defaults(resume=None)
    _add_train_flags(p)
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("eval", help="evaluate a run's checkpoint on its test set")
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="run directory")
    p.add_argument("--data-dir", help="override the data folder of the run")
    p.add_argument("--limit-test", type=int, help="use the first N test images")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", help="where to write confusion.png and eval.json (default: DIR)")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("demo", help="train the notebook's SimpleCNN for a few minutes")
    p.add_argument("--data-dir", help="folder with Fashion-MNIST (default: Debian's)")
    p.add_argument("--out", default="runs/demo", help="run directory (default: runs/demo)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("summary", help="parameters, MACs, attention overhead and λ of a model")
    p.add_argument("--model", default="resnet18", choices=list(MODELS))
    p.add_argument("--placement", default="pre", choices=PLACEMENTS)
    p.add_argument("--attention", default="cbam")
    p.add_argument("--lam", type=_optional_float, default=0.1)
    p.add_argument("--stages", type=_stages, default=None, help="e.g. 1,2,3,4 (default 2,3,4)")
    p.add_argument("--stem", default="imagenet", choices=("imagenet", "cifar"))
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--input-size", type=_input_size, default=(3, 224, 224), help="C,H,W")
    p.set_defaults(func=_cmd_summary)

    p = sub.add_parser("export", help="export a run's model to ONNX (BatchNorm folded)")
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="run directory")
    p.add_argument("--onnx", required=True, help="output .onnx file")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--no-fuse", action="store_true", help="keep BatchNorm layers")
    p.set_defaults(func=_cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, TypeError, FileNotFoundError, DatasetError) as exc:
        print(f"preattn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"preattn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

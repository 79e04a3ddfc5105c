"""Command line: ``preattn <command>`` (also ``python -m preattn <command>``).

Commands: ``train``, ``compare``, ``ablate``, ``eval``, ``demo``, ``summary``, ``viz``, ``predict``,
``check``, ``export``.
Errors in the arguments or the data end in one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import Field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__, _validate
from ._console import console_lines
from ._failures import disk_full_message, is_disk_full, out_of_memory_message
from ._io import atomic_write_text
from ._options import parse_bool
from ._yaml import parse_yaml_value
from .data.errors import DatasetError
from .data.registry import find_idx_files
from .models.factory import MODELS
from .spec import PRESETS, AttentionSpec

if TYPE_CHECKING:
    from torch import nn

    from .train.epoch_record import EpochRecord

__all__ = ["build_parser", "main"]

# the most images `viz` draws (one figure row each)
MAX_VIZ_IMAGES = 64
# the most input channels `summary`/`check` build a network for (multispectral data has ~13)
MAX_INPUT_CHANNELS = 16


def _argparse_type(parse: Any) -> Any:
    """Wrap a field's parser so argparse reports its ValueError as a usage error."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def _add_field_flags(
    parser: argparse.ArgumentParser, fields_: Sequence[Field], defaults: dict[str, Any]
) -> None:
    """One ``--flag`` per declared field, from its ``help``, ``parse`` and ``choices``."""
    for f in fields_:
        flag = "--" + f.name.replace("_", "-")
        parse = f.metadata.get("parse", str)
        default = defaults.get(f.name)
        shown = default if not isinstance(default, Mapping) else dict(default)
        text = f.metadata.get("help", "")
        # a help text that states its own default (per model, say) is not told it again
        help_text = text if "(default" in text else f"{text} (default: {shown})"
        choices = f.metadata.get("choices")
        const = True if parse is parse_bool else f.metadata.get("const")
        if const is not None:
            parser.add_argument(
                flag,
                nargs="?",
                const=const,
                choices=choices,
                type=_argparse_type(parse),
                default=argparse.SUPPRESS,
                help=help_text,
            )
        else:
            parser.add_argument(
                flag,
                type=_argparse_type(parse),
                choices=choices,
                default=argparse.SUPPRESS,
                help=help_text,
            )


def _add_attention_flags(
    parser: argparse.ArgumentParser, defaults: dict[str, Any], exclude: Sequence[str] = ()
) -> None:
    """``--placement``, ``--attention``, ``--lam`` ...: one flag per AttentionSpec field."""
    group = parser.add_argument_group("attention (preattn.AttentionSpec)")
    group.add_argument(
        "--preset",
        choices=list(PRESETS),
        default=argparse.SUPPRESS,
        help="a named design (docs/lambda.md); the flags below override its fields",
    )
    spec_fields = [f for f in fields(AttentionSpec) if f.name not in exclude]
    _add_field_flags(group, spec_fields, defaults)  # type: ignore[arg-type]


def _spec_values(args: argparse.Namespace) -> dict[str, Any]:
    """The AttentionSpec fields given on the command line, on top of ``--preset``'s (all
    fields of the preset, so it replaces what a config file said)."""
    given = _given(args, AttentionSpec.names())
    preset = getattr(args, "preset", None)
    if preset is None:
        return given
    return {**AttentionSpec.preset(preset).to_dict(), **given}


def _add_train_flags(parser: argparse.ArgumentParser, exclude: Sequence[str] = ()) -> None:
    """Every TrainConfig option and AttentionSpec field as a flag, but ``exclude``."""
    from .train.config import TrainConfig

    defaults = TrainConfig().to_dict()
    options = [f for f in TrainConfig.option_fields() if f.name not in exclude]
    _add_field_flags(parser.add_argument_group("training"), options, defaults)
    _add_attention_flags(parser, defaults, exclude)


def _given(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    return {name: getattr(args, name) for name in names if hasattr(args, name)}


def _train_config(args: argparse.Namespace) -> Any:
    from .train.config import TrainConfig

    given = {**_given(args, TrainConfig.keys()), **_spec_values(args)}
    if getattr(args, "resume", None):
        if args.config:
            raise ValueError("--resume continues a run with its own config; drop --config")
        from .train.rundir import RunDir

        base = RunDir(args.resume).read_config()[0].to_dict()
        base["out"] = str(args.resume)
    elif args.config:
        base = TrainConfig.from_yaml(args.config).to_dict()
    else:
        base = {}
    base.update(given)
    return TrainConfig.from_dict(base).validate()


def _cmd_train(args: argparse.Namespace) -> int:
    from .train.loop import train
    from .train.rundir import default_run_dir

    config = _train_config(args)
    if args.resume and args.overwrite:
        raise ValueError("--resume and --overwrite contradict each other; choose one")
    if config.out is None:
        config = config.replace(out=str(default_run_dir(config.model)))
    record = train(config, resume=bool(args.resume), overwrite=args.overwrite)
    if record and int(os.environ.get("RANK", "0")) == 0:
        print(f"done: test accuracy {record.test_acc:.4f}; run directory {config.out}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from .ablate import compare, format_report
    from .train.rundir import default_run_dir

    config = _train_config(args)
    if config.out is None:
        config = config.replace(out=str(default_run_dir("compare")))
    placements = [p.strip() for p in args.placements.split(",") if p.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    report = compare(config, placements, seeds, jobs=args.jobs)
    print()
    print(format_report(report))
    print(f"report: {Path(config.out) / 'report.md'}")
    return 0


def _key_values(items: Sequence[str], flag: str) -> dict[str, Any]:
    """``["epochs=1", "stages=[2, 3]"]`` -> ``{"epochs": 1, "stages": [2, 3]}`` (YAML values)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} takes KEY=VALUE, got {item!r}")
        out[key.strip().replace("-", "_")] = parse_yaml_value(value.strip())
    return out


def _cmd_ablate(args: argparse.Namespace) -> int:
    from .ablate import Grid, SlurmOptions, ablate, format_report
    from .ablate.commands import is_command_grid, run_from_cli

    if len(args.grid) == 1 and is_command_grid(args.grid[0]):
        return run_from_cli(args)  # variants as commands: preattn.ablate.commands
    grids = [Grid.from_yaml(path) for path in args.grid]
    if args.override:
        overrides = _key_values(args.override, "--override")
        grids = [g.with_overrides(overrides) for g in grids]
    report_root = Path(args.report_dir or args.out)
    if len(grids) > 1:
        stems = [Path(p).stem for p in args.grid]
        if len(set(stems)) != len(stems):
            raise ValueError(f"grid files must have distinct names, got {args.grid}")
        report_dirs: Any = [report_root / stem for stem in stems]
    else:
        report_dirs = report_root
    slurm = SlurmOptions(
        partition=args.partition,
        gpus_per_task=args.gpus_per_task,
        cpus_per_task=args.cpus_per_task,
        time_min=args.time_min,
    )
    result = ablate(
        grids if len(grids) > 1 else grids[0],
        args.out,
        jobs=args.jobs,
        executor=args.executor,
        slurm=slurm,
        dry_run=args.dry_run,
        report_only=args.report_only,
        time_limit=args.time_limit,
        variants=[v.strip() for v in args.variants.split(",") if v.strip()]
        if args.variants is not None
        else None,
        report_dir=report_dirs,
    )
    if result is not None:
        reports = result if len(grids) > 1 else [result]
        folders = report_dirs if len(grids) > 1 else [report_dirs]
        for report, folder in zip(reports, folders, strict=True):
            print()
            print(format_report(report))
            print(f"report: {folder / 'report.md'}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import json

    from .train.plots import plot_confusion
    from .train.run_evaluation import evaluate_run
    from .train.rundir import RunDir, guard_output

    run_dir = Path(args.checkpoint)
    run = RunDir(run_dir)
    out_dir = Path(args.out) if args.out else run_dir
    targets = [
        guard_output(out_dir / name, "--out", own_run=run)
        for name in ("confusion.png", "eval.json")
    ]
    evaluation = evaluate_run(
        run_dir,
        data_dir=args.data_dir,
        limit_test=args.limit_test,
        batch_size=args.batch_size,
        device=args.device,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    confusion = evaluation.result.confusion
    png = plot_confusion(confusion, list(evaluation.classes), targets[0], evaluation.title())
    print("\n".join(evaluation.lines()))
    atomic_write_text(targets[1], json.dumps(evaluation.to_json(), indent=1))
    run.record(*targets)  # only those inside the run directory are recorded
    print(f"confusion matrix: {png}")
    return 0


# `make demo` on an idle 2-core CPU (Fashion-MNIST, bf16, channels-last): 1 min 50 s
DEMO_IDLE_TIME = "about 2 minutes on an idle 2-core CPU"


def _cmd_demo(args: argparse.Namespace) -> int:
    from .train.config import TrainConfig
    from .train.loop import format_duration, train
    from .train.rundir import RunDir, default_run_dir

    try:
        source = find_idx_files("fashion-mnist", args.data_dir)["train_images"].parent
        dataset = "fashion-mnist"
    except DatasetError:
        source, dataset = None, "synthetic"
    if dataset == "fashion-mnist":
        print(
            "demo: the reference SimpleCNN of docs/pattern3.md (Pattern-3, CBAM, λ=0.1) on "
            f"Fashion-MNIST from {source}; {DEMO_IDLE_TIME} (longer while other programs "
            "share it; each epoch ends with the time left): 8,000 images x 3 epochs, "
            "lr 0.05 with a 0.2-epoch warm-up (`preattn train` defaults to the full data "
            "and lr 0.1 over 10 epochs), bf16 where this machine computes it natively "
            "(--amp auto), channels-last, images on the device path (--device-data)"
        )
        config = TrainConfig(
            dataset="fashion-mnist",
            data_dir=args.data_dir,
            epochs=3,
            limit_train=8_000,
            batch_size=128,
            lr=0.05,
            warmup_epochs=0.2,
            amp="auto",
            channels_last=True,
            device_data=True,
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
    if config.out is None:  # a new directory per demo: an earlier demo run is kept
        config = config.replace(out=str(default_run_dir("demo")))

    def time_left(record: EpochRecord) -> None:  # after each epoch, at the pace so far
        done, total = record.epoch, config.epochs
        if done < total:
            left = (record.elapsed_s or 0.0) / done * (total - done)
            print(f"demo: epoch {done}/{total} done; about {format_duration(left)} left")

    record = train(config.validate(), overwrite=args.overwrite, callbacks=[time_left])
    print()
    print(
        f"held-out accuracy {record.test_acc:.4f} (chance {chance:.4f}) after {record.epoch} epochs"
    )
    for block, value in record.lam.items():
        print(f"learned λ {block}: {value:.4f} (started at {config.spec.lam})")
    print(f"run directory: {config.out}")
    print(f"plots: {Path(config.out) / 'curves.png'}, {Path(config.out) / 'lambda.png'}")
    from .viz import GRADCAM_HINT, draw_attention

    loaded, batch = _sample_batch(str(config.out), "test", 6)
    path, with_cam = draw_attention(
        loaded.model, batch, Path(config.out) / "attention.png", name=str(config.out)
    )
    RunDir(config.out).record(path)
    print(f"attention maps: {path}" + ("" if with_cam else f" ({GRADCAM_HINT})"))
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    from .summary import summary

    if args.checkpoint:  # the run's own network, built as training built it
        from .train.load import load_model

        loaded = load_model(args.checkpoint)
        size = (loaded.in_chans, loaded.image_size, loaded.image_size)
        config = loaded.config
        title = f"{args.checkpoint}: {config.network.describe()}"
        print(summary(loaded.model, size, name=title))
        return 0
    model, size, title = _network_from_flags(args)
    print(summary(model, size, name=title))
    return 0


def _add_network_flags(p: argparse.ArgumentParser, *, default_model: str) -> None:
    """The flags that describe a network without a run (``summary``, ``check``): one per
    field of :class:`~preattn.models.ModelConfig` (as training's), the attention spec, and
    the data's shape (classes, input size); :func:`_network_from_flags` builds it."""
    from .models.config import ModelConfig

    defaults = {**ModelConfig.defaults(), "model": default_model}
    group = p.add_argument_group("network (preattn.models.ModelConfig)")
    _add_field_flags(group, ModelConfig.option_fields(), defaults)
    group.add_argument(
        "--num-classes", type=int, help="classes (default: simplecnn 10, the others 1000)"
    )
    group.add_argument(
        "--input-size",
        type=_input_size,
        help="C,H,W (default: simplecnn 1,28,28 as Fashion-MNIST, the others 3,224,224)",
    )
    _add_attention_flags(p, AttentionSpec().to_dict())
    p.set_defaults(default_model=default_model)


class _InputShape:
    """The data shape :meth:`ModelConfig.build` needs, from ``--num-classes`` and
    ``--input-size`` (the image size that picks a stem is the input's height)."""

    def __init__(self, num_classes: int, size: tuple[int, ...]) -> None:
        self.num_classes, self.in_chans, self.image_size = num_classes, size[0], size[1]


def _network_from_flags(args: argparse.Namespace) -> tuple[nn.Module, tuple[int, ...], str]:
    """The network :func:`_add_network_flags` describes, its input size (C, H, W) and a
    title naming it."""
    from .models.config import ModelConfig

    given = {"model": args.default_model, **_given(args, ModelConfig.keys()), **_spec_values(args)}
    config = ModelConfig.from_flat(given).validate()
    entry = MODELS[config.model]
    size = args.input_size or entry.input_size
    if args.num_classes is not None and args.num_classes < 1:
        raise ValueError(f"--num-classes must be an integer >= 1, got {args.num_classes}")
    shape = _InputShape(args.num_classes or entry.num_classes, size)
    return config.build(shape), size, config.describe()


def _cmd_export(args: argparse.Namespace) -> int:
    from .deploy import export_onnx, fuse, onnx_opset
    from .train.load import load_model
    from .train.rundir import guard_output

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


def _sample_batch(run_dir: str, split: str, count: int) -> tuple[Any, Any]:
    """A run's model and its first ``count`` images of ``split`` (test preprocessing)."""
    import torch

    from .train.build import build_data
    from .train.load import load_model
    from .viz import Batch

    loaded = load_model(run_dir)
    splits = build_data(loaded.config, limit_train=count, limit_test=count)
    data = splits.test if split == "test" else splits.train
    torch.manual_seed(0)  # the training split's augmentation, drawn the same way each time
    items = [data[i] for i in range(min(count, len(data)))]
    images = torch.stack([image for image, _ in items])
    labels = [int(y) for _, y in items]
    return loaded, Batch(images, labels, loaded.classes, loaded.config.dataset)


def _distinct_labels(a: Path, b: Path) -> tuple[str, str]:
    """The shortest trailing parts of two run paths that tell them apart (ablate's
    ``variant/seedK`` runs share their last name)."""
    parts_a, parts_b = a.resolve().parts, b.resolve().parts
    for depth in range(1, max(len(parts_a), len(parts_b)) + 1):
        label_a, label_b = "/".join(parts_a[-depth:]), "/".join(parts_b[-depth:])
        if label_a != label_b:
            return label_a, label_b
    return f"{a} (1)", f"{b} (2)"  # the same run twice


def _cmd_viz(args: argparse.Namespace) -> int:
    from .maps import attention_maps
    from .train.load import load_model
    from .train.plots import plot_lambda
    from .train.rundir import RunDir, guard_output
    from .viz import GRADCAM_HINT, draw_attention, draw_channel_gates, draw_comparison

    if not 1 <= args.images <= MAX_VIZ_IMAGES:
        raise ValueError(
            f"--images must be an int in [1, {MAX_VIZ_IMAGES}] (one figure row each), "
            f"got {args.images}"
        )
    run = RunDir(args.checkpoint)
    out = Path(args.out) if args.out else run.path / "viz"
    names = ("attention.png", "channel_gates.png", "lambda.png", "compare.png")
    target = {name: guard_output(out / name, "--out", own_run=run) for name in names}
    loaded, batch = _sample_batch(args.checkpoint, args.split, args.images)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    name = str(run.path)
    path, with_cam = draw_attention(loaded.model, batch, target["attention.png"], name=name)
    written.append(path)
    maps = attention_maps(loaded.model, batch.images)
    gates = draw_channel_gates(maps, batch, target["channel_gates.png"], name=name)
    if gates:
        written.append(gates)
    history = run.read_metrics()
    if history:
        written.append(plot_lambda(history, target["lambda.png"], name))
    if args.compare:
        other = load_model(args.compare)
        first, second = _distinct_labels(Path(args.checkpoint), Path(args.compare))
        models = {first: loaded.model, second: other.model}
        path, cam = draw_comparison(models, batch, target["compare.png"])
        written.append(path)
        with_cam = with_cam and cam
    run.record(*written)  # what lies inside the run directory is the run's
    for path in written:
        print(f"wrote {path}")
    if not with_cam:
        print(GRADCAM_HINT)
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import json

    from .predict import DEFAULT_BATCH, image_files, iter_predictions
    from .train.load import load_model

    _validate.positive_int("--top-k", args.top_k)
    batch_size = _validate.positive_int(
        "--batch-size", DEFAULT_BATCH if args.batch_size is None else args.batch_size
    )
    loaded = load_model(args.checkpoint)
    failed = 0

    def report(path: str | Path, exc: DatasetError) -> None:  # the others go on
        nonlocal failed
        print(f"preattn predict: error: {_one_line(exc)}", file=sys.stderr, flush=True)
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


def _test_images(config: Any, count: int) -> Any:
    """The first ``count`` test images of a run's data set, or None (with a note on stderr)
    when the data set cannot be read here."""
    from .data.registry import first_images
    from .train.build import build_data

    try:
        test = build_data(config, limit_train=1, limit_test=count).test
    except DatasetError as exc:
        print(f"note: probing with random images ({exc})", file=sys.stderr)
        return None
    return first_images(test, count)


def _cmd_check(args: argparse.Namespace) -> int:
    from .check import check

    if args.checkpoint:
        from .train.load import load_model

        loaded = load_model(args.checkpoint)
        model, trained = loaded.model, True
        size = (loaded.in_chans, loaded.image_size, loaded.image_size)
        images = _test_images(loaded.config, 64)
    else:
        model, size, _ = _network_from_flags(args)
        trained, images = False, None
    findings = check(model, size, trained=trained, images=images)
    for finding in findings:
        print(finding)
    bad = [f for f in findings if f.severity != "info"]
    print(f"{len(bad)} warning(s)/error(s) in {len(findings)} findings")
    return 1 if bad else 0


def _input_size(text: str) -> tuple[int, ...]:
    """``--input-size C,H,W``, within what a run may train on (:data:`MAX_INPUT_CHANNELS`,
    ``MAX_IMAGE_SIZE``): a 60000x60000 input is tens of GB of activations, not a summary."""
    from .data.registry import MAX_IMAGE_SIZE

    try:
        size = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected C,H,W such as 3,224,224, got {text!r}"
        ) from None
    if len(size) != 3 or min(size) < 1:
        raise argparse.ArgumentTypeError(f"expected C,H,W such as 3,224,224, got {text!r}")
    if size[0] > MAX_INPUT_CHANNELS or max(size[1:]) > MAX_IMAGE_SIZE:
        raise argparse.ArgumentTypeError(
            f"expected C <= {MAX_INPUT_CHANNELS} and H, W <= {MAX_IMAGE_SIZE} (the largest "
            f"--image-size), got {text!r}"
        )
    return size


def _one_line(exc: BaseException) -> str:
    """The error's message on one line (an OSError with its file name; a full disk says
    what to change)."""
    if is_disk_full(exc):
        text = disk_full_message(exc)  # type: ignore[arg-type]
    elif isinstance(exc, OSError) and exc.filename and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="preattn",
        description="Pre-residual attention (Pattern-3) for CNNs.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"preattn {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of an error (also PREATTN_DEBUG=1)",
    )
    # each subcommand accepts exactly its own flags: no abbreviations (--seed is not --seeds)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "train",
        allow_abbrev=False,
        help="train a network",
        description="Train a network; flags override --config / --resume.",
    )
    p.add_argument("--config", help="YAML file with any of the flags below (flags win)")
    p.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the run in DIR from its last committed epoch; with --epochs M, extend "
        "it to M epochs (the LR schedule is re-planned for M epochs from the saved step)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in --out (without it, a directory holding a run is refused)",
    )
    _add_train_flags(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "compare",
        allow_abbrev=False,
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
    p.add_argument("--jobs", type=int, default=1, help="training processes at once (default 1)")
    p.add_argument("--config", help="YAML file with train flags (flags win)")
    _add_train_flags(p, exclude=("placement", "seed"))
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser(
        "ablate",
        allow_abbrev=False,
        help="train a grid of variants x seeds (paired, resumable) and report the statistics",
        description="Train every variant of GRID.yaml with every seed in OUT/<variant>/"
        "seed<k>/ and write OUT/report.md, report.json and plots. Run it again to resume: "
        "finished runs are kept, interrupted ones resumed, new ones started.",
    )
    p.add_argument(
        "grid",
        metavar="GRID.yaml",
        nargs="+",
        help="base, variants, reference, seeds; several grids share the runs in --out and "
        "each gets its report in <report dir>/<grid file name>/",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder of the runs and report")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs at once (local: processes sharing the cores; slurm: array tasks at once)",
    )
    p.add_argument("--executor", default="local", choices=("local", "slurm", "submitit-local"))
    p.add_argument("--dry-run", action="store_true", help="say what would run, run nothing")
    p.add_argument("--report-only", action="store_true", help="train nothing, write the report")
    p.add_argument(
        "--time-limit",
        type=float,
        metavar="SECONDS",
        help="after this long start no run and stop each running one after its epoch (the "
        "same command resumes them); the report covers the finished runs",
    )
    p.add_argument(
        "--variants",
        metavar="NAME[,NAME]",
        help="train only these variants now (e.g. the primary contrast first); the others "
        "wait for a run without it, the report covers every finished run",
    )
    p.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a train option on every run of the grid, over base and the variants "
        "(repeatable; e.g. --override epochs=1 --override limit_train=256); use another --out",
    )
    p.add_argument(
        "--report-dir",
        metavar="DIR",
        help="where report.md/.json and the plots go (default: --out); grids sharing one "
        "--out reuse each other's runs",
    )
    slurm = p.add_argument_group("slurm (--executor slurm, needs preattn[slurm])")
    slurm.add_argument("--partition", help="Slurm partition")
    slurm.add_argument("--gpus-per-task", type=int, default=0, help="GPUs per run (default 0)")
    slurm.add_argument("--cpus-per-task", type=int, help="CPU cores per run")
    slurm.add_argument("--time-min", type=int, default=120, help="time limit per run, minutes")
    p.set_defaults(func=_cmd_ablate)

    p = sub.add_parser(
        "eval", allow_abbrev=False, help="evaluate a run's checkpoint on its test set"
    )
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="run directory")
    p.add_argument("--data-dir", help="override the data folder of the run")
    p.add_argument("--limit-test", type=int, help="use the first N test images")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", help="where to write confusion.png and eval.json (default: DIR)")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser(
        "demo",
        allow_abbrev=False,
        help="train the reference SimpleCNN for a few minutes (8,000 Fashion-MNIST images x 3 "
        "epochs, lr 0.05: shorter than train's defaults)",
    )
    p.add_argument("--data-dir", help="folder with Fashion-MNIST (default: Debian's)")
    p.add_argument(
        "--out", help="run directory (default: a new runs/<date>-<time>-demo, never reused)"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace the run in --out (else refused)"
    )
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "summary", allow_abbrev=False, help="parameters, MACs, attention overhead and λ of a model"
    )
    p.add_argument(
        "--checkpoint", metavar="DIR", help="summarise a run's network (the other flags: unused)"
    )
    _add_network_flags(p, default_model="resnet18")
    p.set_defaults(func=_cmd_summary)

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
    p.set_defaults(func=_cmd_viz)

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
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser(
        "check",
        allow_abbrev=False,
        help="the Pattern-3 checklist for every attended block (exit 1 on a warning)",
    )
    p.add_argument("--checkpoint", metavar="DIR", help="check a trained run")
    _add_network_flags(p, default_model="simplecnn")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser(
        "export", allow_abbrev=False, help="export a run's model to ONNX (BatchNorm folded)"
    )
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="run directory")
    p.add_argument("--onnx", required=True, help="output .onnx file")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset, >= 18")
    p.add_argument("--no-fuse", action="store_true", help="keep BatchNorm layers")
    p.set_defaults(func=_cmd_export)
    return parser


def _raised_by_preattn(exc: BaseException) -> bool:
    """Whether ``exc`` was raised by a ``raise`` statement of preattn's own code (its
    validation refusing a value), not by a library, a caller or a call that went wrong."""
    import linecache

    package = Path(__file__).resolve().parent
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    filename = tb.tb_frame.f_code.co_filename
    if not Path(filename).resolve().is_relative_to(package):
        return False
    return linecache.getline(filename, tb.tb_lineno).lstrip().startswith("raise ")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("PREATTN_DEBUG", "") not in ("", "0")
    from .ablate import AblationFailed
    from .train.loop import TrainingDiverged
    from .train.rundir import RunError

    try:
        with console_lines():  # what the library logs as it goes: plain lines on stdout
            return int(args.func(args))
    except BrokenPipeError:  # `preattn ... | head`: the reader has gone, not an error
        with contextlib.suppress(OSError, ValueError):  # no flush error at exit either
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (TrainingDiverged, AblationFailed) as exc:
        if debug:
            raise
        print(f"preattn {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, OSError, ImportError, DatasetError, RunError) as exc:
        if debug or (isinstance(exc, TypeError) and not _raised_by_preattn(exc)):
            raise  # a TypeError from elsewhere is a bug: its traceback, not a usage line
        print(f"preattn {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as exc:  # RuntimeError: torch's out-of-memory errors
        message = out_of_memory_message(exc)
        if debug or message is None:
            raise
        print(f"preattn {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"preattn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

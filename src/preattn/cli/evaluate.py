"""``preattn eval``: a run's committed weights on its test set (:func:`~preattn.train.
evaluate_run`), written as ``eval.json`` (:class:`~preattn.train.EvalRecord`) and
``confusion.png``. The module is named for what it does: ``eval`` is a Python built-in."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "eval", allow_abbrev=False, help="evaluate a run's checkpoint on its test set"
    )
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="run directory")
    p.add_argument("--data-dir", help="override the data folder of the run")
    p.add_argument("--limit-test", type=int, help="use the first N test images")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", help="where to write confusion.png and eval.json (default: DIR)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ..train.eval_record import EVAL_FILE
    from ..train.plots import plot_confusion
    from ..train.run_evaluation import evaluate_run
    from ..train.rundir import RunDir, guard_output

    run_dir = Path(args.checkpoint)
    run_record = RunDir(run_dir)
    out_dir = Path(args.out) if args.out else run_dir
    png_path, json_path = (
        guard_output(out_dir / name, "--out", own_run=run_record)
        for name in ("confusion.png", EVAL_FILE)
    )
    evaluation = evaluate_run(
        run_dir,
        data_dir=args.data_dir,
        limit_test=args.limit_test,
        batch_size=args.batch_size,
        device=args.device,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    confusion = evaluation.result.confusion
    png = plot_confusion(confusion, list(evaluation.classes), png_path, evaluation.title())
    print("\n".join(evaluation.lines()))
    evaluation.record().write(json_path)
    run_record.record(png_path, json_path)  # only those inside the run directory are recorded
    print(f"confusion matrix: {png}")
    return 0

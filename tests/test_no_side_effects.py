"""Using preattn leaves the process as it found it: importing it and drawing every kind of
figure keeps the caller's matplotlib backend, and preattn never imports pyplot itself; the
library logs what it says (nothing on stdout), and the ``preattn`` command alone shows those
records as console lines."""

from __future__ import annotations

import importlib
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from _helpers import TINY_CONFIG, TINY_TRAIN_FLAGS
from preattn.cli import main
from preattn.train import TrainConfig, train

SRC = Path(__file__).resolve().parents[1] / "src"
TESTS = Path(__file__).resolve().parent

# every module that draws, and the entry points a notebook imports; then one figure of each
# kind from tiny inputs, written as PNGs into sys.argv[1]
_DRAW_EVERYTHING = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import matplotlib
    import numpy as np
    import torch

    backend = matplotlib.get_backend()

    import preattn, preattn.timm, preattn.cli, preattn.viz
    from preattn.ablate import Grid, plots
    from preattn.ablate.command_plots import plot_command_report
    from preattn.ablate.forest import write_forest
    from preattn.maps import attention_maps
    from preattn.models import SimpleCNN
    from preattn.train.plots import plot_confusion, plot_history
    from preattn.viz import Batch, draw_attention, draw_channel_gates, draw_comparison

    out = Path(sys.argv[1])
    epoch = {"epoch": 1, "train_loss": 0.9, "test_loss": 0.8, "train_acc": 0.7,
             "test_acc": 0.75, "lr": 0.05, "lambda": {"block1": 0.1},
             "lambda_start": {"block1": 0.1}, "modulation": {"block1": 0.012},
             "elapsed_s": 1.0}
    plot_history([epoch], out)
    plot_confusion(np.array([[8, 2], [1, 9]]), ["cat", "dog"], out / "confusion.png", "t")
    torch.manual_seed(0)
    model = SimpleCNN(in_chans=1, num_classes=2, attention="cbam", lam=None)
    batch = Batch(torch.randn(2, 1, 12, 12), [0, 1], ["a", "b"], "fashion-mnist")
    draw_attention(model, batch, out / "attention.png", with_gradcam=False)
    draw_channel_gates(attention_maps(model, batch.images), batch, out / "channel_gates.png")
    grid = Grid.from_dict({"base": {}, "variants": {"none": {}, "pre": {}}})
    runs = {v: {s: [{**epoch, "test_acc": 0.7 + 0.01 * s}] for s in (0, 1)}
            for v in ("none", "pre")}
    plots.plot_grid(grid, out / "grid", runs)
    decided = {"mean": 0.02, "ci95": [0.01, 0.03]}
    decision = {"margin": 0.01, "verdict": "supported", "n": 2}
    report = {"metric": "score", "reference": "none", "variants": [
        {"variant": "none", "per_seed": {"0": 0.5, "1": 0.51},
         "summary": {"mean": 0.505, "ci95": [0.4, 0.6]}},
        {"variant": "pre", "per_seed": {"0": 0.52, "1": 0.53},
         "summary": {"mean": 0.525, "ci95": [0.42, 0.62]},
         "difference": decided, "decision": decision},
    ]}
    plot_command_report(report, out / "command", "cmd")
    verdict = {**decision, "metric": "test_acc"}
    grid_report = {"reference": "none",
                   "variants": [{"name": "pre", "paired_diff": decided, "verdict": verdict}]}
    write_forest([("g", grid_report)], out / "forest.png")
    print("pyplot", "matplotlib.pyplot" in sys.modules)

    # Grad-CAM's package imports pyplot itself (which leaves the backend as it is)
    draw_comparison({"m": model}, batch, out / "compare.png")
    print("backend", backend, matplotlib.get_backend())
    """
)

DRAWN = [
    "curves.png",
    "lambda.png",
    "confusion.png",
    "attention.png",
    "channel_gates.png",
    "compare.png",
    "grid/accuracy.png",
    "grid/lambda.png",
    "grid/modulation.png",
    "grid/accuracy_vs_time.png",
    "command/metric.png",
    "command/forest.png",
    "forest.png",
]


def test_importing_and_drawing_keep_the_callers_backend_and_leave_pyplot_unimported(tmp_path):
    env = {**os.environ, "MPLBACKEND": "svg", "PYTHONPATH": os.pathsep.join([str(SRC)])}
    done = subprocess.run(
        [sys.executable, "-c", _DRAW_EVERYTHING, str(tmp_path)],
        env=env,
        cwd=TESTS,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "backend svg svg" in lines
    assert "pyplot False" in lines
    for name in DRAWN:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def _epoch_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("epoch 1/1  train loss")]


def test_a_library_call_to_train_logs_its_epoch_line_and_prints_nothing(tmp_path, caplog, capsys):
    caplog.set_level(logging.INFO, logger="preattn")
    train(TrainConfig(**TINY_CONFIG, epochs=1, out=str(tmp_path / "run")))
    epochs = [r for r in caplog.records if _epoch_lines(r.getMessage())]
    assert [(r.name, r.levelno) for r in epochs] == [("preattn.train.loop", logging.INFO)]
    assert capsys.readouterr().out == ""


def test_the_command_shows_the_lines_once_per_call_and_leaves_logging_as_it_was(tmp_path, capsys):
    """Two ``main`` calls in one process: each shows its one epoch line on stdout (no
    handler left behind to print it twice), the root logger keeps its handlers and the
    ``preattn`` logger is as before, so a later library call prints nothing."""
    root, package = logging.getLogger(), logging.getLogger("preattn")
    before = (list(root.handlers), root.level, list(package.handlers), package.level)
    for name in ("a", "b"):
        assert main(["train", *TINY_TRAIN_FLAGS, "--out", str(tmp_path / name)]) == 0
        assert len(_epoch_lines(capsys.readouterr().out)) == 1
    assert (list(root.handlers), root.level, list(package.handlers), package.level) == before
    train(TrainConfig(**TINY_CONFIG, epochs=1, out=str(tmp_path / "c")))
    assert capsys.readouterr().out == ""


def test_an_ablation_run_started_from_python_still_writes_its_lines_into_its_log(tmp_path, capsys):
    execute = importlib.import_module("preattn.ablate.execute")
    config = TrainConfig(**TINY_CONFIG, epochs=1, out=str(tmp_path / "run"))
    task = {"config": config.to_dict(), "resume": False, "threads": None, "deadline": None}
    execute.run_task(task)
    assert len(_epoch_lines((tmp_path / "run" / execute.LOG_FILE).read_text())) == 1
    assert capsys.readouterr().out == ""

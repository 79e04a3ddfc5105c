"""The command line: help, one-line errors, train -> eval, YAML config, demo wiring."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from _helpers import TINY_TRAIN_FLAGS as TINY
from preattn.cli import main
from preattn.train import EpochRecord, TrainConfig

# every option a user can set, written out here (not read from the code that makes flags)
TRAIN_OPTIONS = [
    "dataset", "data-dir", "model", "stages", "epochs", "batch-size", "lr", "optimizer",
    "momentum", "weight-decay", "label-smoothing", "warmup-epochs", "limit-train",
    "limit-test", "image-size", "seed", "out", "device", "amp", "channels-last", "sync-bn",
    "workers", "plots", "placement", "attention", "attention-kwargs", "lam", "lam-param",
    "lam-learnable", "lam-warmup-steps", "lam-shape",
]  # fmt: skip


def _help(capsys, command: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_train_help_documents_every_option(capsys):
    text = _help(capsys, "train")
    for name in [*TRAIN_OPTIONS, "config", "resume"]:
        assert f"--{name} " in text or f"--{name}\n" in text, name


def test_compare_refuses_the_options_it_sets_itself(capsys):
    text = _help(capsys, "compare")
    assert "--placements" in text and "--seeds" in text
    assert "--placement " not in text and "--seed " not in text
    for flag, value in (("--placement", "branch"), ("--seed", "3")):
        with pytest.raises(SystemExit) as exit_info:
            main(["compare", *TINY, flag, value])
        assert exit_info.value.code == 2
        assert "unrecognized arguments" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "--lam", "1.5", *TINY], r"lam must be a float in [0, 1], got 1.5"),
        (
            ["train", "--model", "simplecnn", "--stages", "2,3", *TINY],
            "stages must be a subset of [1, 2] (no repeats), got [2, 3]",
        ),
        (
            ["train", "--model", "resnet18", "--stages", "5", *TINY],
            "stages must be a subset of [1, 2, 3, 4] (no repeats), got [5]",
        ),
        (
            ["train", "--dataset", "cifar10", "--data-dir", "/nonexistent"],
            "cifar10: folder 'cifar-10-batches-py' not found",
        ),
        (["eval", "--checkpoint", "/nonexistent/run"], "config file /nonexistent/run/config.yaml"),
    ],
)
def test_errors_are_one_line_with_exit_status_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_train_then_eval(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    assert main(["eval", "--checkpoint", str(run)]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "striped disk" in out
    report = json.loads((run / "eval.json").read_text())
    assert sum(map(sum, report["confusion"])) == 12
    # the per-class numbers come under a header, each with its count from the confusion
    lines = out.splitlines()
    header = lines.index(f"  {'class':>16s}  accuracy  (correct / test images of the class)")
    rows = lines[header + 1 : header + 1 + len(report["confusion"])]
    for index, (row, name) in enumerate(zip(rows, report["per_class_accuracy"], strict=True)):
        hit, seen = report["confusion"][index][index], sum(report["confusion"][index])
        assert row.split()[-3:] == [f"({hit}", "/", f"{seen})"] and name in row
    assert (run / "confusion.png").stat().st_size > 0


def test_yaml_config_with_flag_override(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        "dataset: synthetic\nimage_size: 8\nlimit_train: 32\nlimit_test: 8\n"
        "batch_size: 16\nepochs: 1\nlam: 0.4\nlam_param: linear\n"
    )
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--lam", "0.2", "--out", str(run)]) == 0
    saved = (run / "config.yaml").read_text()
    assert "lam: 0.2" in saved and "lam_param: linear" in saved
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: 0.1\n")
    assert main(["train", "--config", str(bad)]) == 2


def test_sync_bn_on_cpu_says_so_and_trains(tmp_path, capsys):
    with pytest.warns(UserWarning, match="SyncBatchNorm runs only on CUDA"):
        assert main(["train", *TINY, "--sync-bn", "--out", str(tmp_path / "r")]) == 0


def test_python_dash_m_entry_point():
    proc = subprocess.run(
        [sys.executable, "-m", "preattn", "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "train" in proc.stdout and "demo" in proc.stdout


def test_compare_runs_every_placement_and_seed(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", *TINY, "--placements", "none,pre", "--seeds", "0,1", "--out", str(out)]
    assert main(argv) == 0
    runs = sorted(f"{p.parent.name}/{p.name}" for p in out.glob("*/seed*"))
    assert runs == ["none/seed0", "none/seed1", "pre/seed0", "pre/seed1"]
    acc = {
        name: json.loads((out / name / "metrics.jsonl").read_text().splitlines()[-1])["test_acc"]
        for name in runs
    }
    report = json.loads((out / "report.json").read_text())
    assert report["reference"] == "none"
    pre = next(v for v in report["variants"] if v["name"] == "pre")
    assert pre["test_acc"]["mean"] == pytest.approx((acc["pre/seed0"] + acc["pre/seed1"]) / 2)
    diff = ((acc["pre/seed0"] - acc["none/seed0"]) + (acc["pre/seed1"] - acc["none/seed1"])) / 2
    assert pre["paired_diff"]["mean"] == pytest.approx(diff)
    assert f"| pre | 2 | {100 * pre['test_acc']['mean']:.2f} [" in (out / "report.md").read_text()
    # again: every run is finished, nothing is trained
    capsys.readouterr()
    assert main(argv) == 0
    assert "4 finished, 0 to resume, 0 new" in capsys.readouterr().out
    assert main(["compare", *TINY, "--placements", "none,middle", "--out", str(out)]) == 2
    assert "placements must be one of" in capsys.readouterr().err


def test_demo_says_how_long_it_takes_and_the_time_left_after_each_epoch(
    tmp_path, capsys, monkeypatch
):
    """The demo states its idle-machine time up front and, after each epoch but the last,
    the time left at the pace so far: elapsed / done × (epochs − done)."""
    import preattn.train.loop as loop

    def fake_train(config, *, overwrite=False, callbacks=(), **_):
        for epoch, elapsed in ((1, 50.0), (2, 130.0)):
            for callback in callbacks:
                callback(EpochRecord(epoch, 1.0, 0.5, 0.01, {}, 100.0, elapsed_s=elapsed))
        raise KeyboardInterrupt  # only the wiring is tested

    import preattn.cli.demo as demo

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(loop, "train", fake_train)
    # Fashion-MNIST "found" (the demo's 3-epoch recipe); nothing is read: train is faked
    monkeypatch.setattr(demo, "find_idx_files", lambda *a: {"train_images": tmp_path / "x"})
    assert main(["demo"]) == 130
    out = capsys.readouterr().out
    assert "about 2 minutes on an idle 2-core CPU" in out
    epochs = 3
    assert f"demo: epoch 1/{epochs} done; about 1 min 40 s left" in out  # 50 s × 2
    assert f"demo: epoch 2/{epochs} done; about 1 min 5 s left" in out  # 65 s × 1


def test_progress_lines_in_a_log_give_the_time_left(monkeypatch, caplog):
    import preattn.train.loop as loop

    caplog.set_level(logging.INFO, logger="preattn")
    ticks = iter([0.0, 10.0, 20.0, 30.0, 40.0])
    monkeypatch.setattr(loop.time, "perf_counter", lambda: next(ticks))
    monkeypatch.setattr(loop, "LOG_EVERY_S", 0.0)
    assert list(loop._logged(range(4), "epoch 1/2")) == [0, 1, 2, 3]
    lines = caplog.messages
    assert lines[0] == "  epoch 1/2: batch 1/4 (25 %), 10 s, about 30 s left"
    assert lines[-1] == "  epoch 1/2: batch 4/4 (100 %), 40 s, about 0 s left"
    assert loop.format_duration(3700) == "1 h 1 min"


def test_demo_never_replaces_an_earlier_run(tmp_path, capsys, monkeypatch):
    """Each demo trains into a new directory; an explicit --out holding a run is refused
    (with the --overwrite hint) before anything in it changes."""
    import preattn.train.loop as loop

    trained: list[tuple[str, bool]] = []

    def fake_train(config, *, overwrite=False, **_):
        trained.append((config.out, overwrite))
        (tmp_path / config.out).mkdir(parents=True)  # as train's lock does
        raise KeyboardInterrupt  # stop before any real work: only the wiring is tested

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(loop, "train", fake_train)
    for _ in range(2):
        assert main(["demo", "--data-dir", str(tmp_path / "none")]) == 130
    assert len({out for out, _ in trained}) == 2 and not any(o for _, o in trained)
    assert all(out.startswith("runs/") and "-demo" in out for out, _ in trained)
    monkeypatch.undo()
    run = tmp_path / "r"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    capsys.readouterr()
    assert main(["demo", "--data-dir", str(tmp_path / "none"), "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_width_beyond_the_limit_is_refused(tmp_path, capsys):
    assert main(["train", *TINY, "--width", "100", "--out", str(tmp_path / "r")]) == 2
    assert "width must be at most 8.0, got 100.0" in capsys.readouterr().err


def test_viz_compare_labels_tell_runs_with_the_same_last_name_apart():
    from pathlib import Path

    from preattn.cli.viz import distinct_labels

    assert distinct_labels(Path("/g/pre/seed0"), Path("/g/none/seed0")) == (
        "pre/seed0",
        "none/seed0",
    )
    assert distinct_labels(Path("/a/r1"), Path("/b/r2")) == ("r1", "r2")
    assert distinct_labels(Path("/a/r"), Path("/a/r")) == ("/a/r (1)", "/a/r (2)")


def test_summary_defaults_to_each_networks_usual_input_and_reads_a_run(tmp_path, capsys):
    assert main(["summary", "--model", "simplecnn"]) == 0
    out = capsys.readouterr().out
    assert "1x28x28" in out  # not 3x224x224: the reference network's Fashion-MNIST size
    assert main(["summary", "--model", "resnet18"]) == 0
    assert "3x224x224" in capsys.readouterr().out
    run = tmp_path / "r"
    assert main(["train", *TINY, "--width", "0.5", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["summary", "--checkpoint", str(run)]) == 0
    out = capsys.readouterr().out
    assert "simplecnn width x0.5" in out and "3x8x8" in out


def test_predict_reports_a_file_that_is_not_an_image_and_goes_on(tmp_path, capsys):
    from PIL import Image

    run = tmp_path / "r"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    good = tmp_path / "a.png"
    Image.new("RGB", (8, 8), (200, 30, 30)).save(good)
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(run), str(bad), str(good), "--json"]) == 2
    out, err = capsys.readouterr()
    assert json.loads(out)["file"] == str(good)  # the good one still predicted
    assert err.count("\n") == 1 and f"{bad}: not a readable image" in err


@pytest.mark.parametrize(
    ("flags", "builder"),
    [
        (["--width", "1.5"], {"width": 1.5}),
        (
            ["--model", "mobilenet_v2", "--dw-attention", "se", "--input-size", "3,32,32"],
            {"dw_attention": "se", "image_size": 32, "in_chans": 3, "num_classes": 1000},
        ),
    ],
)
def test_check_and_summary_build_the_network_training_would(capsys, flags, builder):
    import re

    from preattn.models.factory import create_model

    arguments = {"image_size": 28, "in_chans": 1, "num_classes": 10, **builder}
    name = flags[flags.index("--model") + 1] if "--model" in flags else "simplecnn"
    expected = create_model(name, **arguments)
    main(["check", *flags])
    costs = re.findall(
        r"(\S+): attention cost: [\d,]+ of ([\d,]+) parameters", capsys.readouterr().out
    )
    assert costs  # every attended block's parameters are those of the same block built here
    for block, count in costs:
        own = sum(p.numel() for p in expected.get_submodule(block).parameters())
        assert int(count.replace(",", "")) == own, block
    others = [f for f in flags if f not in ("--model", name)]
    assert main(["summary", "--model", name, *others]) == 0
    total = sum(p.numel() for p in expected.parameters())
    assert f"{total:,}" in capsys.readouterr().out


@pytest.mark.parametrize("width", ["0", "9", "nan"])
def test_check_refuses_a_width_training_would_refuse_with_trainings_message(capsys, width):
    with pytest.raises(ValueError) as training:
        TrainConfig(width=float(width)).validate()
    assert main(["check", "--width", width]) == 2
    assert capsys.readouterr().err.strip().endswith(str(training.value))


def test_a_type_error_preattn_raises_is_a_usage_line_and_any_other_a_traceback(monkeypatch, capsys):
    """Only preattn's own refusals become exit 2; a TypeError from a bug keeps its traceback."""
    import preattn.cli.summary as summary_command

    assert main(["summary", "--model", "simplecnn", "--attention-kwargs", "reduction=x"]) == 2
    assert "reduction must be an int >= 1, got 'x' (str)" in capsys.readouterr().err

    def broken(args):
        return sorted([1, "a"])  # a bug: TypeError raised by Python, not by a check

    monkeypatch.setattr(summary_command, "run", broken)
    with pytest.raises(TypeError, match="not supported between"):
        main(["summary"])

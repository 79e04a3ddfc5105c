"""A run directory belongs to its run: it is never replaced without ``--overwrite``, and only
the run's own files are ever deleted or replaced (not another tool's, not another run's, not
what a link points to)."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
import yaml

from _helpers import TINY_TRAIN_FLAGS as TINY
from _helpers import copy_run, metrics_without_timings, one_line_error, tiny_config
from preattn.cli import main
from preattn.train import RunDir, train


def test_a_run_directory_is_never_replaced_without_overwrite(run_copy, capsys):
    run = run_copy
    config, metrics = (run / "config.yaml").read_text(), (run / "metrics.jsonl").read_text()
    assert main(["train", *TINY, "--lr", "0.2", "--out", str(run)]) == 2
    err = one_line_error(capsys)
    assert f"{run} already holds a run; use --resume {run}" in err and "--overwrite" in err
    assert (run / "config.yaml").read_text() == config
    assert (run / "metrics.jsonl").read_text() == metrics
    assert main(["train", *TINY, "--lr", "0.2", "--out", str(run), "--overwrite"]) == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["lr"] == 0.2


def test_default_run_directory_is_new_per_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", *TINY]) == 0
    assert main(["train", *TINY]) == 0
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all(
        name.endswith("simplecnn") or "-simplecnn" in name for name in runs
    )
    assert all((tmp_path / "runs" / r / "config.yaml").is_file() for r in runs)


def test_relative_data_dir_is_stored_resolved_and_files_share_one_mode(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.chdir(tmp_path)
    train(tiny_config(data_dir="data", out="r"))
    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert saved["data_dir"] == str(data.resolve())
    umask = os.umask(0)
    os.umask(umask)
    files = [p for p in (tmp_path / "r").rglob("*") if p.is_file() and p.name != ".lock"]
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
    assert set(modes.values()) == {0o644 & ~umask}, modes


# --- only the run's own files are ever deleted ----------------------------------------------


def _foreign_files(run: Path) -> dict[Path, bytes]:
    """Files another tool keeps inside a run directory."""
    files = {
        run / "notes.txt": b"mine",
        run / "checkpoints" / "best.pt": b"other tool",
        run / "checkpoints" / "epoch-7.txt": b"not an epoch folder",
    }
    for path, data in files.items():
        path.write_bytes(data)
    return files


def test_a_refused_train_deletes_nothing(run_copy, capsys):
    run = run_copy
    foreign = _foreign_files(run)
    (run / "checkpoints" / "epoch-0009").mkdir()  # looks like ours, but not committed
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    assert main(["train", *TINY, "--out", str(run)]) == 2
    assert "already holds a run" in one_line_error(capsys)
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
    assert all(path.read_bytes() == data for path, data in foreign.items())


def test_overwrite_removes_what_the_run_wrote_and_nothing_else(tiny_runs, tmp_path):
    run = copy_run(tiny_runs(plots=True), tmp_path)
    assert main(["viz", "--checkpoint", str(run), "--images", "2"]) == 0
    assert (run / "viz" / "attention.png").is_file()
    foreign = _foreign_files(run)
    (run / "viz" / "keep.txt").write_text("a user's note in viz/")
    assert main(["train", *TINY, "--out", str(run), "--overwrite", "--epochs", "2"]) == 0
    assert all(path.read_bytes() == data for path, data in foreign.items())
    assert sorted(p.name for p in (run / "viz").iterdir()) == ["keep.txt"]  # old figures gone
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "best.pt",
        "epoch-0002",
        "epoch-7.txt",
    ]
    assert [r["epoch"] for r in metrics_without_timings(run)] == [1, 2]


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_linked_checkpoints_folder_is_never_followed(run_copy, tmp_path, capsys, overwrite):
    run = run_copy
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "epoch-0001").mkdir()
    (elsewhere / "precious.txt").write_text("keep me")
    shutil.rmtree(run / "checkpoints")
    (run / "checkpoints").symlink_to(elsewhere, target_is_directory=True)
    flags = ["--overwrite"] if overwrite else ["--resume", str(run), "--epochs", "2"]
    argv = ["train", *flags] if not overwrite else ["train", *TINY, "--out", str(run), *flags]
    assert main(argv) == 2
    assert "checkpoints is a symbolic link" in one_line_error(capsys)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["epoch-0001", "precious.txt"]


def test_viz_and_eval_outputs_never_replace_another_runs_files(tiny_runs, tmp_path, capsys):
    a, b = (copy_run(tiny_runs(plots=True), tmp_path, name) for name in ("a", "b"))
    lam = (b / "lambda.png").read_bytes()
    assert main(["viz", "--checkpoint", str(a), "--images", "2", "--out", str(b)]) == 2
    assert f"would overwrite a file of the run in {b}" in one_line_error(capsys)
    assert main(["eval", "--checkpoint", str(a), "--out", str(b)]) == 2
    assert f"would overwrite a file of the run in {b}" in one_line_error(capsys)
    assert (b / "lambda.png").read_bytes() == lam
    assert main(["eval", "--checkpoint", str(a), "--limit-test", "4"]) == 0  # its own run: fine
    assert {"confusion.png", "eval.json"} <= set(RunDir(a).recorded())
    assert main(["viz", "--checkpoint", str(a), "--images", "2", "--out", str(a)]) == 0
    assert "attention.png" in RunDir(a).recorded()

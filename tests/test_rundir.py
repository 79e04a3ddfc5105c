"""Runs that cannot be lost or silently mis-trained: resume, run directories, inputs."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

import preattn.train.rundir as rundir
from _helpers import TINY_CONFIG, metrics_without_timings, one_line_error
from _helpers import TINY_TRAIN_FLAGS as TINY
from preattn.cli import main
from preattn.train import RunDir, TrainConfig, TrainingDiverged, train

CONFIG = TINY_CONFIG


def _rows(run: Path) -> list[dict]:
    """Metrics records without the timings (they differ between identical runs)."""
    return metrics_without_timings(run)


# --- 1. resume to extend ------------------------------------------------------------------


def test_resume_with_more_epochs_replans_the_schedule_and_records_it(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    before = load_file(str(run / "model.safetensors"))
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 0
    rows = _rows(run)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    # 2 steps per epoch, T = 6 after the extension: the cosine is re-planned, LR > 0
    steps, total, lr = 2, 6, 0.1
    for r in rows[1:]:
        t = r["epoch"] * steps - 1  # the epoch's last optimiser step
        expected = lr * 0.5 * (1 + np.cos(np.pi * t / total))
        assert r["lr"] == pytest.approx(expected)
    after = load_file(str(run / "model.safetensors"))
    assert not torch.equal(
        before["block1.transform.conv1.weight"], after["block1.transform.conv1.weight"]
    )
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["epochs"] == 3
    assert saved["history"][0]["resumed_after_epoch"] == 1
    assert saved["history"][0]["changed"] == {"epochs": [1, 3]}


@pytest.mark.parametrize(
    "flags,names",
    [
        (["--lr", "0.5"], "lr (0.1 -> 0.5)"),
        (["--batch-size", "8", "--placement", "branch"], "batch_size (16 -> 8), placement"),
        (["--model", "resnet18"], "model ('simplecnn' -> 'resnet18')"),
    ],
)
def test_resume_refuses_options_the_run_fixed(tmp_path, capsys, flags, names):
    run = tmp_path / "r"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), *flags]) == 2
    err = one_line_error(capsys)
    assert f"cannot change on resume: {names}" in err
    assert yaml.safe_load((run / "config.yaml").read_text())["history"] == []


def test_resume_of_a_finished_run_trains_nothing_more(tmp_path):
    run = tmp_path / "r"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    weights = (run / "model.safetensors").read_bytes()
    assert main(["train", "--resume", str(run)]) == 0
    assert (run / "model.safetensors").read_bytes() == weights and len(_rows(run)) == 1


# --- 2. existing run directories ----------------------------------------------------------


def test_a_run_directory_is_never_replaced_without_overwrite(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    config, metrics = (run / "config.yaml").read_text(), (run / "metrics.jsonl").read_text()
    capsys.readouterr()
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


# --- 3. one commit per epoch --------------------------------------------------------------


_REFERENCE: list[dict] = []


def _uninterrupted_rows(tmp_path_factory) -> list[dict]:
    """Metrics of the same 2-epoch run without interruption (timings dropped)."""
    if not _REFERENCE:
        out = tmp_path_factory.mktemp("reference") / "r"
        train(TrainConfig(**CONFIG, epochs=2, out=str(out)))
        _REFERENCE.extend(_rows(out))
    return _REFERENCE


@pytest.mark.parametrize(
    "point",
    [
        pytest.param("weights", marks=pytest.mark.slow),
        "state",
        pytest.param("rename", marks=pytest.mark.slow),
        "pointer",
        pytest.param("publish", marks=pytest.mark.slow),
    ],
)
def test_a_kill_at_any_point_of_the_commit_leaves_a_resumable_run(
    tmp_path, tmp_path_factory, monkeypatch, point
):
    out = tmp_path / "r"
    config = TrainConfig(**CONFIG, epochs=2, out=str(out))

    seen: list[str] = []

    def kill(step: str) -> None:
        seen.append(step)
        if step == point and seen.count(step) == 2:  # during epoch 2's commit
            raise KeyboardInterrupt(f"killed after {step}")

    monkeypatch.setattr(rundir, "_after_commit_step", kill)
    with pytest.raises(KeyboardInterrupt):
        train(config)
    monkeypatch.setattr(rundir, "_after_commit_step", lambda step: None)
    run = RunDir(out)
    committed = 2 if point in ("pointer", "publish") else 1
    assert run.committed_epoch() == committed
    assert run.load_weights()[1] == committed and run.load_state()["epoch"] == committed
    record = train(config, resume=True)
    assert record.epoch == 2 and run.committed_epoch() == 2
    leftovers = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert leftovers == ["epoch-0002"]
    assert _rows(out) == _uninterrupted_rows(tmp_path_factory)


def test_a_full_disk_keeps_the_last_complete_epoch(tmp_path, monkeypatch):
    out = tmp_path / "r"
    config = TrainConfig(**CONFIG, epochs=2, out=str(out))
    real_save = rundir.save_file

    def full_disk(tensors, path, metadata=None):
        if metadata["epoch"] == "2":
            Path(path).write_bytes(b"\0" * 10)  # part of the file, then no space
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(tensors, path, metadata=metadata)

    monkeypatch.setattr(rundir, "save_file", full_disk)
    with pytest.raises(OSError, match="No space left"):
        train(config)
    run = RunDir(out)
    assert run.committed_epoch() == 1
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch-0001"]
    assert run.load_weights()[1] == 1


def test_stale_temporaries_are_removed_at_the_next_start(tmp_path):
    out = tmp_path / "r"
    config = TrainConfig(**CONFIG, epochs=1, out=str(out))
    train(config)
    (out / "checkpoints" / ".tmp-epoch-0002-999").mkdir()
    (out / "checkpoints" / "epoch-0002").mkdir()  # renamed but never committed
    train(config.replace(epochs=2), resume=True)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch-0002"]
    assert RunDir(out).load_weights()[1] == 2


# --- 4. CIFAR pickles ---------------------------------------------------------------------


# --- 5. the lock --------------------------------------------------------------------------


def test_a_second_training_in_the_same_directory_fails_at_once(tmp_path, capsys):
    run = tmp_path / "r"
    run.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
            "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)",
            str(run / ".lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        assert main(["train", *TINY, "--out", str(run)]) == 2
        assert time.monotonic() - started < 30
        assert "is in use by another training process" in one_line_error(capsys)
        assert not (run / "config.yaml").exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder is dead: its lock file is no barrier
    assert main(["train", *TINY, "--out", str(run)]) == 0


# --- 6, 7. config values ------------------------------------------------------------------


def test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    import preattn.train.loop as loop

    out = tmp_path / "r"
    models: list[torch.nn.Module] = []
    build = loop.build_model

    def keep(config, splits, **options):
        models.append(build(config, splits, **options))
        return models[-1]

    def blow_up(record) -> None:
        if record.epoch == 1:  # what an exploding update does: the live weights turn NaN
            with torch.no_grad():
                models[0].fc.weight.fill_(float("nan"))

    monkeypatch.setattr(loop, "build_model", keep)
    config = TrainConfig(**CONFIG, epochs=3, out=str(out))
    with pytest.raises(TrainingDiverged, match=r"training loss became nan at epoch 2, batch 1"):
        train(config, callbacks=[blow_up])
    run = RunDir(out)
    assert run.committed_epoch() == 1 and len(_rows(out)) == 1
    weights, _ = run.load_weights()
    assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())


def test_diverged_cli_exit_status_is_1(tmp_path, capsys, monkeypatch):
    import preattn.train.loop as loop

    def explode(*args, **kwargs):
        raise TrainingDiverged("training loss became nan at epoch 1, batch 1 (optimiser step 1)")

    monkeypatch.setattr(loop, "train_one_epoch", explode)
    assert main(["train", *TINY, "--out", str(tmp_path / "r")]) == 1
    assert "training loss became nan at epoch 1" in one_line_error(capsys)


# --- 8. half-precision modules: tests/test_blocks.py -------------------------------------
# --- 9. one-line errors -------------------------------------------------------------------


def test_truncated_weights_give_one_line(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    committed = run / "checkpoints" / "epoch-0001" / "model.safetensors"
    committed.write_bytes(committed.read_bytes()[:100])
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run)]) == 2
    assert "model.safetensors: not a readable safetensors file" in one_line_error(capsys)


def test_unreadable_state_gives_one_line(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    state = run / "checkpoints" / "epoch-0001" / "state.pt"
    state.unlink()
    state.mkdir()  # blocked: a directory where the file should be
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    assert "state.pt" in one_line_error(capsys)


def test_out_that_is_a_file_and_onnx_to_a_directory(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["train", *TINY, "--out", str(target)]) == 2
    assert "is a file, not a run directory" in one_line_error(capsys)
    run = tmp_path / "r"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["export", "--checkpoint", str(run), "--onnx", str(tmp_path)]) == 2
    assert "is a directory; give a file name" in one_line_error(capsys)


# --- 10. minor ----------------------------------------------------------------------------


def test_relative_data_dir_is_stored_resolved_and_files_share_one_mode(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.chdir(tmp_path)
    config = TrainConfig(**CONFIG, data_dir="data", out="r")
    train(config)
    saved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert saved["data_dir"] == str(data.resolve())
    umask = os.umask(0)
    os.umask(umask)
    files = [p for p in (tmp_path / "r").rglob("*") if p.is_file() and p.name != ".lock"]
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
    assert set(modes.values()) == {0o644 & ~umask}, modes


# --- 11. only the run's own files are ever deleted -----------------------------------------


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


def test_a_refused_train_deletes_nothing(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    foreign = _foreign_files(run)
    (run / "checkpoints" / "epoch-0009").mkdir()  # looks like ours, but not committed
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    capsys.readouterr()
    assert main(["train", *TINY, "--out", str(run)]) == 2
    assert "already holds a run" in one_line_error(capsys)
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
    assert all(path.read_bytes() == data for path, data in foreign.items())


def test_overwrite_removes_what_the_run_wrote_and_nothing_else(tmp_path):
    run = tmp_path / "r"
    assert main(["train", *TINY, "--out", str(run), "--plots", "true"]) == 0
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
    assert [r["epoch"] for r in _rows(run)] == [1, 2]


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_linked_checkpoints_folder_is_never_followed(tmp_path, capsys, overwrite):
    run = tmp_path / "r"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "epoch-0001").mkdir()
    (elsewhere / "precious.txt").write_text("keep me")
    import shutil

    shutil.rmtree(run / "checkpoints")
    (run / "checkpoints").symlink_to(elsewhere, target_is_directory=True)
    capsys.readouterr()
    flags = ["--overwrite"] if overwrite else ["--resume", str(run), "--epochs", "2"]
    argv = ["train", *flags] if not overwrite else ["train", *TINY, "--out", str(run), *flags]
    assert main(argv) == 2
    assert "checkpoints is a symbolic link" in one_line_error(capsys)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["epoch-0001", "precious.txt"]


def test_a_torn_last_record_is_dropped_and_the_run_resumes(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    for name in ("metrics.jsonl", "steps.jsonl"):  # a kill in the middle of the next append
        with (run / name).open("a") as fh:
            fh.write('{"epoch": 2, "test_a')
    with pytest.warns(UserWarning, match="dropped a torn last record"):
        assert [r["epoch"] for r in RunDir(run).read_metrics()] == [1]
    with pytest.warns(UserWarning, match="dropped a torn last record"):
        assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0
    assert [r["epoch"] for r in _rows(run)] == [1, 2]
    (run / "metrics.jsonl").write_text('{"epoch": 1}\nnot json\n{"epoch": 2}\n')
    with pytest.raises(rundir.RunError, match=r"metrics.jsonl:2: not a JSON record"):
        RunDir(run).read_metrics()  # damage before the last line is not a torn append


def test_viz_and_eval_outputs_never_replace_another_runs_files(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    for run in (a, b):
        assert main(["train", *TINY, "--out", str(run), "--plots", "true"]) == 0
    lam = (b / "lambda.png").read_bytes()
    capsys.readouterr()
    assert main(["viz", "--checkpoint", str(a), "--images", "2", "--out", str(b)]) == 2
    assert f"would overwrite a file of the run in {b}" in one_line_error(capsys)
    assert main(["eval", "--checkpoint", str(a), "--out", str(b)]) == 2
    assert f"would overwrite a file of the run in {b}" in one_line_error(capsys)
    assert (b / "lambda.png").read_bytes() == lam
    assert main(["eval", "--checkpoint", str(a), "--limit-test", "4"]) == 0  # its own run: fine
    assert {"confusion.png", "eval.json"} <= set(RunDir(a).recorded())
    assert main(["viz", "--checkpoint", str(a), "--images", "2", "--out", str(a)]) == 0
    assert "attention.png" in RunDir(a).recorded()


# --- 10. nothing is cleaned before the resume is known to be possible ---------------------


def _tree(run: Path) -> dict[str, bytes | None]:
    """Every path in ``run`` with a file's bytes (None for a folder)."""
    return {
        str(p.relative_to(run)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(run.rglob("*"))
        if p.name != ".lock"
    }


def _two_epoch_run(tmp_path: Path) -> Path:
    run = tmp_path / "r"
    assert main(["train", *TINY, "--epochs", "2", "--out", str(run)]) == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch-0002"]
    return run


def test_a_pointer_to_a_missing_epoch_deletes_nothing_and_names_the_fix(tmp_path, capsys):
    run = _two_epoch_run(tmp_path)
    (run / "checkpoints" / "epoch-0001").mkdir()  # an uncommitted leftover, also kept
    (run / "checkpoint").write_text("epoch-0005\n")
    before = _tree(run)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 2
    error = one_line_error(capsys)
    assert "names epoch-0005" in error and "is missing" in error
    assert "write 'epoch-0002'" in error and "nothing was deleted" in error
    assert _tree(run) == before
    # the fix the message names works: the run resumes from its last complete epoch
    (run / "checkpoint").write_text("epoch-0002\n")
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 0
    assert RunDir(run).load_weights()[1] == 3
    assert [r["epoch"] for r in _rows(run)] == [1, 2, 3]


@pytest.mark.parametrize("damage", ["state missing", "weights of another epoch"])
def test_a_pointer_to_an_incomplete_epoch_deletes_nothing(tmp_path, capsys, damage):
    run = _two_epoch_run(tmp_path)
    committed = run / "checkpoints" / "epoch-0002"
    (run / "checkpoints" / ".tmp-epoch-0003-77").mkdir()  # stale, but cleaning waits
    if damage == "state missing":
        (committed / "state.pt").unlink()
    else:
        tensors = load_file(str(committed / "model.safetensors"))
        save_file(tensors, str(committed / "model.safetensors"), metadata={"epoch": "1"})
    before = _tree(run)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 2
    assert "nothing was deleted" in one_line_error(capsys)
    assert _tree(run) == before


def test_a_lost_pointer_beside_a_later_complete_epoch_deletes_nothing(tmp_path, capsys):
    run = _two_epoch_run(tmp_path)
    (run / "checkpoint").unlink()
    (run / "model.safetensors").unlink()
    before = _tree(run)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 2
    error = one_line_error(capsys)
    assert "epoch-0002 is complete" in error and "nothing was deleted" in error
    assert _tree(run) == before


def test_an_unreadable_checkpoint_leaves_config_and_records_untouched(tmp_path, capsys):
    run = _two_epoch_run(tmp_path)
    (run / "checkpoints" / "epoch-0002" / "state.pt").write_bytes(b"not a torch file")
    before = _tree(run)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 2
    assert "state.pt: not a readable training state" in one_line_error(capsys)
    assert _tree(run) == before  # no resume entry in config.yaml, records not rewritten

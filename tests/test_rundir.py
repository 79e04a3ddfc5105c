"""Runs that cannot be lost or silently mis-trained: resume, run directories, inputs."""

from __future__ import annotations

import errno
import os
import pickle
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

import preattn.train.rundir as rundir
from _helpers import TINY_CONFIG, metrics_without_timings
from _helpers import TINY_TRAIN_FLAGS as TINY
from preattn import export_onnx
from preattn.cli import main
from preattn.data import DatasetError, build_datasets
from preattn.train import RunDir, TrainConfig, TrainingDiverged, train

CONFIG = TINY_CONFIG


def _rows(run: Path) -> list[dict]:
    """Metrics records without the timings (they differ between identical runs)."""
    return metrics_without_timings(run)


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


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
    err = _error(capsys)
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
    err = _error(capsys)
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
    assert record["epoch"] == 2 and run.committed_epoch() == 2
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


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_cifar_batch_runs_no_code(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    payload = _Payload()
    payload.marker = tmp_path / "pwned"
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with (folder / name).open("wb") as fh:
            pickle.dump({"data": payload, "labels": [0]}, fh)
    with pytest.raises(DatasetError, match=r"data_batch_1: .*refused to load posix.system"):
        build_datasets("cifar10", tmp_path)
    assert not payload.marker.exists()


def test_a_real_format_python2_style_cifar_batch_still_loads(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            "batch_label": b"training batch",
            "labels": [1, 2],
            "data": rng.integers(0, 256, (2, 3072), dtype=np.uint8),
            "filenames": [b"a.png", b"b.png"],
        }
        with (folder / name).open("wb") as fh:
            pickle.dump(batch, fh, protocol=2)
    assert len(build_datasets("cifar10", tmp_path).train) == 10


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
        assert "is in use by another training process" in _error(capsys)
        assert not (run / "config.yaml").exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder is dead: its lock file is no barrier
    assert main(["train", *TINY, "--out", str(run)]) == 0


# --- 6, 7. config values ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,message",
    [
        ('amp: "no"\n', "amp must be bool, got 'no'"),
        ('lam_learnable: "false"\n', "lam_learnable must be bool, got 'false'"),
        ('lr: "0.1"\n', "lr must be float, got '0.1'"),
        ("seed: -5\n", r"seed must be an int >= 0, got -5"),
        ("lr: .nan\n", "lr must be a finite number"),
        ("momentum: 5\n", r"momentum must be in \[0, 1\), got 5"),
        ("epochs: 2\nlr: [0.1\n", r"bad.yaml:2: invalid YAML"),
    ],
)
def test_config_values_are_type_and_range_checked(tmp_path, capsys, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "r")]) == 2
    assert re.search(message, _error(capsys))


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--lr", "nan"], "lr must be a finite number"),
        (["--lr", "inf"], "lr must be a finite number"),
        (["--lr", "0"], "lr must be a finite number > 0, got 0.0"),
        (["--momentum", "5"], "momentum must be in [0, 1), got 5.0"),
        (["--device", "foo"], "device must be auto, cpu, cuda, cuda:N"),
    ],
)
def test_bad_flags_give_one_line(tmp_path, capsys, flags, message):
    assert main(["train", *TINY, *flags, "--out", str(tmp_path / "r")]) == 2
    assert message in _error(capsys)
    assert not (tmp_path / "r").exists()


def test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    import preattn.train.loop as loop

    out = tmp_path / "r"
    models: list[torch.nn.Module] = []
    build = loop.build_model

    def keep(config, splits):
        models.append(build(config, splits))
        return models[-1]

    def blow_up(record: dict) -> None:
        if record["epoch"] == 1:  # what an exploding update does: the live weights turn NaN
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
    assert "training loss became nan at epoch 1" in _error(capsys)


# --- 8. half-precision modules: tests/test_blocks.py -------------------------------------
# --- 9. one-line errors -------------------------------------------------------------------


def test_truncated_weights_give_one_line(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    committed = run / "checkpoints" / "epoch-0001" / "model.safetensors"
    committed.write_bytes(committed.read_bytes()[:100])
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run)]) == 2
    assert "model.safetensors: not a readable safetensors file" in _error(capsys)


def test_unreadable_state_gives_one_line(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    state = run / "checkpoints" / "epoch-0001" / "state.pt"
    state.unlink()
    state.mkdir()  # blocked: a directory where the file should be
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    assert "state.pt" in _error(capsys)


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="lr must be a finite number"):
        main(["--debug", "train", *TINY, "--lr", "nan", "--out", str(tmp_path / "r")])
    monkeypatch.setenv("PREATTN_DEBUG", "1")
    with pytest.raises(ValueError):
        main(["train", *TINY, "--lr", "nan", "--out", str(tmp_path / "r")])


def _idx(array: np.ndarray) -> bytes:
    import struct

    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    return header + array.astype(np.uint8).tobytes()


def test_idx_labels_out_of_range_name_the_file(tmp_path):
    files = {
        "train-images-idx3-ubyte": np.zeros((4, 28, 28)),
        "train-labels-idx1-ubyte": np.array([0, 1, 2, 12]),
        "t10k-images-idx3-ubyte": np.zeros((2, 28, 28)),
        "t10k-labels-idx1-ubyte": np.array([0, 1]),
    }
    for name, array in files.items():
        (tmp_path / name).write_bytes(_idx(array))
    with pytest.raises(
        DatasetError, match=r"train-labels-idx1-ubyte: label 12 out of range for 10"
    ):
        build_datasets("mnist", tmp_path)


def test_cifar_labels_out_of_range_name_the_folder(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with (folder / name).open("wb") as fh:
            pickle.dump({"data": np.zeros((1, 3072), np.uint8), "labels": [-1]}, fh)
    with pytest.raises(DatasetError, match=r"cifar-10-batches-py: label -1 out of range"):
        build_datasets("cifar10", tmp_path)


def test_a_corrupt_image_is_found_before_training(tmp_path, capsys):
    for split in ("train", "val"):
        for cls in ("a", "b"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(folder / f"{i}.png")
    good = (tmp_path / "train" / "b" / "1.png").read_bytes()
    (tmp_path / "train" / "b" / "1.png").write_bytes(good[: len(good) // 2])
    argv = ["train", "--dataset", "imagefolder", "--data-dir", str(tmp_path), "--image-size", "8"]
    assert main([*argv, "--batch-size", "2", "--epochs", "1", "--out", str(tmp_path / "r")]) == 2
    assert "train/b/1.png: not a readable image" in _error(capsys)
    assert not (tmp_path / "r" / "metrics.jsonl").exists()


def test_out_that_is_a_file_and_onnx_to_a_directory(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["train", *TINY, "--out", str(target)]) == 2
    assert "is a file, not a run directory" in _error(capsys)
    run = tmp_path / "r"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["export", "--checkpoint", str(run), "--onnx", str(tmp_path)]) == 2
    assert "is a directory; give a file name" in _error(capsys)


# --- 10. minor ----------------------------------------------------------------------------


def test_an_explicit_data_dir_never_falls_back(tmp_path, monkeypatch):
    from preattn.data.registry import find_idx_files

    monkeypatch.setenv("PREATTN_DATA", str(tmp_path / "elsewhere"))
    with pytest.raises(DatasetError) as info:
        find_idx_files("fashion-mnist", tmp_path / "empty")
    assert "/usr/share/datasets" not in str(info.value).split("not found in")[1].split("]")[0]
    assert "elsewhere" not in str(info.value)


def test_export_onnx_restores_the_training_mode(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2)).train()
    export_onnx(model, tmp_path / "m.onnx", (1, 1, 8, 8))
    assert model.training and all(m.training for m in model.modules())


def test_compare_refuses_repeated_placements_and_seeds(tmp_path, capsys):
    out = str(tmp_path / "c")
    assert main(["compare", *TINY, "--placements", "none,pre,none", "--out", out]) == 2
    assert "placements must not repeat" in _error(capsys)
    assert main(["compare", *TINY, "--seeds", "1,1", "--out", out]) == 2
    assert "seeds must not repeat" in _error(capsys)


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


def test_image_folder_checks_only_the_images_a_run_reads(tmp_path):
    for split in ("train", "val"):
        folder = tmp_path / split / "a"
        folder.mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(folder / f"{i}.png")
    (tmp_path / "train" / "a" / "2.png").write_bytes(b"broken")  # third in sorted order
    splits = build_datasets("imagefolder", tmp_path, limit_train=2, image_size=8)
    assert len(splits.train) == 2
    with pytest.raises(DatasetError, match=r"train/a/2.png: not a readable image"):
        build_datasets("imagefolder", tmp_path, image_size=8)

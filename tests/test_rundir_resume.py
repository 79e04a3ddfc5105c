"""Resuming a run: more epochs re-plan the schedule, options the run fixed are refused, and a
resume that cannot go on deletes and rewrites nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from _helpers import TINY_CONFIG, copy_run, metrics_without_timings, one_line_error
from preattn.cli import main
from preattn.train import RunDir

# --- resume to extend ----------------------------------------------------------------------


def test_resume_with_more_epochs_replans_the_schedule_and_records_it(run_copy):
    run = run_copy
    before = load_file(str(run / "model.safetensors"))
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 0
    rows = metrics_without_timings(run)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    # 2 steps per epoch, T = 6 after the extension: the cosine is re-planned, LR > 0
    steps, total, lr = 2, 6, TINY_CONFIG["lr"]
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
        (["--lr", "0.5"], "lr (0.05 -> 0.5)"),
        (["--batch-size", "8", "--placement", "branch"], "batch_size (16 -> 8), placement"),
        (["--model", "resnet18"], "model ('simplecnn' -> 'resnet18')"),
    ],
)
def test_resume_refuses_options_the_run_fixed(run_copy, capsys, flags, names):
    run = run_copy
    assert main(["train", "--resume", str(run), *flags]) == 2
    err = one_line_error(capsys)
    assert f"cannot change on resume: {names}" in err
    assert yaml.safe_load((run / "config.yaml").read_text())["history"] == []


def test_resume_of_a_finished_run_trains_nothing_more(run_copy):
    run = run_copy
    weights = (run / "model.safetensors").read_bytes()
    assert main(["train", "--resume", str(run)]) == 0
    assert (run / "model.safetensors").read_bytes() == weights
    assert len(metrics_without_timings(run)) == 1


# --- nothing is cleaned before the resume is known to be possible ---------------------------


def _tree(run: Path) -> dict[str, bytes | None]:
    """Every path in ``run`` with a file's bytes (None for a folder)."""
    return {
        str(p.relative_to(run)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(run.rglob("*"))
        if p.name != ".lock"
    }


@pytest.fixture
def two_epoch_run(tiny_runs, tmp_path) -> Path:
    """This test's copy of the session's finished two-epoch tiny run."""
    run = copy_run(tiny_runs(epochs=2), tmp_path)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch-0002"]
    return run


def test_a_pointer_to_a_missing_epoch_deletes_nothing_and_names_the_fix(two_epoch_run, capsys):
    run = two_epoch_run
    (run / "checkpoints" / "epoch-0001").mkdir()  # an uncommitted leftover, also kept
    (run / "checkpoint").write_text("epoch-0005\n")
    before = _tree(run)
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 2
    error = one_line_error(capsys)
    assert "names epoch-0005" in error and "is missing" in error
    assert "write 'epoch-0002'" in error and "nothing was deleted" in error
    assert _tree(run) == before
    # the fix the message names works: the run resumes from its last complete epoch
    (run / "checkpoint").write_text("epoch-0002\n")
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 0
    assert RunDir(run).load_weights()[1] == 3
    assert [r["epoch"] for r in metrics_without_timings(run)] == [1, 2, 3]


@pytest.mark.parametrize("damage", ["state missing", "weights of another epoch"])
def test_a_pointer_to_an_incomplete_epoch_deletes_nothing(two_epoch_run, capsys, damage):
    run = two_epoch_run
    committed = run / "checkpoints" / "epoch-0002"
    (run / "checkpoints" / ".tmp-epoch-0003-77").mkdir()  # stale, but cleaning waits
    if damage == "state missing":
        (committed / "state.pt").unlink()
    else:
        tensors = load_file(str(committed / "model.safetensors"))
        save_file(tensors, str(committed / "model.safetensors"), metadata={"epoch": "1"})
    before = _tree(run)
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 2
    assert "nothing was deleted" in one_line_error(capsys)
    assert _tree(run) == before


def test_a_lost_pointer_beside_a_later_complete_epoch_deletes_nothing(two_epoch_run, capsys):
    run = two_epoch_run
    (run / "checkpoint").unlink()
    (run / "model.safetensors").unlink()
    before = _tree(run)
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 2
    error = one_line_error(capsys)
    assert "epoch-0002 is complete" in error and "nothing was deleted" in error
    assert _tree(run) == before


def test_an_unreadable_checkpoint_leaves_config_and_records_untouched(two_epoch_run, capsys):
    run = two_epoch_run
    (run / "checkpoints" / "epoch-0002" / "state.pt").write_bytes(b"not a torch file")
    before = _tree(run)
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 2
    assert "state.pt: not a readable training state" in one_line_error(capsys)
    assert _tree(run) == before  # no resume entry in config.yaml, records not rewritten

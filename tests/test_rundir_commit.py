"""One commit per epoch: a kill at any step of the commit, a full disk, a diverging loss or a
torn record append leaves the last complete epoch, and the next start goes on from it."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch

import preattn.train.rundir as rundir
from _helpers import metrics_without_timings, tiny_config
from preattn.cli import main
from preattn.train import RunDir, TrainingDiverged, train


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
    tmp_path, tiny_runs, monkeypatch, point
):
    out = tmp_path / "r"
    config = tiny_config(epochs=2, out=str(out))

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
    # the same records as the same two epochs trained without a kill
    uninterrupted = tiny_runs(epochs=2)
    assert metrics_without_timings(out) == metrics_without_timings(uninterrupted)


def test_a_full_disk_keeps_the_last_complete_epoch(tmp_path, monkeypatch):
    out = tmp_path / "r"
    config = tiny_config(epochs=2, out=str(out))
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


def test_stale_temporaries_are_removed_at_the_next_start(run_copy):
    out = run_copy
    (out / "checkpoints" / ".tmp-epoch-0002-999").mkdir()
    (out / "checkpoints" / "epoch-0002").mkdir()  # renamed but never committed
    train(tiny_config(epochs=2, out=str(out)), resume=True)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch-0002"]
    assert RunDir(out).load_weights()[1] == 2


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
    config = tiny_config(epochs=3, out=str(out))
    with pytest.raises(TrainingDiverged, match=r"training loss became nan at epoch 2, batch 1"):
        train(config, callbacks=[blow_up])
    run = RunDir(out)
    assert run.committed_epoch() == 1 and len(metrics_without_timings(out)) == 1
    weights, _ = run.load_weights()
    assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())
    # the divergence is recorded beside the last good checkpoint ...
    record = run.divergence()
    assert record is not None and record["last_good_epoch"] == 1
    assert record["message"].startswith("training loss became nan at epoch 2, batch 1")
    # ... and a resume trains from that checkpoint again, forgetting the record
    models.clear()
    train(config, resume=True)
    assert run.divergence() is None and run.committed_epoch() == 3
    _, history = run.read_config()
    assert history[-1]["resumed_after_epoch"] == 1
    assert history[-1]["after_divergence"] == record["message"]


def test_a_torn_last_record_is_dropped_and_the_run_resumes(run_copy):
    run = run_copy
    for name in ("metrics.jsonl", "steps.jsonl"):  # a kill in the middle of the next append
        with (run / name).open("a") as fh:
            fh.write('{"epoch": 2, "test_a')
    with pytest.warns(UserWarning, match="dropped a torn last record"):
        assert [r["epoch"] for r in RunDir(run).read_metrics()] == [1]
    with pytest.warns(UserWarning, match="dropped a torn last record"):
        assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0
    assert [r["epoch"] for r in metrics_without_timings(run)] == [1, 2]
    (run / "metrics.jsonl").write_text('{"epoch": 1}\nnot json\n{"epoch": 2}\n')
    with pytest.raises(rundir.RunError, match=r"metrics.jsonl:2: not a JSON record"):
        RunDir(run).read_metrics()  # damage before the last line is not a torn append

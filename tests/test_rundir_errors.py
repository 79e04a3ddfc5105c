"""What goes wrong around a run is one line naming what is wrong, without a traceback: damaged
checkpoint files, a path of the wrong kind; a diverged run exits with status 1."""

from __future__ import annotations

from _helpers import TINY_TRAIN_FLAGS as TINY
from _helpers import one_line_error
from preattn.cli import main
from preattn.train import TrainingDiverged


def test_diverged_cli_exit_status_is_1(tmp_path, capsys, monkeypatch):
    import preattn.train.loop as loop

    def explode(*args, **kwargs):
        raise TrainingDiverged("training loss became nan at epoch 1, batch 1 (optimiser step 1)")

    monkeypatch.setattr(loop, "train_one_epoch", explode)
    assert main(["train", *TINY, "--out", str(tmp_path / "r")]) == 1
    assert "training loss became nan at epoch 1" in one_line_error(capsys)


def test_truncated_weights_give_one_line(run_copy, capsys):
    committed = run_copy / "checkpoints" / "epoch-0001" / "model.safetensors"
    committed.write_bytes(committed.read_bytes()[:100])
    assert main(["eval", "--checkpoint", str(run_copy)]) == 2
    assert "model.safetensors: not a readable safetensors file" in one_line_error(capsys)


def test_unreadable_state_gives_one_line(run_copy, capsys):
    state = run_copy / "checkpoints" / "epoch-0001" / "state.pt"
    state.unlink()
    state.mkdir()  # blocked: a directory where the file should be
    assert main(["train", "--resume", str(run_copy), "--epochs", "2"]) == 2
    assert "state.pt" in one_line_error(capsys)


def test_out_that_is_a_file_and_onnx_to_a_directory(run_copy, tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["train", *TINY, "--out", str(target)]) == 2
    assert "is a file, not a run directory" in one_line_error(capsys)
    assert main(["export", "--checkpoint", str(run_copy), "--onnx", str(tmp_path)]) == 2
    assert "is a directory; give a file name" in one_line_error(capsys)

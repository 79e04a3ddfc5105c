"""Runs that cannot be broken from outside: saved records held to the rules of the flags,
bounded sizes, special files, mapped failures, concurrent ablates."""

from __future__ import annotations

import importlib
import logging
import shutil
from pathlib import Path

import pytest
import yaml

from _helpers import TINY_TRAIN_FLAGS as TINY
from _helpers import one_line_error
from preattn.cli import main
from preattn.train.config import ConfigError


@pytest.fixture
def image(tmp_path) -> Path:
    from PIL import Image

    path = tmp_path / "a.png"
    Image.new("RGB", (8, 8), (200, 30, 30)).save(path)
    return path


def _edit_config(run: Path, **changes) -> None:
    path = run / "config.yaml"
    values = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if key.startswith("data."):
            values["data"][key.removeprefix("data.")] = value
        else:
            values[key] = value
    path.write_text(yaml.safe_dump(values, sort_keys=False))


def _readers(run: Path, image: Path, tmp_path: Path) -> dict[str, list[str]]:
    """Every command that rebuilds a run's network, with its arguments."""
    return {
        "eval": ["eval", "--checkpoint", str(run)],
        "predict": ["predict", "--checkpoint", str(run), str(image)],
        "viz": ["viz", "--checkpoint", str(run), "--images", "2", "--out", str(tmp_path / "v")],
        "check": ["check", "--checkpoint", str(run)],
        "summary": ["summary", "--checkpoint", str(run)],
        "export": ["export", "--checkpoint", str(run), "--onnx", str(tmp_path / "m.onnx")],
    }


# --- a saved config and data record are held to the rules of the flags -------------------


@pytest.mark.parametrize("command", ["eval", "predict", "viz", "check", "summary", "export"])
def test_a_saved_width_beyond_the_flags_limit_is_refused_by_every_reader(
    run_copy, image, tmp_path, capsys, command
):
    _edit_config(run_copy, width=1000.0)
    capsys.readouterr()
    assert main(_readers(run_copy, image, tmp_path)[command]) == 2
    error = one_line_error(capsys)
    assert "config.yaml" in error and "width must be at most 8.0, got 1000.0" in error


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("data.image_size", 100000, "data.image_size must be 8"),  # the example
        ("data.image_size", 8.0, "data.image_size must be 8"),  # a float is not the int
        ("data.in_chans", 1000, "data.in_chans must be 3"),
        ("data.classes", [str(i) for i in range(10_000)], "data.classes must be 6 distinct"),
        ("data.std", [0.0, 1.0, 1.0], "data.std must be null or 3 finite numbers > 0"),
        ("data.mean", [0.5], "data.mean must be null or 3 finite numbers"),
        ("image_size", 100000, "image_size must be at most 4096"),
        ("seed", -1, "seed must be an int >= 0"),
        ("batch_size", 0, "batch_size must be an int >= 1"),
    ],
)
def test_a_tampered_saved_record_is_one_line_naming_file_and_field(
    run_copy, image, tmp_path, capsys, field, value, named
):
    _edit_config(run_copy, **{field: value})
    capsys.readouterr()
    assert main(_readers(run_copy, image, tmp_path)["predict"]) == 2
    error = one_line_error(capsys)
    assert str(run_copy / "config.yaml") in error and named in error


def test_create_model_from_run_refuses_a_tampered_width(run_copy):
    pytest.importorskip("timm")
    from preattn.timm import create_model_from_run

    _edit_config(run_copy, width=1000.0)
    with pytest.raises(ConfigError, match=r"config\.yaml: width must be at most 8\.0"):
        create_model_from_run(run_copy)


def test_an_untouched_run_still_reads(run_copy, image, tmp_path, capsys):
    capsys.readouterr()
    assert main(_readers(run_copy, image, tmp_path)["predict"]) == 0
    assert str(image) in capsys.readouterr().out


# --- sizes from arguments are capped; predict streams in bounded batches ------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["check", "--input-size", "3,60000,60000"],  # the example: 86 GB
        ["summary", "--input-size", "3,60000,60000"],
        ["summary", "--input-size", "3,32,4097"],  # one past the largest --image-size
        ["summary", "--input-size", "100000,8,8"],  # channels
    ],
)
def test_an_absurd_input_size_is_a_usage_error_before_any_network_is_built(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "--input-size" in err and "H, W <= 4096" in err


def test_the_largest_input_size_allowed_is_accepted(capsys):
    assert main(["summary", "--model", "simplecnn", "--input-size", "16,16,16"]) == 0
    assert "16x16x16" in capsys.readouterr().out


@pytest.mark.parametrize("count", ["100000000", "65", "0", "-3"])
def test_viz_refuses_an_image_count_outside_its_range(run_copy, capsys, count):
    capsys.readouterr()
    assert main(["viz", "--checkpoint", str(run_copy), "--images", count]) == 2
    assert f"--images must be an int in [1, 64] (one figure row each), got {count}" in (
        one_line_error(capsys)
    )


def _pngs(folder: Path, count: int) -> list[Path]:
    from PIL import Image

    folder.mkdir(exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"img{i:03d}.png"
        Image.new("RGB", (8, 8), (i * 37 % 256, i * 91 % 256, 40)).save(path)
        paths.append(path)
    return paths


def test_predict_runs_one_batch_at_a_time_and_matches_a_single_pass(run_copy, tmp_path):
    """Each forward pass sees at most ``batch_size`` images, the iterator yields a batch's
    predictions before it decodes the next file, and the probabilities equal those of
    one pass over all the images (eval mode: images do not affect each other)."""
    import torch

    from preattn.predict import iter_predictions, predict, preprocess_image
    from preattn.train.load import load_model

    loaded = load_model(run_copy)
    paths = _pngs(tmp_path / "images", 7)
    seen: list[int] = []
    hook = loaded.model.register_forward_pre_hook(lambda m, args: seen.append(len(args[0])))
    decoded: list[Path] = []

    def lazily():
        for p in paths:
            decoded.append(p)
            yield p

    stream = iter_predictions(loaded.model, lazily(), loaded.info, top_k=6, batch_size=3)
    first = next(stream)
    assert len(decoded) == 3 and seen == [3]  # the first result before the 4th file is read
    rest = list(stream)
    hook.remove()
    assert seen == [3, 3, 1] and [r.path for r in [first, *rest]] == [str(p) for p in paths]
    batch = torch.stack([preprocess_image(p, loaded.info) for p in paths])
    with torch.no_grad():
        reference = loaded.model.eval()(batch).softmax(dim=1)
    for row, result in zip(reference, [first, *rest], strict=True):
        expected = sorted(row.tolist(), reverse=True)
        assert result.probabilities == pytest.approx(expected, abs=1e-5)
    together = predict(loaded.model, paths, loaded.info, top_k=6)  # one batch of 64
    assert [r.indices for r in together] == [r.indices for r in [first, *rest]]


def test_predict_on_a_folder_prints_every_image_in_name_order(run_copy, tmp_path, capsys):
    import json

    paths = _pngs(tmp_path / "images", 5)
    (tmp_path / "images" / "notes.txt").write_text("not an image, not listed")
    capsys.readouterr()
    argv = ["predict", "--checkpoint", str(run_copy), str(tmp_path / "images")]
    assert main([*argv, "--json", "--batch-size", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["file"] for line in lines] == [str(p) for p in paths]
    assert main([*argv, "--batch-size", "0"]) == 2
    assert "--batch-size must be an int >= 1, got 0" in one_line_error(capsys)


# --- only regular files are read ----------------------------------------------------------


def _fifo(path: Path) -> Path:
    import os

    os.mkfifo(path)
    return path


def test_predict_on_a_fifo_is_one_line_and_goes_on(run_copy, image, tmp_path, capsys):
    fifo = _fifo(tmp_path / "pipe.png")
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(run_copy), str(fifo), str(image)]) == 2
    out, err = capsys.readouterr()
    assert str(image) in out  # the regular file is still predicted
    assert err.count("\n") == 1 and f"{fifo}: a FIFO (named pipe), not an image file" in err


@pytest.mark.parametrize("name", ["config.yaml", "checkpoints/epoch-0001/state.pt", "checkpoint"])
def test_a_fifo_in_place_of_a_run_file_is_one_line(run_copy, tmp_path, capsys, name):
    target = run_copy / name
    target.unlink()
    _fifo(target)
    capsys.readouterr()
    assert main(["train", "--resume", str(run_copy), "--epochs", "2"]) == 2
    assert f"{target}" in (error := one_line_error(capsys)) and "FIFO" in error


def test_a_fifo_as_grid_file_or_lock_is_one_line(run_copy, tmp_path, capsys):
    grid = _fifo(tmp_path / "grid.yaml")
    assert main(["ablate", str(grid), "--out", str(tmp_path / "a"), "--dry-run"]) == 2
    assert "FIFO" in one_line_error(capsys)
    (run_copy / ".lock").unlink(missing_ok=True)
    _fifo(run_copy / ".lock")
    assert main(["train", "--resume", str(run_copy), "--epochs", "2"]) == 2
    assert "lock file" in one_line_error(capsys)


# --- ablate decides everything before it writes, also for a dry run -----------------------


def _grid_file(tmp_path: Path, **changes) -> Path:
    from _helpers import tiny_options

    values = {
        "base": tiny_options(),
        "variants": {"none": {"placement": "none"}, "pre": {"placement": "pre"}},
        "reference": "none",
        "seeds": [0],
        **changes,
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.mark.parametrize("limit", ["0", "-5", "nan", "inf"])
@pytest.mark.parametrize("dry_run", [True, False])
def test_ablate_refuses_a_bad_time_limit_before_writing_anything(tmp_path, capsys, limit, dry_run):
    grid, out = _grid_file(tmp_path), tmp_path / "out"
    argv = ["ablate", str(grid), "--out", str(out), "--time-limit", limit]
    capsys.readouterr()
    assert main([*argv, *(["--dry-run"] if dry_run else [])]) == 2
    assert "time_limit must be a number of seconds > 0, got" in one_line_error(capsys)
    assert not out.exists()


@pytest.mark.parametrize(
    "sized",
    [
        {"placement": "pre"},  # the example: a variant with attention
        {"placement": "branch", "attention": "se", "lam": None},  # beyond: another placement
    ],
)
def test_match_cost_naming_a_variant_with_attention_is_refused_by_a_dry_run(
    tmp_path, capsys, sized
):
    grid = _grid_file(
        tmp_path,
        variants={"none": {"placement": "none"}, "pre": {"placement": "pre"}, "wide": sized},
        match_cost={"variant": "wide", "to": "pre"},
    )
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["ablate", str(grid), "--out", str(out), "--dry-run"]) == 2
    error = one_line_error(capsys)
    assert "match_cost: 'wide' has attention" in error and "placement: none" in error
    assert not out.exists()


def test_match_cost_inheriting_attention_from_base_is_refused(tmp_path, capsys):
    from _helpers import tiny_options

    grid = _grid_file(
        tmp_path,
        base=tiny_options(placement="pre"),  # the variant sets no placement
        variants={"none": {"placement": "none"}, "pre": {}, "wide": {}},
        match_cost={"variant": "wide", "to": "pre"},
    )
    assert main(["ablate", str(grid), "--out", str(tmp_path / "o"), "--dry-run"]) == 2
    assert "match_cost: 'wide' has attention (placement=pre" in one_line_error(capsys)


# --- failures of the machine are one line that says what to change ------------------------


def _fail_state_write_of_epoch(monkeypatch, epoch: int, exc: BaseException) -> None:
    import preattn.train.rundir as rundir

    real = rundir.torch.save

    def save(obj, path, *args, **kwargs):
        if obj.get("epoch") == epoch:
            Path(path).write_bytes(b"PK\x03\x04partial")  # a part of the archive, then it fails
            raise exc
        return real(obj, path, *args, **kwargs)

    monkeypatch.setattr(rundir.torch, "save", save)


def test_a_full_disk_during_a_commit_is_one_line_and_the_run_resumes(tmp_path, capsys, monkeypatch):
    import preattn.train.rundir as rundir
    from preattn.train import RunDir

    run = tmp_path / "r"
    # what torch.save raises when its archive writer runs out of space (the example)
    full = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1088 vs 986")
    _fail_state_write_of_epoch(monkeypatch, 2, full)
    monkeypatch.setattr(rundir, "low_on_space", lambda folder: True)
    capsys.readouterr()
    assert main(["train", *TINY, "--epochs", "2", "--out", str(run)]) == 2
    error = one_line_error(capsys)
    assert "No space left on device while committing epoch 2" in error
    assert f"the run keeps epoch 1; free space, then continue it with --resume {run}" in error
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch-0001"]
    monkeypatch.undo()
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0
    assert RunDir(run).load_weights()[1] == 2


def test_a_failed_write_with_space_left_is_not_called_a_full_disk(tmp_path, capsys, monkeypatch):
    run = tmp_path / "r"
    _fail_state_write_of_epoch(monkeypatch, 1, RuntimeError("PytorchStreamWriter failed"))
    capsys.readouterr()
    assert main(["train", *TINY, "--out", str(run)]) == 2
    error = one_line_error(capsys)
    assert "Could not write (PytorchStreamWriter failed) while committing epoch 1" in error
    assert "the run has no complete epoch yet" in error and "No space" not in error


def test_a_full_disk_outside_a_commit_says_what_to_change(tmp_path, capsys, monkeypatch):
    import errno
    import os

    from preattn.train import RunDir

    def no_space(self, record):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(RunDir, "append_metrics", no_space)
    capsys.readouterr()
    assert main(["train", *TINY, "--out", str(tmp_path / "r")]) == 2
    error = one_line_error(capsys)
    assert "out of disk space (No space left on device): free space on that disk" in error


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
            "memory: you tried to allocate 86400000000 bytes. Error code 12"
        ),
        MemoryError(),
        "cuda",  # torch.OutOfMemoryError, as CUDA raises it
    ],
)
def test_out_of_memory_is_one_line_naming_what_to_reduce(capsys, monkeypatch, exc):
    import torch

    summary_module = importlib.import_module(
        "preattn.summary"
    )  # the package's name is the function

    if exc == "cuda":
        exc = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    def exhausted(*args, **kwargs):
        raise exc

    monkeypatch.setattr(summary_module, "summary", exhausted)
    capsys.readouterr()
    assert main(["summary", "--model", "simplecnn"]) == 2
    assert "out of memory" in (error := one_line_error(capsys))
    assert "use a smaller --batch-size, --image-size, --width or model" in error


def test_an_unrelated_runtime_error_still_shows_its_traceback(monkeypatch):
    summary_module = importlib.import_module(
        "preattn.summary"
    )  # the package's name is the function

    def broken(*args, **kwargs):
        raise RuntimeError("a bug, not a resource")

    monkeypatch.setattr(summary_module, "summary", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["summary", "--model", "simplecnn"])


@pytest.mark.parametrize("seed", ["99999999999999999999999", str(2**32), str(2**63)])
def test_an_out_of_range_seed_is_one_line(tmp_path, capsys, seed):
    capsys.readouterr()
    assert main(["train", *TINY, "--seed", seed, "--out", str(tmp_path / "r")]) == 2
    assert f"seed must be an int in [0, 4294967295], got {seed}" in one_line_error(capsys)
    assert not (tmp_path / "r").exists()


def test_the_largest_seed_trains(tmp_path):
    assert main(["train", *TINY, "--seed", str(2**32 - 1), "--out", str(tmp_path / "r")]) == 0


def test_a_grid_seed_out_of_range_names_the_variant(tmp_path, capsys):
    grid = _grid_file(tmp_path, seeds=[0, 2**40])
    assert main(["ablate", str(grid), "--out", str(tmp_path / "o"), "--dry-run"]) == 2
    assert "seed must be an int in [0, 4294967295]" in one_line_error(capsys)


# --- models work on the meta device -------------------------------------------------------


def _meta_cases():
    from preattn.models.factory import MODELS

    cases = [(name, {"placement": "pre"}) for name in MODELS]
    cases += [("resnet18", {"placement": p}) for p in ("branch", "post", "skip", "none")]
    cases += [("simplecnn", {"placement": "pre", "attention": a}) for a in ("se", "eca", "coord")]
    return cases


@pytest.mark.parametrize(("name", "options"), _meta_cases())
def test_a_model_built_on_the_meta_device_infers_shapes(name, options):
    import torch

    from preattn.models.factory import create_model

    with torch.device("meta"):
        model = create_model(name, image_size=32, num_classes=7, **options)
    y = model(torch.empty(2, 3, 32, 32, device="meta"))
    assert y.device.type == "meta" and tuple(y.shape) == (2, 7)


def test_deferred_initialisation_loads_weights_and_matches_the_eager_model():
    """Built on meta, materialised with ``to_empty``, loaded with an eager model's weights:
    the same outputs as that model (nothing the state dict misses is left uninitialised)."""
    import torch

    from _helpers import randomise_batchnorm
    from preattn.models.factory import create_model

    torch.manual_seed(0)
    eager = randomise_batchnorm(create_model("resnet18", image_size=32, num_classes=5)).eval()
    with torch.device("meta"):
        deferred = create_model("resnet18", image_size=32, num_classes=5)
    deferred = deferred.to_empty(device="cpu")
    deferred.load_state_dict(eager.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(deferred.eval()(x), eager(x))


def test_a_retrofitted_torchvision_network_runs_on_the_meta_device():
    import torch
    import torchvision

    from preattn import retrofit

    model = retrofit(torchvision.models.resnet18(num_classes=3), placement="pre").to("meta")
    assert tuple(model(torch.empty(1, 3, 64, 64, device="meta")).shape) == (1, 3)


# --- two ablates on one folder: a run the other is training is waited for ----------------


class _OtherAblate:
    """Holds a run's lock as another process training it would (a lock taken through a
    second open file is refused to this process too); :meth:`finish` puts the other's
    finished run in place and lets the lock go, after ``delay`` seconds."""

    def __init__(self, run: Path) -> None:
        import fcntl

        run.mkdir(parents=True, exist_ok=True)
        (run / "train.log").write_text("epoch 1/1 ... (the other ablate's live output)\n")
        self.handle = open(run / ".lock", "a")  # noqa: SIM115
        fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX)
        self.run = run

    def release(self) -> None:
        import fcntl

        fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
        self.handle.close()

    def finish(self, trained: Path, delay: float) -> None:
        import threading

        def later() -> None:
            for path in trained.iterdir():
                if path.name not in (".lock", "train.log"):
                    copy = shutil.copytree if path.is_dir() else shutil.copy2
                    copy(path, self.run / path.name)
            self.release()

        threading.Timer(delay, later).start()


def _grid_and_trained(tmp_path: Path):
    """A one-run grid and that run trained elsewhere (what the other ablate produces)."""
    from _helpers import tiny_grid
    from preattn.train import train

    grid = tiny_grid(variants={"none": {"placement": "none"}}, seeds=[0])
    run = grid.runs(tmp_path / "out")[0]
    trained = tmp_path / "elsewhere"
    train(run.config.replace(out=str(trained)))
    return grid, run, trained


def test_a_run_another_ablate_trains_is_waited_for_and_its_log_left_alone(tmp_path, monkeypatch):
    from preattn.train import RunDir

    execute = importlib.import_module("preattn.ablate.execute")
    monkeypatch.setattr(execute, "WAIT_POLL", 0.05)
    _, run, trained = _grid_and_trained(tmp_path)
    out = Path(run.config.out)
    other = _OtherAblate(out)
    log = (out / "train.log").read_text()
    other.finish(trained, delay=0.5)
    task = {"config": run.config.to_dict(), "resume": False, "threads": None, "deadline": None}
    result = execute.run_task(task)
    expected = RunDir(trained).read_metrics()[-1]["test_acc"]
    assert result == {"test_acc": expected, "seconds": 0.0, "by_other": True}
    assert (out / "train.log").read_text() == log  # no traceback, nothing of this process


def test_a_run_locked_between_the_check_and_the_training_is_waited_for(tmp_path, monkeypatch):
    """The other takes the lock after this process looked: train's refusal (RunBusy) goes
    into no log and the run is waited for as before."""
    execute = importlib.import_module("preattn.ablate.execute")
    monkeypatch.setattr(execute, "WAIT_POLL", 0.05)
    _, run, trained = _grid_and_trained(tmp_path)
    out = Path(run.config.out)
    other = _OtherAblate(out)
    log = (out / "train.log").read_text()
    looks = []
    real_busy = execute.RunDir.busy

    def busy(self):
        looks.append(1)
        return False if len(looks) == 1 else real_busy(self)  # the first look misses it

    monkeypatch.setattr(execute.RunDir, "busy", busy)
    other.finish(trained, delay=0.5)
    task = {"config": run.config.to_dict(), "resume": False, "threads": None, "deadline": None}
    assert execute.run_task(task)["by_other"] is True
    assert len(looks) > 1 and (out / "train.log").read_text() == log


def test_past_the_time_limit_a_busy_run_is_left_to_the_other_not_failed(tmp_path, caplog):
    from preattn.ablate import ablate

    caplog.set_level(logging.INFO, logger="preattn")
    grid, run, _ = _grid_and_trained(tmp_path)
    other = _OtherAblate(Path(run.config.out))
    try:
        report = ablate(grid, tmp_path / "out", time_limit=1e-9)  # raises if a run failed
    finally:
        other.release()
    out = caplog.text
    assert ": left to the process training it (another ablate" in out and "FAILED" not in out
    assert [v["n"] for v in report["variants"]] == [0]


def test_an_interrupted_report_write_leaves_the_previous_report_whole(tmp_path, monkeypatch):
    """Reports go to a temporary beside them and are renamed into place: a writer stopped
    midway (or racing another ablate) never leaves a half report.md or report.json."""
    from _helpers import tiny_grid
    from preattn.ablate import ablate

    grid, out = tiny_grid(seeds=[0]), tmp_path / "out"
    ablate(grid, out, report_only=True, plots=False)
    before = {name: (out / name).read_bytes() for name in ("report.md", "report.json")}
    real = Path.write_text

    def torn(self, text, *args, **kwargs):
        if self.name.startswith((".report.md", ".report.json")):
            real(self, text[: len(text) // 2], *args, **kwargs)
            raise KeyboardInterrupt("stopped while writing the report")
        return real(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", torn)
    with pytest.raises(KeyboardInterrupt):
        ablate(grid, out, report_only=True, plots=False)
    assert {name: (out / name).read_bytes() for name in before} == before
    assert not [p.name for p in out.iterdir() if p.name.startswith(".report")]

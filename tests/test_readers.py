"""Every reader of a saved run rebuilds the network training built, for every option that
shapes it: the matrix of model-shaping options x run readers.

Each option combination is trained once per test session (a tiny run, ~1 s) and copied
for each reader. The independent expectations: the accuracy recorded during training
(``metrics.jsonl``), the logits of the network ``load_run`` rebuilds, and the weights file.
"""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

import preattn.timm as preattn_timm
from _helpers import tiny_options
from preattn.attention import attention_names
from preattn.cli import main
from preattn.models import ModelConfig
from preattn.train import (
    TrainConfig,
    evaluate_run,
    load_model,
    load_run,
    model_arguments,
    train,
)
from preattn.train.rundir import RunDir

# option combination -> TrainConfig keywords on top of TINY_CONFIG (one epoch)
RUNS: dict[str, dict] = {
    "default": {},
    "width": {"width": 0.5},
    "stages": {"stages": [2]},
    **{f"attention-{a}": {"attention": a} for a in attention_names() if a != "cbam"},
    **{f"placement-{p}": {"placement": p} for p in ("none", "branch", "post", "skip")},
    "lam-none": {"lam": None},
    "lam-linear": {"lam_param": "linear", "lam": 0.0},
    "lam-channel": {"lam_shape": "channel"},
    "lam-fixed": {"lam_learnable": False, "lam": 0.3},
    "lam-warm-up": {"lam_warmup_steps": 3},
    "attention-kwargs": {"attention_kwargs": {"reduction": 4}},
    "resnet18": {"model": "resnet18", "width": 0.25},
    "bottleneck": {"model": "resnet50", "width": 0.125, "stages": [3, 4]},
    "imagenet-stem": {"model": "resnet18", "width": 0.125, "image_size": 72},
    "stem": {"model": "resnet18", "width": 0.125, "stem": "imagenet", "image_size": 32},
    "image-size": {"image_size": 12},
    "grey": {"dataset": "mnist"},
    "imagefolder": {"dataset": "imagefolder", "image_size": 8},
    "channels-last": {"channels_last": True},
    "mobilenet": {"model": "mobilenet_v2", "width": 0.25, "stages": [1, 5]},
    "dw-attention": {
        "model": "mobilenet_v3_small",
        "width": 0.25,
        "dw_attention": "coord",
        "dw_attention_kwargs": {"reduction": 4},
    },
}
# ONNX export takes seconds per network: these runs in `make test`, all in `make test-slow`
EXPORT_FAST = ("default", "width", "resnet18", "grey")


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_data(root: Path) -> dict[str, Path]:
    """A grey IDX set (MNIST layout, 28x28) and an image folder with three classes."""
    rng = np.random.default_rng(0)
    mnist = root / "mnist"
    mnist.mkdir(parents=True)
    for prefix, n in (("train", 32), ("t10k", 12)):
        (mnist / f"{prefix}-images-idx3-ubyte").write_bytes(_idx(rng.integers(0, 256, (n, 28, 28))))
        (mnist / f"{prefix}-labels-idx1-ubyte").write_bytes(_idx(np.arange(n) % 10))
    folder = root / "folder"
    for split, n in (("train", 12), ("val", 4)):
        for index, name in enumerate(("cat", "dog", "emu")):
            (folder / split / name).mkdir(parents=True)
            for i in range(n):
                colour = (80 * index, 255 - 60 * i % 256, 30 * i % 256)
                Image.new("RGB", (10, 10), colour).save(folder / split / name / f"{i}.png")
    return {"mnist": mnist, "imagefolder": folder}


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Callable[[str], Path]:
    """``trained_run(name)``: the run directory of option combination ``name``, trained
    once per session; tests get a copy (:func:`_copy`), never the original."""
    root = tmp_path_factory.mktemp("readers")
    data = _write_data(root / "data")
    runs: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in runs:
            options = tiny_options(**RUNS[name])
            if options.get("dataset") in data:
                options.update(data_dir=str(data[options["dataset"]]), limit_test=None)
                # TINY_CONFIG's image size is the synthetic set's
                options["image_size"] = RUNS[name].get("image_size")
                if options["dataset"] == "imagefolder":
                    options.update(limit_train=None, batch_size=12)
            out = root / "runs" / name
            train(TrainConfig(**options, out=str(out)))
            runs[name] = out
        return runs[name]

    return get


def _copy(trained_run: Callable[[str], Path], name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(trained_run(name), target)
    return target


def _recorded_acc(run: Path) -> float:
    return json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["test_acc"]


def _reference(run: Path) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(test images, their logits from the network load_run rebuilds, test set size)."""
    loaded = load_run(run)
    splits, model = loaded.splits, loaded.model
    images = torch.stack([splits.test[i][0] for i in range(min(4, len(splits.test)))])
    with torch.no_grad():
        return images, model.eval()(images), len(splits.test)


NAMES = list(RUNS)


def test_every_option_that_shapes_a_network_has_a_reader_case():
    """A new field of ModelConfig (or AttentionSpec) fails here until RUNS sets it."""
    defaults = ModelConfig().to_flat()
    covered = {k for options in RUNS.values() for k, v in options.items() if v != defaults.get(k)}
    assert set(ModelConfig.keys()) - covered == set()


@pytest.mark.parametrize("name", NAMES)
def test_load_model_rebuilds_the_trained_network(trained_run, tmp_path, name):
    run = _copy(trained_run, name, tmp_path)
    loaded = load_model(run)
    weights = load_file(str(run / "model.safetensors"))
    assert loaded.model.state_dict().keys() == weights.keys()
    images, logits, _ = _reference(run)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.eval()(images), logits)
    assert loaded.classes == tuple(RunDir(run).read_data_info().classes)
    assert loaded.image_size == images.shape[-1] and loaded.in_chans == images.shape[1]


@pytest.mark.parametrize("name", NAMES)
def test_eval_reproduces_the_recorded_accuracy(trained_run, tmp_path, capsys, name):
    run = _copy(trained_run, name, tmp_path)
    assert main(["eval", "--checkpoint", str(run)]) == 0
    report = json.loads((run / "eval.json").read_text())
    _, _, count = _reference(run)
    assert abs(report["accuracy"] - _recorded_acc(run)) <= 1 / count + 1e-9
    assert "eval.json" in RunDir(run).recorded()


def test_evaluate_run_is_what_eval_writes_and_writes_nothing(trained_run, tmp_path, capsys):
    run = _copy(trained_run, "default", tmp_path)
    before = sorted(p.name for p in run.iterdir())
    evaluation = evaluate_run(run)
    assert sorted(p.name for p in run.iterdir()) == before
    assert abs(evaluation.result.accuracy - _recorded_acc(run)) <= 1e-9 + 1 / len(
        load_run(run).splits.test
    )
    assert main(["eval", "--checkpoint", str(run)]) == 0
    assert json.loads((run / "eval.json").read_text()) == json.loads(
        json.dumps(evaluation.to_json())
    )
    assert "\n".join(evaluation.lines()) in capsys.readouterr().out


@pytest.mark.parametrize("name", NAMES)
def test_predict_names_the_runs_classes(trained_run, tmp_path, capsys, name):
    run = _copy(trained_run, name, tmp_path)
    info = RunDir(run).read_data_info()
    image = tmp_path / "x.png"
    Image.new("RGB", (info.image_size, info.image_size), (90, 140, 30)).save(image)
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(run), str(image), "--json", "--top-k", "2"]) == 0
    top = json.loads(capsys.readouterr().out)["top"]
    assert len(top) == 2 and {t["class"] for t in top} <= set(info.classes)
    assert abs(sum(t["probability"] for t in top) - 1) < 1 or len(info.classes) == 2


@pytest.mark.parametrize("name", NAMES)
def test_viz_and_check_read_the_run(trained_run, tmp_path, capsys, name):
    run = _copy(trained_run, name, tmp_path)
    assert main(["viz", "--checkpoint", str(run), "--images", "2"]) == 0
    assert (run / "viz" / "attention.png").is_file()
    capsys.readouterr()
    assert main(["check", "--checkpoint", str(run)]) in (0, 1)  # 1: checklist warnings
    out, err = capsys.readouterr()
    assert err == "" and "finding" in out


@pytest.mark.parametrize("name", NAMES)
def test_resume_extends_the_run(trained_run, tmp_path, name):
    run = _copy(trained_run, name, tmp_path)
    config, _ = RunDir(run).read_config()
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0
    rows = RunDir(run).read_metrics()
    assert [r["epoch"] for r in rows] == [1, 2]
    resumed = RunDir(run).read_config()[0].to_dict()
    assert resumed == {**config.to_dict(), "epochs": 2, "out": str(run)}


@pytest.mark.parametrize("name", NAMES)
def test_ablate_report_only_counts_the_runs_parameters(trained_run, tmp_path, name):
    original = trained_run(name)
    config, _ = RunDir(original).read_config()
    out = tmp_path / "grid"
    shutil.copytree(original, out / "v" / f"seed{config.seed}")
    base = {k: v for k, v in config.to_dict().items() if k not in ("seed", "out")}
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump({"base": base, "variants": {"v": {}}, "seeds": [config.seed]}))
    assert main(["ablate", str(grid), "--out", str(out), "--report-only"]) == 0
    (entry,) = json.loads((out / "report.json").read_text())["variants"]
    weights = load_file(str(original / "model.safetensors"))
    learnable = load_model(original).model
    assert entry["params"] == sum(p.numel() for p in learnable.parameters())
    assert entry["params"] <= sum(t.numel() for t in weights.values())
    assert entry["test_acc"]["mean"] == _recorded_acc(original)


@pytest.mark.parametrize("name", NAMES)
def test_timm_rebuilds_the_run_in_one_call(trained_run, tmp_path, name):
    run = _copy(trained_run, name, tmp_path)
    images, logits, _ = _reference(run)
    model = preattn_timm.create_model_from_run(run).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(images), logits)
    info = RunDir(run).read_data_info()
    assert model.pretrained_cfg["input_size"] == (info.in_chans, info.image_size, info.image_size)
    features = preattn_timm.create_model_from_run(run, features_only=True).eval()
    assert len(features(images)) == len(model.feature_info)
    # the overlay alone, with the run's arguments given by the caller
    config, _ = RunDir(run).read_config()
    overlay = preattn_timm.run_overlay(run)
    again = timm.create_model(
        preattn_timm.timm_name(config.model),
        pretrained=True,
        pretrained_cfg_overlay=overlay,
        **model_arguments(config, info),
    ).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(images), logits)


@pytest.mark.parametrize(
    "name",
    [n if n in EXPORT_FAST else pytest.param(n, marks=pytest.mark.slow) for n in NAMES],
)
def test_export_writes_what_the_run_computes(trained_run, tmp_path, capsys, name):
    import onnxruntime

    run = _copy(trained_run, name, tmp_path)
    path = tmp_path / "m.onnx"
    assert main(["export", "--checkpoint", str(run), "--onnx", str(path), "--no-fuse"]) == 0
    images, logits, _ = _reference(run)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"input": images.numpy()})
    np.testing.assert_allclose(out, logits.numpy(), rtol=1e-4, atol=1e-4)


def test_a_run_whose_data_changed_is_refused_in_one_line(trained_run, tmp_path, capsys):
    run = _copy(trained_run, "imagefolder", tmp_path)
    config, _ = RunDir(run).read_config()
    changed = tmp_path / "changed"
    shutil.copytree(config.data_dir, changed)
    for split in ("train", "val"):
        shutil.copytree(changed / split / "emu", changed / split / "fox")
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run), "--data-dir", str(changed)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the data set is not the one the run was trained on" in err
    assert "classes" in err

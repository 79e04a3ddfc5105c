"""fuse() folds BatchNorm without changing eval outputs; ONNX export runs in onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
import torchvision
from torch import nn

from _helpers import copy_run, randomise_batchnorm
from preattn import export_onnx, fuse, retrofit
from preattn.cli import main
from preattn.models import SimpleCNN, resnet18, resnet50


@pytest.mark.parametrize(
    "build",
    [
        lambda: SimpleCNN(),
        lambda: resnet18(num_classes=10, stem="cifar", attention="cbam-official"),
        lambda: resnet50(num_classes=10, stem="cifar", placement="branch"),
        lambda: retrofit(torchvision.models.resnet18(num_classes=10), lam=0.3),
    ],
)
def test_fuse_keeps_outputs_and_removes_batchnorm(build):
    torch.manual_seed(0)
    model = randomise_batchnorm(build()).eval()
    x = torch.randn(2, 3, 32, 32)
    fused = fuse(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # copy by default
    torch.testing.assert_close(fused(x), model(x), atol=1e-4, rtol=1e-4)


@pytest.mark.slow  # the exporter takes ~15 s per model here; test_export_command stays fast
@pytest.mark.parametrize("placement", ["pre", "branch"])
def test_onnx_export_matches_torch_with_dynamic_batch(tmp_path, placement):
    torch.manual_seed(1)
    model = randomise_batchnorm(
        resnet18(
            num_classes=7,
            stem="cifar",
            placement=placement,
            attention="cbam-official",
            stages=(1, 2, 3, 4),
        )
    ).eval()
    path = export_onnx(fuse(model), tmp_path / "m.onnx", (2, 3, 32, 32))
    graph = onnx.load(str(path))
    assert graph.opset_import[0].version >= 18
    ops = {node.op_type for node in graph.graph.node}
    assert {"ReduceMax", "ReduceMean"} <= ops and "MaxPool" not in ops
    assert "BatchNormalization" not in ops
    session = onnxruntime.InferenceSession(str(path))
    for batch in (1, 5):
        x = torch.randn(batch, 3, 32, 32)
        (y,) = session.run(None, {"input": x.numpy()})
        np.testing.assert_allclose(y, model(x).detach().numpy(), atol=1e-4, rtol=1e-4)


def test_export_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="opset must be an int >= 18, got 13"):
        export_onnx(SimpleCNN(), tmp_path / "a.onnx", (1, 3, 8, 8), opset=13)
    with pytest.raises(ValueError, match=r"input_shape must be \(N, C, H, W\)"):
        export_onnx(SimpleCNN(), tmp_path / "a.onnx", (3, 8, 8))


def test_export_command(run_copy, tmp_path, capsys):
    run = run_copy
    out = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(run), "--onnx", str(out)]) == 0
    session = onnxruntime.InferenceSession(str(out))
    (y,) = session.run(None, {"input": np.zeros((3, 3, 8, 8), dtype=np.float32)})
    assert y.shape == (3, 6)


def test_export_without_the_onnx_extra_says_how_to_install(run_copy, tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "onnxscript" else real(name, *a),
    )
    run = run_copy
    assert main(["export", "--checkpoint", str(run), "--onnx", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'preattn[onnx]'" in err


def test_export_onnx_restores_the_training_mode(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2)).train()
    export_onnx(model, tmp_path / "m.onnx", (1, 1, 8, 8))
    assert model.training and all(m.training for m in model.modules())


def test_export_never_overwrites_a_run_file_and_prints_the_opset_it_wrote(
    tiny_runs, tmp_path, capsys
):
    run = copy_run(tiny_runs(width=0.5), tmp_path)
    config = (run / "config.yaml").read_bytes()
    for name in ("config.yaml", "model.safetensors", "metrics.jsonl", "checkpoint"):
        capsys.readouterr()
        assert main(["export", "--checkpoint", str(run), "--onnx", str(run / name)]) == 2
        err = capsys.readouterr().err
        assert f"would overwrite a file of the run in {run}" in err and err.count("\n") == 1
    assert (run / "config.yaml").read_bytes() == config
    capsys.readouterr()
    assert main(["export", "--checkpoint", str(run), "--onnx", str(run / "model.onnx")]) == 0
    out, err = capsys.readouterr()
    written = onnx.load(str(run / "model.onnx")).opset_import
    opset = next(o.version for o in written if o.domain in ("", "ai.onnx"))
    assert f"opset {opset}," in out and "Traceback" not in err
    assert main(["eval", "--checkpoint", str(run), "--limit-test", "4"]) == 0  # still readable

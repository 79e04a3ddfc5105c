"""Seeing attention: attention_maps, viz, predict, check, and the training plots."""

from __future__ import annotations

import builtins
import json

import matplotlib.image
import numpy as np
import pytest
import timm
import torch
import torchvision
from PIL import Image
from torch import nn

import preattn
from _helpers import TINY_TRAIN_FLAGS as TINY
from _reference import channel_by_hand, spatial_by_hand
from preattn import ResidualBlock, attention_maps, attention_names, check, retrofit
from preattn.cli import main
from preattn.data import build_datasets
from preattn.mixing import LambdaMix
from preattn.models import SimpleCNN, resnet18

ATTENDED = ["pre", "branch", "post", "skip"]
HAS_SPATIAL = {"cbam", "cbam-official", "spatial", "coord"}
HAS_CHANNEL = {"cbam", "cbam-official", "channel", "se", "eca", "coord"}


# --- attention_maps -----------------------------------------------------------------------


@pytest.mark.parametrize("attention", attention_names())
@pytest.mark.parametrize("placement", ATTENDED)
def test_maps_have_the_gates_the_attention_has(attention, placement):
    model = SimpleCNN(in_chans=1, attention=attention, placement=placement).train()
    x = torch.randn(3, 1, 12, 12)
    maps = attention_maps(model, x)
    assert list(maps) == ["block1", "block2"] and model.training
    for name, m in maps.items():
        block = model.get_submodule(name)
        channels = block.in_ch if placement == "pre" else block.out_ch
        h = 12 if (name == "block1" or placement == "pre") else 6
        assert m.placement == placement and m.lam == pytest.approx(0.1)
        if attention in HAS_SPATIAL:
            assert m.spatial.shape == (3, 1, h, h)
            assert m.spatial.min() >= 0 and m.spatial.max() <= 1
        else:
            assert m.spatial is None
        if attention in HAS_CHANNEL:
            assert m.channel.shape == (3, channels)
            assert m.channel.min() >= 0 and m.channel.max() <= 1
        else:
            assert m.channel is None
        assert not (m.spatial if m.spatial is not None else m.channel).requires_grad


def test_coordinate_attention_maps_are_its_gate_averaged_each_way():
    torch.manual_seed(0)
    model = torch.nn.Sequential(ResidualBlock(4, 4, attention="coord")).eval()
    x = torch.randn(2, 4, 5, 7)
    maps = attention_maps(model, x)["0"]
    with torch.no_grad():
        gate = model[0].attention.gate(x)  # a_h · a_w: (2, 4, 5, 7)
    assert gate.shape == x.shape
    torch.testing.assert_close(maps.spatial, gate.mean(dim=1, keepdim=True))
    torch.testing.assert_close(maps.channel, gate.mean(dim=(2, 3)))


def test_pre_maps_equal_cbam_by_hand_on_the_block_input():
    torch.manual_seed(0)
    block = ResidualBlock(8, 8, lam=None).eval()
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), block).eval()
    x = torch.randn(2, 3, 7, 7)
    z = model[0](x)
    channel = channel_by_hand(block.attention.channel, z)
    spatial = spatial_by_hand(block.attention.spatial, z * channel, ("mean", "max"))
    maps = attention_maps(model, x)["1"]
    torch.testing.assert_close(maps.channel, channel.flatten(1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(maps.spatial, spatial, atol=1e-6, rtol=1e-5)
    assert maps.lam == 1.0 and maps.controlled is False


@pytest.mark.parametrize(
    "build",
    [lambda: torchvision.models.resnet18(), lambda: timm.create_model("resnet18")],
    ids=["torchvision", "timm"],
)
def test_maps_of_retrofitted_models(build):
    model = retrofit(build(), placement="branch", lam=0.3, stages=(3, 4))
    maps = attention_maps(model, torch.randn(1, 3, 64, 64))
    assert list(maps) == ["layer3.0", "layer3.1", "layer4.0", "layer4.1"]
    assert maps["layer4.0"].spatial.shape == (1, 1, 2, 2)
    assert maps["layer4.0"].channel.shape == (1, 512)
    assert maps["layer3.0"].lam == pytest.approx(0.3)


# --- check --------------------------------------------------------------------------------


def _warnings(findings):
    return [f for f in findings if f.severity != "info"]


@pytest.mark.parametrize(
    "model,size",
    [
        (SimpleCNN(in_chans=1), (1, 16, 16)),
        (resnet18(num_classes=3, stem="cifar"), (3, 16, 16)),
        (retrofit(torchvision.models.resnet18(), stages=(4,)), (3, 64, 64)),
    ],
    ids=["simplecnn", "resnet18", "retrofit"],
)
def test_check_is_quiet_on_the_library_defaults(model, size):
    findings = check(model, size, trained=False)
    assert _warnings(findings) == []
    assert any("Pattern-3" in f.message for f in findings)
    assert any("skip matched by a projection" in f.message for f in findings)


def test_attention_effectively_off_is_info_in_python_and_cli_with_why_and_what_to_try(capsys):
    """One severity rule: the default's small modulation is ``info`` whether or not the
    weights are called trained, in Python and on the command line (exit 0), with the reason
    (λ = 0.1) and advice that works: ``--preset pattern3-depth`` lets attention act."""
    torch.manual_seed(0)
    model = SimpleCNN(in_chans=1)

    def off(findings):
        return [f for f in findings if "effectively off" in f.message]

    as_trained, as_untrained = (
        off(check(model, (1, 16, 16))),
        off(check(model, (1, 16, 16), trained=False)),
    )
    assert [(f.severity, f.block) for f in as_trained] == [("info", "block1"), ("info", "block2")]
    assert as_trained == as_untrained
    message = as_trained[0].message
    assert "with the specification's λ = 0.1 the mix passes about a tenth" in message
    assert "try --preset pattern3-depth or a larger λ (--lam 0.5); see docs/lambda.md" in message
    torch.manual_seed(0)
    assert main(["check", "--model", "simplecnn", "--input-size", "1,16,16"]) == 0
    assert "info     block1: attention is effectively off in block1" in capsys.readouterr().out
    torch.manual_seed(0)
    argv = [
        "check",
        "--model",
        "simplecnn",
        "--input-size",
        "1,16,16",
        "--preset",
        "pattern3-depth",
    ]
    assert main(argv) == 0
    assert "effectively off" not in capsys.readouterr().out


def test_check_flags_uncontrolled_attention_in_the_first_stage():
    model = resnet18(num_classes=3, stem="cifar", lam=None, stages=(1, 4))
    warned = {f.block for f in _warnings(check(model, (3, 16, 16), trained=False))}
    assert warned == {"layer1.0", "layer1.1"}


def test_check_flags_lambda_fixed_at_zero_and_saturated_after_training():
    model = SimpleCNN(in_chans=1)
    model.block1.mix = LambdaMix(0.0, learnable=False, param="linear")  # hand-built
    model.block2.mix = LambdaMix(0.999)
    messages = [f.message for f in _warnings(check(model, (1, 8, 8)))]
    assert any("fixed at 0" in m for m in messages)
    assert any("saturated after training: attention is fully on" in m for m in messages)


def test_check_reports_a_per_channel_lambda_by_its_mean_and_range():
    model = SimpleCNN(in_chans=1, lam_shape="channel", lam=0.5)
    with torch.no_grad():  # sigmoid λ: logits giving exactly 0.25 ... 0.75 on block1
        values = torch.linspace(0.25, 0.75, model.block1.mix.raw.numel())
        model.block1.mix.raw.copy_(torch.logit(values).view_as(model.block1.mix.raw))
    (line,) = [
        f.message for f in check(model, (1, 8, 8)) if f.block == "block1" and "λ =" in f.message
    ]
    assert f"λ = {values.mean().item():.4g} on average (0.25 to 0.75 over {values.numel()}" in line
    model.block2.mix.raw.data.fill_(-20.0)  # every channel off
    messages = [f.message for f in _warnings(check(model, (1, 8, 8)))]
    assert any("saturated after training: attention is off" in m for m in messages)


def test_check_probes_the_wiring_rather_than_the_placement_string():
    model = SimpleCNN(in_chans=1)
    model.block1._attend = lambda z: z  # says Pattern-3, but F gets the raw input
    model.block2.skip = nn.Identity()  # stride 2 and 64 -> 128 channels need a projection
    errors = [f for f in check(model, (1, 8, 8), trained=False) if f.severity == "error"]
    assert {f.block for f in errors} == {"block1", "block2"}
    assert "does not receive mix(x, A(x))" in errors[0].message


def test_check_probes_a_custom_cnn_with_its_own_channels():
    """A user's 1-channel network without ``in_chans``: probed with 1 channel (its first
    convolution's), not 3, so every block is reached and checked."""
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), preattn.ResidualBlock(8, 8), preattn.ResidualBlock(8, 16, 2)
    )
    findings = check(model, trained=False)
    assert not any("not reached" in f.message for f in findings)
    assert {f.block for f in findings} == {"1", "2"}


def test_check_of_a_fresh_retrofit_says_it_starts_at_the_plain_function():
    model = retrofit(torchvision.models.resnet18(), stages=(4,))
    findings = check(model, (3, 64, 64))  # trained=True, the default
    assert _warnings(findings) == []
    starts = [f for f in findings if "a retrofit's start" in f.message]
    assert {f.block for f in starts} == {"layer4.0", "layer4.1"} and len(starts) == 2


def test_check_reports_macs_per_image():
    block = preattn.ResidualBlock(8, 8, lam=0.3)
    (cost,) = [f for f in check(block, (8, 16, 16), trained=False) if "MACs" in f.message]
    summary_macs = preattn.summary(block, (8, 16, 16)).macs
    assert f"of {summary_macs:,} MACs per image" in cost.message


def test_check_cli_exit_status(capsys):
    assert main(["check", "--model", "simplecnn", "--input-size", "1,16,16"]) == 0
    argv = ["check", "--model", "resnet18", "--stages", "1", "--lam", "none"]
    assert main(argv) == 1
    assert "aggressive" in capsys.readouterr().out


# --- viz, predict and the plots of a real run ----------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("viz") / "run"
    flags = [f for f in TINY if f not in ("--plots", "false")]
    assert main(["train", *flags, "--epochs", "2", "--out", str(out)]) == 0
    return out


def _not_uniform(path) -> bool:
    image = matplotlib.image.imread(path)
    return path.stat().st_size > 1000 and float(np.std(image)) > 0.01


def test_viz_writes_readable_figures(run, tmp_path, capsys):
    out = tmp_path / "viz"
    assert main(["viz", "--checkpoint", str(run), "--images", "3", "--out", str(out)]) == 0
    for name in ("attention.png", "channel_gates.png", "lambda.png"):
        assert _not_uniform(out / name), name
    assert "Grad-CAM skipped" not in capsys.readouterr().out


def test_viz_compare_and_without_grad_cam(run, tmp_path, capsys, monkeypatch):
    real_import = builtins.__import__

    def no_gradcam(name, *args, **kwargs):
        if name.startswith("pytorch_grad_cam"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gradcam)
    out = tmp_path / "viz"
    argv = ["viz", "--checkpoint", str(run), "--images", "2", "--out", str(out)]
    assert main([*argv, "--compare", str(run)]) == 0
    assert _not_uniform(out / "attention.png") and _not_uniform(out / "compare.png")
    text = capsys.readouterr().out
    assert "Grad-CAM skipped: install it with pip install 'preattn[viz]'" in text


def test_training_plots_show_steps_and_honest_lambda(run):
    steps = [json.loads(line) for line in (run / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2, 3, 4] and {s["epoch"] for s in steps} == {1, 2}
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[0]["lambda_start"] == pytest.approx({"block1": 0.1, "block2": 0.1})
    assert _not_uniform(run / "curves.png") and _not_uniform(run / "lambda.png")


def test_predict_matches_the_model_on_the_test_tensor(run, tmp_path, capsys):
    splits = build_datasets("synthetic", image_size=8, limit_test=2, seed=0)
    files = []
    for i in range(2):
        image, _ = splits.test[i]
        pixels = ((image.permute(1, 2, 0).numpy() + 1) / 2 * 255).round().clip(0, 255)
        path = tmp_path / f"img{i}.png"
        Image.fromarray(pixels.astype(np.uint8)).save(path)
        files.append(path)
    assert main(["predict", "--checkpoint", str(run), "--json", *map(str, files)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["file"] for line in lines] == [str(f) for f in files]
    from preattn.train import load_run

    model = load_run(run).model
    with torch.no_grad():
        expected = model.eval()(torch.stack([splits.test[i][0] for i in range(2)])).argmax(1)
    assert [line["top"][0]["index"] for line in lines] == expected.tolist()
    assert main(["predict", "--checkpoint", str(run), str(files[0])]) == 0
    assert capsys.readouterr().out.startswith(f"{files[0]}: ")


def test_predict_names_a_bad_file(run, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert main(["predict", "--checkpoint", str(run), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{bad}: not a readable image" in err


class _Logits(torch.nn.Module):
    """A classifier that answers ``logits`` whatever the image."""

    def __init__(self, logits) -> None:
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits))

    def forward(self, x):
        return self.logits.expand(len(x), -1)


def test_predict_hints_when_an_image_lies_outside_the_training_data(tmp_path):
    from preattn.data.registry import DatasetInfo
    from preattn.predict import predict

    info = DatasetInfo("fashion-mnist", 1, 8, ("a", "b", "c", "d"), (0.286,), (0.353,))
    dark, white = tmp_path / "dark.png", tmp_path / "white.png"
    Image.fromarray(np.full((8, 8), 70, np.uint8)).save(dark)  # mean 0.27, as the data
    Image.new("RGB", (8, 8), (250, 240, 230)).save(white)  # a bright colour photo
    sure = _Logits([9.0, 0.0, 0.0, 0.0])
    (fine,) = predict(sure, [dark], info)
    assert fine.hint is None and str(fine).endswith("%")
    p = torch.tensor([9.0, 0, 0, 0]).softmax(0)
    assert fine.entropy == pytest.approx(float(-(p * p.log()).sum() / np.log(4)), abs=1e-6)
    (odd,) = predict(sure, [white], info)
    # read as grey: (0.299·250 + 0.587·240 + 0.114·230) / 255 = 0.948
    assert odd.hint == "unlike the training images: pixel mean 0.95 vs 0.29"
    (unsure,) = predict(_Logits([0.0, 0.0, 0.0, 0.0]), [dark], info)
    assert unsure.entropy == pytest.approx(1.0)
    assert unsure.hint == "uncertain: entropy 100 % of the maximum"
    assert unsure.to_dict()["hint"] == unsure.hint and str(unsure).endswith(f"[{unsure.hint}]")


def test_viz_runs_again_on_its_run_but_never_writes_into_another_runs_figures(
    run, tmp_path, capsys
):
    import shutil

    mine = tmp_path / "mine"
    shutil.copytree(run, mine)
    other = tmp_path / "other"
    shutil.copytree(run, other)
    argv = ["viz", "--checkpoint", str(mine), "--images", "2"]
    assert main(argv) == 0
    assert main(argv) == 0  # its viz/ holds lambda.png, named like a run file: still its own
    assert main(["viz", "--checkpoint", str(other), "--images", "2"]) == 0
    assert main([*argv, "--out", str(other / "viz")]) == 2
    assert f"would overwrite a file of the run in {other}" in capsys.readouterr().err

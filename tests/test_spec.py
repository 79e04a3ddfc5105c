"""AttentionSpec: one declaration reaches every layer; contradictions are refused."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest
import torch
import torchvision
from torch import nn

from _helpers import TINY_TRAIN_FLAGS
from preattn import AttentionSpec, ResidualBlock, lambdas, retrofit
from preattn.cli import main
from preattn.models import SimpleCNN, create_model, resnet18
from preattn.train import TrainConfig

# a value other than the default for every field: each must arrive where it was sent
NON_DEFAULT = {
    "placement": "branch",
    "attention": "se",
    "attention_kwargs": {"reduction": 4},
    "lam": 0.25,
    "lam_param": "linear",
    "lam_shape": "channel",
    "lam_learnable": False,
    "lam_warmup_steps": 7,
}


def test_every_field_has_a_non_default_probe():
    assert set(NON_DEFAULT) == set(AttentionSpec.names())
    default = AttentionSpec()
    for name, value in NON_DEFAULT.items():
        assert getattr(default, name) != value, name


def _blocks(model: nn.Module) -> list[ResidualBlock]:
    return [m for m in model.modules() if isinstance(m, ResidualBlock) and m.attention is not None]


def _assert_built_from(block: ResidualBlock, spec: AttentionSpec) -> None:
    """What the module holds, read off its parts (not off its spec attribute)."""
    assert block.placement == spec.placement
    fc1 = block.attention.fc1  # SE with reduction 4: hidden = C // 4
    assert fc1.out_channels == fc1.in_channels // 4
    assert block.mix.param == "linear" and block.mix.warmup_steps == 7
    assert "lam" in dict(block.mix.named_buffers())  # fixed λ is a buffer
    channels = block.in_ch if spec.placement == "pre" else block.out_ch
    assert block.mix.lam.shape == (channels,)  # one λ per channel
    assert block.mix.lam.tolist() == pytest.approx([0.25] * channels)


@pytest.mark.parametrize(
    "build",
    [
        lambda **kw: ResidualBlock(8, 8, **kw),
        lambda **kw: SimpleCNN(num_classes=3, in_chans=1, **kw),
        lambda **kw: resnet18(num_classes=3, stem="cifar", **kw),
        lambda **kw: create_model("resnet50", num_classes=3, image_size=32, **kw),
        lambda **kw: retrofit(torchvision.models.resnet18(num_classes=3), **kw),
    ],
    ids=["block", "simplecnn", "resnet18", "create_model", "retrofit"],
)
def test_each_field_reaches_every_builder(build):
    spec = AttentionSpec(**NON_DEFAULT)
    for model in (build(**NON_DEFAULT), build(spec=spec)):
        blocks = _blocks(model)
        assert blocks
        for block in blocks:
            _assert_built_from(block, spec)


def test_each_field_reaches_the_cli_yaml_and_train_config(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    train_help = capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["summary", "--help"])
    summary_help = capsys.readouterr().out
    for name, value in NON_DEFAULT.items():
        flag = "--" + name.replace("_", "-")
        assert flag in train_help and flag in summary_help, flag
        config = TrainConfig(**{name: value})
        assert getattr(config.spec, name) == value
        assert config.to_dict()[name] == value
        path = tmp_path / f"{name}.yaml"
        path.write_text(config.to_yaml())
        assert getattr(TrainConfig.from_yaml(path).spec, name) == value


def test_summary_cli_builds_the_spec_from_its_flags(capsys):
    argv = ["summary", "--model", "simplecnn", "--input-size", "1,28,28", "--num-classes", "10"]
    assert main([*argv, "--attention", "se", "--lam-param", "linear", "--lam", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "attention=se" in out and "λ=0.3 (linear, learnable)" in out
    assert "block1  " in out and "0.3000" in out


def test_block_keywords_stay_the_convenient_surface():
    block = ResidualBlock(4, 8, 2, placement="branch", lam=None)
    assert block.spec == AttentionSpec(placement="branch", lam=None)
    assert block.mix is None and block.attention is not None
    # keywords apply on top of a given spec
    on_top = ResidualBlock(4, 8, spec=AttentionSpec(attention="eca"), placement="skip")
    assert on_top.spec.attention == "eca" and on_top.spec.placement == "skip"


def test_retrofit_starts_from_lambda_zero_and_accepts_warmup():
    model = retrofit(torchvision.models.resnet18(), lam_warmup_steps=5, stages=(4,))
    blocks = _blocks(model)
    assert len(blocks) == 2
    for block in blocks:
        assert block.spec.lam == 0.0 and block.spec.lam_param == "linear"
        assert block.mix.warmup_steps == 5
    assert lambdas(model) == {"layer4.0": 0.0, "layer4.1": 0.0}


@pytest.mark.parametrize(
    "options,message",
    [
        ({"lam": None, "lam_warmup_steps": 10}, "lam_warmup_steps=10 needs a λ to ramp"),
        (
            {"lam": 0.0, "lam_learnable": False, "lam_param": "linear"},
            "lam=0 with lam_learnable=False is attention that can never act",
        ),
        ({"lam": 0.0, "lam_learnable": False}, "can never act"),
        ({"lam": 1.5}, r"lam must be a float in \[0, 1\], got 1.5"),
        ({"lam": float("nan")}, r"lam must be a finite number"),
        ({"placement": "middle"}, "placement must be one of"),
        ({"attention": "transformer"}, r"attention must be one of \["),
        ({"lam_param": "tanh"}, "lam_param must be one of"),
        ({"lam_warmup_steps": -1}, "lam_warmup_steps must be an int >= 0"),
    ],
)
def test_invalid_and_contradictory_specs_raise_value_error(options, message):
    with pytest.raises(ValueError, match=message):
        AttentionSpec(**options)


@pytest.mark.parametrize(
    "options,message",
    [
        ({"lam_learnable": "false"}, "lam_learnable must be bool, got 'false'"),
        ({"lam": "0.1"}, "lam must be float, got '0.1'"),
        ({"attention": 3}, "attention must be a str or a callable"),
        ({"attention_kwargs": ["reduction", 4]}, "attention_kwargs must be a mapping"),
    ],
)
def test_wrong_types_raise_type_error_naming_the_field(options, message):
    with pytest.raises(TypeError, match=message):
        AttentionSpec(**options)


def test_documented_meanings():
    # placement none ignores the λ fields (a network's unattended stages use it)
    assert AttentionSpec(placement="none", lam=0.0, lam_learnable=False).has_attention is False
    # lam=None ignores lam_param / lam_learnable: the block has no LambdaMix
    block = ResidualBlock(4, 4, lam=None, lam_param="linear", lam_learnable=False)
    assert block.mix is None


def test_unknown_options_are_refused_everywhere():
    for build in (
        lambda: ResidualBlock(4, 4, lam_init=0.1),
        lambda: SimpleCNN(lam_init=0.1),
        lambda: resnet18(lam_init=0.1),
        lambda: retrofit(torchvision.models.resnet18(), lam_init=0.1),
        lambda: TrainConfig(lam_init=0.1),
    ):
        with pytest.raises(TypeError, match="lam_init"):
            build()


def test_spec_is_frozen_hashable_copyable_and_picklable():
    spec = AttentionSpec(attention_kwargs={"reduction": 8})
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.lam = 0.5  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.attention_kwargs["reduction"] = 4  # type: ignore[index]
    assert hash(spec) == hash(AttentionSpec(attention_kwargs={"reduction": 8}))
    assert copy.deepcopy(spec) == spec and pickle.loads(pickle.dumps(spec)) == spec
    assert spec.replace(lam=0.2).lam == 0.2 and spec.lam == 0.1


def test_attention_name_is_normalised_once():
    assert AttentionSpec(attention="CBAM_Official").attention == "cbam-official"


def test_simplecnn_stages_choose_the_attended_blocks():
    model = SimpleCNN(stages=(2,))
    assert model.block1.attention is None and model.block1.mix is None
    assert model.block2.attention is not None
    assert list(lambdas(model)) == ["block2"]
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_presets_are_named_designs_and_flags_override_them(tmp_path):
    from preattn.spec import PRESETS

    assert AttentionSpec.preset("pattern3") == AttentionSpec()
    depth = AttentionSpec.preset("pattern3-depth")
    assert (depth.placement, depth.attention, depth.lam_param, depth.lam) == (
        "pre",
        "cbam",
        "depth",
        0.5,
    )
    cbam = AttentionSpec.preset("cbam", attention="eca")
    assert (cbam.placement, cbam.lam, cbam.attention) == ("branch", None, "eca")
    with pytest.raises(ValueError, match="preset must be one of"):
        AttentionSpec.preset("pattern4")
    assert set(PRESETS) >= {"pattern3", "pattern3-depth", "cbam", "se-resnet"}
    # on the command line the preset replaces a config file's attention fields, flags win
    config = tmp_path / "c.yaml"
    config.write_text("attention: se\nlam: 0.3\n")
    run = tmp_path / "r"
    flags = ["--config", str(config), "--preset", "pattern3-depth", "--lam", "0.2"]
    assert main(["train", *TINY_TRAIN_FLAGS, *flags, "--out", str(run)]) == 0
    saved = TrainConfig.from_yaml(run / "config.yaml").spec
    assert (saved.attention, saved.lam_param, saved.lam) == ("cbam", "depth", 0.2)

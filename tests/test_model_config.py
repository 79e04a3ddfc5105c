"""ModelConfig: the one type of what shapes a network.

Independent expectations: the networks ``create_model`` builds from the same arguments,
torchvision's ImageNet stem (a 7x7 stride-2 conv and a max-pool), and the command lines'
parsers (every field is a flag of ``train``, ``summary`` and ``check``)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from preattn import AttentionSpec
from preattn.cli import build_parser
from preattn.models import ModelConfig, create_model
from preattn.train import TrainConfig

DATA = SimpleNamespace(num_classes=7, in_chans=3, image_size=32)


def _flags(command: str) -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a.choices, dict))
    return {o for a in sub.choices[command]._actions for o in a.option_strings}


def test_build_is_create_model_with_the_same_arguments():
    config = ModelConfig.from_flat(
        {"model": "resnet18", "width": 0.25, "stages": [3], "placement": "pre", "lam": 0.3}
    )
    torch.manual_seed(0)
    built = config.validate().build(DATA).eval()
    torch.manual_seed(0)
    expected = create_model(
        "resnet18",
        image_size=32,
        num_classes=7,
        in_chans=3,
        width=0.25,
        stages=[3],
        spec=AttentionSpec(placement="pre", lam=0.3),
    ).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(built(x), expected(x))


def test_an_explicit_stem_overrides_the_one_the_image_size_picks():
    small = ModelConfig(model="resnet18", width=0.125).build(DATA)
    imagenet = ModelConfig(model="resnet18", width=0.125, stem="imagenet").build(DATA)
    assert small.conv1.kernel_size == (3, 3) and not isinstance(small.maxpool, nn.MaxPool2d)
    assert imagenet.conv1.kernel_size == (7, 7) and imagenet.conv1.stride == (2, 2)
    assert isinstance(imagenet.maxpool, nn.MaxPool2d)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"model": "simplecnn", "stem": "cifar"}, "stem applies to"),
        ({"model": "resnet18", "dw_attention": "se"}, "dw_attention applies to"),
        ({"width": 0.0}, "width must be a finite number > 0, got 0.0"),
        ({"width": 9.0}, "width must be at most 8.0, got 9.0"),
        ({"model": "resnet18", "stages": [5]}, "stages must be a subset of [1, 2, 3, 4]"),
        ({"stem": "tiny", "model": "resnet18"}, "stem must be one of"),
    ],
)
def test_validate_names_the_option_the_expected_and_the_given_value(values, message):
    with pytest.raises(ValueError) as error:
        ModelConfig.from_flat(values).validate()
    assert message in str(error.value)


def test_it_is_frozen_and_refuses_unknown_keys():
    config = ModelConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.width = 2.0  # type: ignore[misc]
    with pytest.raises(TypeError, match="unknown model option"):
        ModelConfig.from_flat({"epochs": 3})


def test_a_training_configuration_holds_its_model_section_and_reads_it_flat():
    flat = {"model": "mobilenet_v2", "width": 0.5, "dw_attention": "se", "placement": "post"}
    config = TrainConfig(**flat, epochs=3)
    assert config.network == ModelConfig.from_flat(flat)
    assert (config.model, config.width, config.spec.placement) == ("mobilenet_v2", 0.5, "post")
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert set(ModelConfig.keys()) <= set(config.to_dict())


def test_no_option_that_shapes_the_network_may_change_on_resume():
    assert TrainConfig.resumable()
    assert not set(TrainConfig.resumable()) & set(ModelConfig.keys())


@pytest.mark.parametrize("command", ["train", "summary", "check"])
def test_every_field_is_a_flag_of_the_commands_that_build_a_network(command):
    names = ModelConfig.keys()
    wanted = {"--" + name.replace("_", "-") for name in names}
    assert wanted <= _flags(command)


def test_a_network_registered_by_its_builder_is_in_timm_and_create_model():
    """The one registry: the timm name comes from the builder's declaration."""
    import timm

    import preattn.timm as preattn_timm
    from preattn.models.registry import MODELS

    assert set(preattn_timm.MODEL_NAMES) == {e.timm_name for e in MODELS.values()}
    for name, entry in MODELS.items():
        assert preattn_timm.timm_name(name) == entry.timm_name
        assert timm.is_model(entry.timm_name)

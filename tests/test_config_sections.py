"""TrainConfig as sections: every flat key belongs to one section, a resume may change the
runtime section (and epochs) only, each section checks its own options, and the flat form
(config.yaml, flags) is the same as it was."""

import copy
import dataclasses
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from preattn.models import ModelConfig
from preattn.spec import AttentionSpec
from preattn.train import TrainConfig
from preattn.train.rundir import fixed_changes
from preattn.train.sections import ComputeConfig, DataConfig, OptimConfig, RuntimeConfig

SECTIONS = {
    "data": DataConfig,
    "network": ModelConfig,
    "optim": OptimConfig,
    "compute": ComputeConfig,
    "runtime": RuntimeConfig,
}
# the flat keys of a run's config.yaml before the sections (a run written then must read back)
KEYS_BEFORE_SECTIONS = [
    "dataset",
    "data_dir",
    "model",
    "width",
    "stages",
    "stem",
    "dw_attention",
    "dw_attention_kwargs",
    "epochs",
    "batch_size",
    "lr",
    "optimizer",
    "momentum",
    "weight_decay",
    "lam_lr_scale",
    "label_smoothing",
    "warmup_epochs",
    "limit_train",
    "limit_test",
    "image_size",
    "canvas",
    "train_corrupt",
    "eval_corrupt",
    "seed",
    "out",
    "device",
    "amp",
    "channels_last",
    "compile",
    "sync_bn",
    "device_data",
    "deterministic",
    "eval_every",
    "workers",
    "plots",
    "placement",
    "attention",
    "attention_kwargs",
    "lam",
    "lam_param",
    "lam_shape",
    "lam_learnable",
    "lam_warmup_steps",
]


def test_the_sections_are_the_five_declared_types():
    assert {f.name: type(getattr(TrainConfig(), f.name)) for f in TrainConfig.sections()} == (
        SECTIONS
    )


def test_every_flat_key_belongs_to_exactly_one_section():
    per_section = [key for kind in SECTIONS.values() for key in kind.keys()]  # noqa: SIM118 (a class method)
    assert len(per_section) == len(set(per_section))
    assert sorted(per_section) == sorted(TrainConfig.keys())
    # the keys added since, each with a default that keeps the earlier behaviour
    assert set(TrainConfig.keys()) - set(KEYS_BEFORE_SECTIONS) == {"holdout", "test_flip"}
    assert TrainConfig().holdout == 0 and TrainConfig().test_flip is False


def test_flat_keys_reach_their_section_and_read_through():
    config = TrainConfig(lr=0.05, dataset="fashion-mnist", amp="bf16", out="r", placement="pre")
    assert config.optim.lr == config.lr == 0.05
    assert config.data.dataset == config.dataset == "fashion-mnist"
    assert config.compute.amp == config.amp == "bf16"
    assert config.runtime.out == config.out == "r"
    assert config.network.spec.placement == config.placement == config.spec.placement == "pre"
    for key, value in config.to_dict().items():
        assert getattr(config, key) == value, key
    with pytest.raises(AttributeError, match="no attribute 'learning_rate'"):
        _ = config.learning_rate


def test_a_section_given_whole_takes_flat_keys_on_top():
    optim = OptimConfig(lr=0.05, epochs=7)
    config = TrainConfig(optim=optim, epochs=3, model="resnet18")
    assert (config.optim.lr, config.optim.epochs, config.model) == (0.05, 3, "resnet18")
    assert dataclasses.replace(config, runtime=RuntimeConfig(device="cpu")).device == "cpu"
    assert dataclasses.replace(config, runtime=RuntimeConfig(device="cpu")).lr == 0.05


def test_a_resume_may_change_the_runtime_section_and_epochs_only():
    resumable = set(TrainConfig.resumable())
    assert resumable == set(RuntimeConfig.keys()) | {"epochs"}
    fixed = set(TrainConfig.keys()) - resumable
    for kind in (DataConfig, ModelConfig, ComputeConfig):
        assert set(kind.keys()) <= fixed
    assert {"lr", "seed", "batch_size", "amp", "channels_last", "device_data"} <= fixed


@pytest.mark.parametrize(
    ("section", "options", "message"),
    [
        (DataConfig, {"limit_train": 0}, "limit_train"),
        (DataConfig, {"canvas": {"patches": 2}}, "canvas applies to cluttered"),
        (OptimConfig, {"lr": 0.0}, "lr must be a finite number > 0"),
        (OptimConfig, {"seed": 2**32}, "seed must be an int in"),
        (OptimConfig, {"momentum": 1.0}, r"momentum must be in \[0, 1\)"),
        (ComputeConfig, {"amp": "fp8"}, "amp"),
        (RuntimeConfig, {"workers": -1}, "workers"),
        (RuntimeConfig, {"device": "nonsense:x"}, "device must be"),
    ],
)
def test_each_section_checks_its_own_options(section, options, message):
    with pytest.raises((TypeError, ValueError), match=message):
        section(**options).validate()
    # and the whole configuration reports the same, from its flat keys
    with pytest.raises((TypeError, ValueError), match=message):
        TrainConfig(**options).validate()


def test_a_section_of_the_wrong_type_is_refused_naming_it():
    config = TrainConfig()
    object.__setattr__(config, "optim", DataConfig())
    with pytest.raises(TypeError, match="optim must be a OptimConfig, got DataConfig"):
        config.validate()


def test_a_config_written_before_the_sections_reads_back_the_same():
    """tests/golden/config-before-sections.yaml: written by the configuration before the
    sections; it reads back to the same options, and writes back the same values."""
    path = Path(__file__).parent / "golden" / "config-before-sections.yaml"
    written = yaml.safe_load(path.read_text())
    assert list(written) == KEYS_BEFORE_SECTIONS
    read = TrainConfig.from_yaml(path).validate()
    assert (read.dataset, read.stages, read.train_corrupt, read.lam, read.seed) == (
        "cluttered-fashion-mnist",
        [1, 2],
        ["noise:0.2"],
        0.5,
        7,
    )
    assert {k: read.to_dict()[k] for k in KEYS_BEFORE_SECTIONS} == written
    assert read.holdout == 0  # a key added since reads as its default
    assert not fixed_changes(TrainConfig.from_dict(read.to_dict()), read)


def test_a_configuration_is_frozen_and_survives_copies():
    config = TrainConfig(lr=0.02, placement="pre", holdout=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = 0.9
    assert pickle.loads(pickle.dumps(config)) == config
    assert copy.deepcopy(config) == config
    assert not hasattr(object.__new__(TrainConfig), "lr")


def test_a_spec_given_with_a_whole_network_section_is_applied():
    branch = AttentionSpec(placement="branch", lam=None)
    config = TrainConfig(spec=branch, network=ModelConfig(model="resnet18"))
    assert config.spec == branch and config.model == "resnet18"
    replaced = dataclasses.replace(TrainConfig(placement="pre", width=0.5), spec=branch)
    assert replaced.spec == branch and replaced.width == 0.5
    # flat attention keys still apply on top of the spec
    assert TrainConfig(spec=branch, network=ModelConfig(), lam=0.3).spec.lam == 0.3
    # and the other sections' flat keys beside a whole network section
    config = TrainConfig(network=ModelConfig(model="resnet18"), lr=0.2, amp="bf16", out="r")
    assert (config.model, config.lr, config.amp, config.out) == ("resnet18", 0.2, "bf16", "r")


def test_train_help_groups_the_flags_by_section():
    text = subprocess.run(
        [sys.executable, "-m", "preattn", "train", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    headings = [
        "data (DataConfig)",
        "network (ModelConfig)",
        "optimisation (OptimConfig)",
        "computation, fixed for a run (ComputeConfig)",
        "runtime, a resume may change these (RuntimeConfig)",
    ]
    positions = [text.index(h + ":") for h in headings]
    assert positions == sorted(positions)
    runtime = text[positions[-1] :]
    assert "--device" in runtime and "--lr" not in runtime

"""One contract battery over the registries, as timm's ``tests/test_models.py`` runs one
over every registered model: network x attention x placement.

Each case must: give the documented output shape; pass gradient to every parameter; trace
with torch.fx to a graph computing what eager computes (train and eval); round-trip its
state dict through safetensors; script with TorchScript; export with ``torch.export`` and
a dynamic batch; and come back identical from a run directory through the one
construction path (``preattn.train.load_model``).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.export import Dim, export

from _helpers import assert_fx_trace_equals_eager
from preattn import PLACEMENTS, attention_names
from preattn.data.registry import DATASET_SPECS
from preattn.models.factory import create_model, model_names
from preattn.train import TrainConfig, build_model, load_model
from preattn.train.rundir import RunDir

SIZE = 8
# small widths keep every network a few thousand parameters; stages with attention in each
NETWORKS = {
    "simplecnn": {"width": 0.25},
    "resnet18": {"width": 0.125, "stages": [1, 2, 3, 4]},
    "resnet34": {"width": 0.125, "stages": [1, 4]},
    "resnet50": {"width": 0.125, "stages": [1, 2, 3, 4]},
    "resnet101": {"width": 0.0625, "stages": [3]},
    "resnet152": {"width": 0.0625, "stages": [3]},
    "mobilenet_v2": {"width": 0.25, "stages": [1, 2, 3, 4, 5]},
    "mobilenet_v3_small": {"width": 0.25, "stages": [1, 2, 3, 4]},
    "mobilenet_v3_large": {"width": 0.25, "stages": [1, 5]},
}
# every network with CBAM in every placement; SimpleCNN, ResNet-50 and MobileNetV2 with
# every attention
ALL_ATTENTIONS = ("simplecnn", "resnet50", "mobilenet_v2")
CASES = sorted(
    {(m, "cbam", p) for m in NETWORKS for p in PLACEMENTS}
    | {(m, a, p) for m in ALL_ATTENTIONS for a in attention_names() for p in PLACEMENTS}
)
# `make test` runs these cases (and the costlier contracts on FAST only); `make test-slow`
# every case
CHEAP = (
    {c for c in CASES if c[0] == "simplecnn"}
    | {(m, "cbam", p) for m in ("resnet18", "resnet50", "mobilenet_v2") for p in PLACEMENTS}
    | {(m, "cbam", "pre") for m in ("mobilenet_v3_small", "mobilenet_v3_large")}
    | {("mobilenet_v2", "coord", p) for p in PLACEMENTS}
)
FAST = (
    {("simplecnn", a, "pre") for a in attention_names()}
    | {("resnet18", "cbam", p) for p in PLACEMENTS}
    | {(m, "cbam", "pre") for m in ("mobilenet_v2", "mobilenet_v3_small")}
    | {("mobilenet_v2", "coord", "pre")}
)


def _ids(case: tuple[str, str, str]) -> str:
    return "-".join(case)


def _params(cases, fast=CHEAP):
    out = []
    for case in cases:
        slow = case not in fast
        out.append(pytest.param(case, id=_ids(case), marks=pytest.mark.slow if slow else ()))
    return out


def _config(case: tuple[str, str, str]) -> TrainConfig:
    name, attention, placement = case
    lam = None if attention == "spatial" else 0.3  # controlled and uncontrolled both
    return TrainConfig(
        dataset="synthetic",
        image_size=SIZE,
        model=name,
        attention=attention,
        placement=placement,
        lam=lam,
        **NETWORKS[name],
    )


def _build(case: tuple[str, str, str], seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = _config(case)
    return build_model(config, DATASET_SPECS["synthetic"].info(SIZE))


def _input(batch: int = 2, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1)).to(dtype)


def test_the_battery_covers_every_registered_network_attention_and_placement():
    assert {c[0] for c in CASES} == set(model_names())
    assert {c[1] for c in CASES} == set(attention_names())
    assert {c[2] for c in CASES} == set(PLACEMENTS)


@pytest.mark.parametrize("case", _params(CASES))
def test_forward_shape_and_backward_to_every_parameter(case):
    model = _build(case).train()
    out = model(_input())
    assert out.shape == (2, 6)  # the synthetic set's six classes
    out.square().sum().backward()
    # reached: every parameter gets a finite gradient (a dead ReLU may make one all zero)
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    features = model.forward_features(_input())
    assert features.ndim == 4 and features.shape[1] == model.num_features


@pytest.mark.parametrize("case", _params(CASES))
def test_fx_trace_equals_eager_in_train_and_eval(case):
    # float64: train-mode BatchNorm over a 2-image batch magnifies rounding differences
    assert_fx_trace_equals_eager(_build(case).double(), _input(dtype=torch.float64))


@pytest.mark.parametrize("case", _params(CASES))
def test_state_dict_round_trip_through_safetensors(case, tmp_path):
    model = _build(case, seed=0).eval()
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    other = _build(case, seed=1).eval()
    other.load_state_dict(load_file(str(path)))
    torch.testing.assert_close(other(_input()), model(_input()), atol=0, rtol=0)


@pytest.mark.parametrize("case", _params(CASES))
def test_a_saved_run_comes_back_through_the_one_construction_path(case, tmp_path):
    model = _build(case).eval()
    run = RunDir(tmp_path / "run")
    config = _config(case)
    run.path.mkdir()
    run.write_config(config.replace(out=str(run.path)), [], DATASET_SPECS["synthetic"].info(SIZE))
    run.commit(model, {}, epoch=1)
    loaded = load_model(run.path)
    torch.testing.assert_close(loaded.model.eval()(_input()), model(_input()), atol=0, rtol=0)
    direct = create_model(case[0], image_size=SIZE, num_classes=6, in_chans=3, spec=config.spec)
    assert type(direct) is type(loaded.model)


@pytest.mark.parametrize("case", _params(CASES, FAST))
def test_torchscript_equals_eager(case):
    model = _build(case).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated
        scripted = torch.jit.script(model)
    torch.testing.assert_close(scripted(_input()), model(_input()), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("case", _params(CASES, FAST))
def test_torch_export_with_a_dynamic_batch(case):
    model = _build(case).eval()
    program = export(model, (_input(),), dynamic_shapes={"x": {0: Dim("b")}})
    x = _input(batch=5)
    torch.testing.assert_close(program.module()(x), model(x), atol=1e-5, rtol=1e-4)

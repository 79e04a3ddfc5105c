"""One contract battery over the registries, as timm's ``tests/test_models.py`` runs one
over every registered model: network x attention x placement x λ design.

Each case must: give the documented output shape; pass gradient to every parameter; trace
with torch.fx to a graph computing what eager computes (train and eval); round-trip its
state dict through safetensors; script with TorchScript; export with ``torch.export`` and
a dynamic batch; and come back identical from a run directory through the one
construction path (``preattn.train.load_model``). And, as torchvision keeps known outputs,
each registered network (and SimpleCNN with every attention, placement and λ design)
computes the logits frozen in ``tests/golden/logits.json``, on the fast and on the
reference path.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.export import Dim, export

import preattn
from _battery import (
    CLASSES,
    GOLDEN_TOLERANCE,
    LAM_DESIGNS,
    NETWORKS,
    SIZE,
    Case,
    battery_input,
    case_key,
    golden_cases,
    golden_logits,
    golden_model,
    read_golden,
)
from _helpers import assert_fx_trace_equals_eager
from preattn import PLACEMENTS, attention_names
from preattn.data.registry import DATASET_SPECS
from preattn.mixing import LAMBDA_PARAMS, LAMBDA_SHAPES
from preattn.models.factory import create_model, model_names
from preattn.train import TrainConfig, build_model, load_model
from preattn.train.rundir import RunDir


def _base(attention: str) -> str:
    """The λ design of the network x attention x placement cases: the specification's
    (uncontrolled for spatial attention alone, so that every network has both)."""
    return "uncontrolled" if attention == "spatial" else "sigmoid"


# every network with CBAM in every placement; SimpleCNN, ResNet-50 and MobileNetV2 with
# every attention; every λ design on SimpleCNN (every attention, every placement), ResNet-18,
# ResNet-50, MobileNetV2 and MobileNetV3-small
ALL_ATTENTIONS = ("simplecnn", "resnet50", "mobilenet_v2")
DESIGN_NETWORKS = ("simplecnn", "resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small")
CASES = sorted(
    {(m, "cbam", p, _base("cbam")) for m in NETWORKS for p in PLACEMENTS}
    | {(m, a, p, _base(a)) for m in ALL_ATTENTIONS for a in attention_names() for p in PLACEMENTS}
    | {(m, "cbam", "pre", d) for m in DESIGN_NETWORKS for d in LAM_DESIGNS}
    | {("simplecnn", a, "pre", d) for a in attention_names() for d in LAM_DESIGNS}
    | {("simplecnn", "cbam", p, d) for p in PLACEMENTS for d in LAM_DESIGNS}
)
# `make test` runs these cases (and the costlier contracts on FAST only); `make test-slow`
# every case
CHEAP = (
    {c for c in CASES if c[0] == "simplecnn" and c[3] == _base(c[1])}
    | {
        (m, "cbam", p, "sigmoid")
        for m in ("resnet18", "resnet50", "mobilenet_v2")
        for p in PLACEMENTS
    }
    | {(m, "cbam", "pre", "sigmoid") for m in ("mobilenet_v3_small", "mobilenet_v3_large")}
    | {("mobilenet_v2", "coord", p, "sigmoid") for p in PLACEMENTS}
    | {("simplecnn", "cbam", "pre", d) for d in LAM_DESIGNS}
    | {("simplecnn", a, "pre", "channel") for a in attention_names()}
)
FAST = (
    {("simplecnn", a, "pre", _base(a)) for a in attention_names()}
    | {("resnet18", "cbam", p, "sigmoid") for p in PLACEMENTS}
    | {(m, "cbam", "pre", "sigmoid") for m in ("mobilenet_v2", "mobilenet_v3_small")}
    | {("mobilenet_v2", "coord", "pre", "sigmoid")}
    | {("simplecnn", "cbam", "pre", d) for d in LAM_DESIGNS}
)


def _ids(case: Case) -> str:
    return "-".join(case)


def _params(cases, fast=CHEAP):
    out = []
    for case in cases:
        slow = case not in fast
        out.append(pytest.param(case, id=_ids(case), marks=pytest.mark.slow if slow else ()))
    return out


def _config(case: Case) -> TrainConfig:
    name, attention, placement, design = case
    return TrainConfig(
        dataset="synthetic",
        image_size=SIZE,
        model=name,
        attention=attention,
        placement=placement,
        **LAM_DESIGNS[design],
        **NETWORKS[name],
    )


def _build(case: Case, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = _config(case)
    return build_model(config, DATASET_SPECS["synthetic"].info(SIZE))


def _input(batch: int = 2, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return battery_input(batch, dtype)


def test_the_battery_covers_every_registered_network_attention_placement_and_lambda_design():
    assert {c[0] for c in CASES} == set(model_names())
    assert {c[1] for c in CASES} == set(attention_names())
    assert {c[2] for c in CASES} == set(PLACEMENTS)
    specs = [TrainConfig(**LAM_DESIGNS[c[3]]).spec for c in CASES]
    assert {s.lam_param for s in specs if s.lam is not None} == set(LAMBDA_PARAMS)
    assert {s.lam_shape for s in specs if s.lam is not None} == set(LAMBDA_SHAPES)
    assert {s.lam_learnable for s in specs if s.lam is not None} == {True, False}
    assert {s.lam_warmup_steps > 0 for s in specs if s.lam is not None} == {True, False}
    assert any(s.lam is None for s in specs)
    # the cases `make test` runs have every design too
    assert {c[3] for c in CASES if c in CHEAP} == set(LAM_DESIGNS)


@pytest.mark.parametrize("case", _params(CASES))
def test_forward_shape_and_backward_to_every_parameter(case):
    model = _build(case).train()
    out = model(_input())
    assert out.shape == (2, CLASSES)  # the synthetic set's six classes
    out.square().sum().backward()
    # reached: every parameter gets a finite gradient (a dead ReLU may make one all zero)
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    features = model.forward_features(_input())
    assert features.ndim == 4 and features.shape[1] == model.num_features


def _warmup_counters(model: torch.nn.Module) -> dict[str, int]:
    return {n: int(m.warmup_step) for n, m in model.named_modules() if hasattr(m, "warmup_step")}


@pytest.mark.parametrize("case", _params(CASES))
def test_fx_trace_equals_eager_in_train_and_eval(case):
    # float64: train-mode BatchNorm over a 2-image batch magnifies rounding differences
    model = _build(case).double()
    counters = _warmup_counters(model)
    if counters:  # torch.fx would freeze λ_eff mid-warm-up: refused, and nothing moved
        with pytest.raises(RuntimeError, match="cannot trace a λ warm-up in training mode"):
            torch.fx.symbolic_trace(model.train())
        assert _warmup_counters(model) == counters
        for module in model.modules():  # past the warm-up, a training trace is exact
            if hasattr(module, "warmup_step"):
                module.warmup_step.fill_(module.warmup_steps)
    assert_fx_trace_equals_eager(model, _input(dtype=torch.float64))


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
    direct = create_model(
        case[0], image_size=SIZE, num_classes=CLASSES, in_chans=3, spec=config.spec
    )
    assert type(direct) is type(loaded.model)


@pytest.mark.parametrize("case", _params(CASES, FAST))
def test_torchscript_equals_eager(case):
    model = _build(case).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated
        scripted = torch.jit.script(model)
    # refused by the scripted block (placement none has no λ, so nothing to refuse)
    if LAM_DESIGNS[case[3]].get("lam_param") == "depth" and case[2] != "none":
        with pytest.raises(torch.jit.Error, match="is not supported in TorchScript"):
            scripted(_input())
        return
    torch.testing.assert_close(scripted(_input()), model(_input()), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("case", _params(CASES, FAST))
def test_torch_export_with_a_dynamic_batch(case):
    model = _build(case).eval()
    program = export(model, (_input(),), dynamic_shapes={"x": {0: Dim("b")}})
    x = _input(batch=5)
    torch.testing.assert_close(program.module()(x), model(x), atol=1e-5, rtol=1e-4)


# --- golden logits ---------------------------------------------------------------------------

GOLDEN = read_golden()


def _assert_golden(case: Case, logits: torch.Tensor) -> None:
    """``logits`` are the frozen ones of ``case`` within float32 rounding (absolute tolerance
    :data:`GOLDEN_TOLERANCE` of the largest frozen logit)."""
    expected = torch.tensor(GOLDEN[case_key(case)])
    atol = GOLDEN_TOLERANCE * float(expected.abs().max())
    torch.testing.assert_close(logits, expected, atol=atol, rtol=0, msg=case_key(case))


def test_every_registered_network_has_golden_logits():
    assert set(GOLDEN) == {case_key(c) for c in golden_cases()}
    assert {c[0] for c in golden_cases()} == set(model_names())


@pytest.mark.parametrize("case", golden_cases(), ids=case_key)
def test_logits_equal_the_golden_ones_on_the_fast_and_the_reference_path(case):
    """Eager float32 on the CPU at a fixed seed (``tests/golden/make_logits.py`` says when
    the file may be regenerated)."""
    model = golden_model(case)
    _assert_golden(case, golden_logits(model))
    with preattn.fast_attention(False):
        _assert_golden(case, golden_logits(model))


@pytest.mark.parametrize(
    "case", [c for c in golden_cases() if c[2] != "none" and c[1] == "cbam"], ids=case_key
)
def test_the_golden_test_fails_when_one_attention_weight_changes(case):
    """The comparison above is not blind: the centre tap of the spatial 7x7 convolution of
    the first CBAM (the last weight of that module), moved by 0.5, puts the logits outside
    the tolerance."""
    model = golden_model(case)
    first = next(n for n, _ in model.named_parameters() if ".attention." in n)
    prefix = first[: first.index(".attention.") + len(".attention.")]
    weight = [p for n, p in model.named_parameters() if n.startswith(prefix)][-1]
    assert weight.shape[-2:] == (7, 7)
    with torch.no_grad():
        weight[0, 0, 3, 3] += 0.5
    with pytest.raises(AssertionError):
        _assert_golden(case, golden_logits(model))

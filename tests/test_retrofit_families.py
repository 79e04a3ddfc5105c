"""retrofit() beyond ResNets: torchvision's and timm's MobileNets, EfficientNet, RegNet and
ConvNeXt keep their function at λ = 0, their checkpoints and their tooling (fx, export,
TorchScript, feature extraction)."""

from __future__ import annotations

import warnings

import pytest
import timm
import torch
import torchvision
from torch import nn
from torch.export import Dim, export
from torchvision.models.feature_extraction import create_feature_extractor

from _helpers import assert_fx_trace_equals_eager, randomise_batchnorm
from preattn import ResidualBlock, lambdas, retrofit

# the network, and its number of residual-style blocks by the architecture's own tables
FAMILIES = {
    "tv-mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(num_classes=10), 17),
    "tv-mobilenet_v3_small": (lambda: torchvision.models.mobilenet_v3_small(num_classes=10), 11),
    "tv-mobilenet_v3_large": (lambda: torchvision.models.mobilenet_v3_large(num_classes=10), 15),
    "tv-efficientnet_b0": (lambda: torchvision.models.efficientnet_b0(num_classes=10), 16),
    "tv-regnet_y_400mf": (lambda: torchvision.models.regnet_y_400mf(num_classes=10), 16),
    "tv-convnext_tiny": (lambda: torchvision.models.convnext_tiny(num_classes=10), 18),
    "timm-mobilenetv2_100": (lambda: timm.create_model("mobilenetv2_100", num_classes=10), 17),
    "timm-mobilenetv3_small_100": (
        lambda: timm.create_model("mobilenetv3_small_100", num_classes=10),
        11,
    ),
    "timm-efficientnet_b0": (lambda: timm.create_model("efficientnet_b0", num_classes=10), 16),
    "timm-regnety_004": (lambda: timm.create_model("regnety_004", num_classes=10), 16),
}
HEAVY = {"tv-convnext_tiny", "tv-mobilenet_v3_large", "tv-regnet_y_400mf"}


def _families(placements=("pre",), light_only_fast=True):
    out = []
    for name in FAMILIES:
        for placement in placements:
            slow = name in HEAVY or (light_only_fast and placement not in ("pre", "skip"))
            marks = pytest.mark.slow if slow else ()
            out.append(pytest.param(name, placement, id=f"{name}-{placement}", marks=marks))
    return out


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    build, _ = FAMILIES[name]
    model = build().eval()
    # stochastic depth and dropout off: the comparisons run in train mode too
    return randomise_batchnorm(model)


def _input(batch: int = 2, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(batch, 3, 64, 64, generator=torch.Generator().manual_seed(1)).to(dtype)


@pytest.mark.parametrize(("name", "placement"), _families(("pre", "branch", "post", "skip")))
def test_zero_lambda_keeps_the_function_and_every_weight(name, placement):
    model = _model(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        expected = model(_input())
    retrofit(model, placement=placement)
    converted = [m for m in model.modules() if isinstance(m, ResidualBlock)]
    residual = [b for b in converted if b.skip is not None]
    if placement == "skip":  # blocks without a residual are left as they were
        assert len(converted) == len(residual) < FAMILIES[name][1] or name.endswith(
            ("regnet_y_400mf", "convnext_tiny", "regnety_004")
        )
    else:
        assert len(converted) == FAMILIES[name][1]
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(_input()), expected, atol=1e-5, rtol=1e-4)
    # the original names and values are all there; only attention and λ are new
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    new = set(after) - set(before)
    assert new and all(".attention." in k or ".mix." in k for k in new)


@pytest.mark.parametrize(("name", "placement"), _families())
def test_original_checkpoints_load_and_own_ones_load_strictly(name, placement):
    original = FAMILIES[name][0]()
    model = retrofit(FAMILIES[name][0](), placement=placement)
    result = model.load_state_dict(original.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and all(
        ".attention." in k or ".mix." in k for k in result.missing_keys
    )
    other = retrofit(FAMILIES[name][0](), placement=placement)
    other.load_state_dict(model.state_dict())  # strict
    for (key, a), b in zip(model.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), key


@pytest.mark.parametrize(("name", "placement"), _families())
def test_fx_trace_equals_eager(name, placement):
    model = retrofit(_model(name), placement=placement, lam=0.3).double()
    assert_fx_trace_equals_eager(model, _input(dtype=torch.float64))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FAMILIES))
def test_torch_export_with_a_dynamic_batch(name):
    model = retrofit(_model(name), lam=0.3).eval()
    program = export(model, (_input(),), dynamic_shapes={"x": {0: Dim("b")}})
    x = _input(batch=3)
    torch.testing.assert_close(program.module()(x), model(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "name",
    [
        n
        if n in ("tv-mobilenet_v2", "tv-efficientnet_b0", "timm-mobilenetv2_100")
        else pytest.param(n, marks=pytest.mark.slow)
        for n in FAMILIES
    ],
)
def test_torchscript_equals_eager(name):
    model = retrofit(_model(name), lam=0.3).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated
        scripted = torch.jit.script(model)
    with torch.no_grad():
        expected = model(_input())
    # TorchScript runs the attention as plain products (eager: fused autograd Functions):
    # the same numbers up to rounding, relative to outputs of magnitude ~20 here
    scale = float(expected.abs().max())
    torch.testing.assert_close(scripted(_input()), expected, atol=1e-5 * scale, rtol=1e-4)


def test_feature_extraction_keeps_working():
    model = retrofit(_model("tv-mobilenet_v2"), lam=0.3).eval()
    extractor = create_feature_extractor(model, {"features.13": "c4", "features.18": "c5"})
    out = extractor(_input())
    assert out["c4"].shape == (2, 96, 4, 4) and out["c5"].shape == (2, 1280, 2, 2)
    pooled = model.classifier(out["c5"].mean(dim=(2, 3)))
    torch.testing.assert_close(pooled, model(_input()), atol=1e-5, rtol=1e-4)
    torch.manual_seed(0)
    features = timm.create_model("mobilenetv2_100", features_only=True).eval()
    with torch.no_grad():
        expected = features(_input())
    retrofit(features)
    with torch.no_grad():
        for got, want in zip(features(_input()), expected, strict=True):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["tv-mobilenet_v3_small", "timm-efficientnet_b0"])
def test_one_training_step_moves_lambda(name):
    model = retrofit(_model(name)).train()
    assert set(lambdas(model).values()) == {0.0}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    nn.functional.cross_entropy(model(_input(4)), torch.tensor([0, 1, 2, 3])).backward()
    opt.step()
    assert sum(v != 0.0 for v in lambdas(model).values()) > len(lambdas(model)) // 2


def test_a_part_of_a_network_can_be_converted():
    model = torchvision.models.mobilenet_v2()
    retrofit(model, within=[f"features.{i}" for i in (14, 15, 16, 17)])
    converted = [n for n, m in model.named_modules() if isinstance(m, ResidualBlock)]
    assert converted == ["features.14", "features.15", "features.16", "features.17"]
    model = timm.create_model("efficientnet_b0")
    retrofit(model, within=["blocks.6"])
    assert model.preattn_retrofitted == ["blocks.6.0"]
    with pytest.raises(ValueError, match=r"within names \['blocks.9'\], which EfficientNet has no"):
        retrofit(model, within=["blocks.9"])
    with pytest.raises(TypeError, match="within must be a list"):
        retrofit(model, within="blocks.5")


class _MyBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return x + self.conv(x)


def test_an_unsupported_network_is_refused_naming_its_block_types():
    with pytest.raises(
        ValueError, match=r"in Sequential \(it holds .*test_retrofit_families._MyBlock\)"
    ):
        retrofit(nn.Sequential(_MyBlock(), _MyBlock()))


def test_a_network_with_its_own_se_is_told_and_can_replace_it(caplog):
    model = timm.create_model("seresnet18")
    with caplog.at_level("WARNING", logger="preattn"):
        retrofit(model)
    assert "8 converted blocks have attention of their own inside F (layer1.0.se" in caplog.text
    assert sum(type(m).__name__ == "SEModule" for m in model.modules()) == 8  # kept, stacked
    original = timm.create_model("seresnet18")
    replaced = retrofit(timm.create_model("seresnet18"), own_attention="replace")
    assert not any(type(m).__name__ == "SEModule" for m in replaced.modules())
    result = replaced.load_state_dict(original.state_dict(), strict=False)
    assert result.unexpected_keys and all(".se." in k for k in result.unexpected_keys)
    v3 = retrofit(torchvision.models.mobilenet_v3_small(), own_attention="replace")
    assert not any(isinstance(m, torchvision.ops.SqueezeExcitation) for m in v3.modules())
    with pytest.raises(ValueError, match=r"own_attention must be one of \['keep', 'replace'\]"):
        retrofit(timm.create_model("resnet18"), own_attention="drop")

"""torch's and torchvision's tooling on retrofitted ResNets (preattn's own networks go
through the contract battery, tests/test_contracts.py)."""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from torch.export import Dim, export
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

from _helpers import assert_fx_trace_equals_eager
from preattn import retrofit
from preattn.models import SimpleCNN, resnet18

PLACEMENTS = ["none", "pre", "branch", "post", "skip"]


# preattn's own networks: every attention and placement in tests/test_contracts.py (fx,
# torch.export, TorchScript); here the retrofitted torchvision and timm networks


@pytest.mark.parametrize(
    "build",
    [
        lambda: retrofit(torchvision.models.resnet18()),
        lambda: retrofit(timm.create_model("resnet18"), placement="branch", lam=0.3),
        lambda: resnet18(stem="cifar"),
    ],
    ids=["torchvision", "timm", "preattn"],
)
def test_feature_extraction_through_fx(build):
    model = build().eval()
    train_nodes, eval_nodes = get_graph_node_names(model)
    assert "layer4" in {n.split(".")[0] for n in train_nodes + eval_nodes}
    extractor = create_feature_extractor(model, {"layer3": "c4", "layer4": "c5"})
    x = torch.randn(1, 3, 64, 64)
    out = extractor(x)
    assert out["c5"].shape[1] == 512 and out["c4"].shape[1] == 256
    # the extractor's layer4 is what the model's head pools
    pooled = model.fc(out["c5"].mean(dim=(2, 3)))
    torch.testing.assert_close(pooled, model(x), atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_torch_export_of_a_retrofitted_resnet():
    model = retrofit(torchvision.models.resnet18(), lam=0.2).eval()
    program = export(model, (torch.randn(2, 3, 32, 32),), dynamic_shapes={"x": {0: Dim("b")}})
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(program.module()(x), model(x), atol=1e-5, rtol=1e-4)


def test_eager_input_errors_stay_clear():
    with pytest.raises(ValueError, match=r"SimpleCNN expects input of shape \(N, 3, H, W\)"):
        SimpleCNN(in_chans=3)(torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"ResNet expects input of shape \(N, 3, H, W\)"):
        resnet18()(torch.randn(3, 8, 8))


@pytest.mark.parametrize(
    "build",
    [
        lambda a: retrofit(torchvision.models.resnet18(), attention=a, lam=0.3),
        lambda a: retrofit(timm.create_model("resnet18"), attention=a, placement="branch"),
        lambda a: SimpleCNN(in_chans=3, attention=a, lam_param="linear", lam_warmup_steps=3),
    ],
    ids=["torchvision-retrofit", "timm-retrofit", "simplecnn-warmup"],
)
@pytest.mark.parametrize("attention", ["cbam", "se", "eca", "spatial"])
def test_torch_jit_script_equals_eager(build, attention):
    """TorchScript (deprecated upstream, still deployed): a retrofitted model scripts as
    the original did, and so do preattn's own networks."""
    import warnings

    model = build(attention).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated
        scripted = torch.jit.script(model)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(scripted(x), model(x), atol=1e-5, rtol=1e-4)
    # scripting leaves the eager model as it was
    assert model(x).shape == scripted(x).shape


@pytest.mark.parametrize(
    "build",
    [lambda: torchvision.models.resnet18(), lambda: timm.create_model("resnet18")],
    ids=["torchvision", "timm"],
)
def test_retrofitted_resnets_trace_in_train_and_eval(build):
    torch.manual_seed(0)
    model = retrofit(build(), placement="pre", lam=0.3, stages=(3, 4)).double()
    assert_fx_trace_equals_eager(model, torch.randn(2, 3, 32, 32, dtype=torch.float64))

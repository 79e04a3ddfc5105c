"""retrofit() on torchvision and timm ResNets: exact equivalence at λ = 0, λ learns."""

from __future__ import annotations

import logging

import pytest
import timm
import torch
import torchvision
from torch import nn

from _helpers import randomise_batchnorm
from preattn import ResidualBlock, lambdas, retrofit
from preattn.models import resnet18 as preattn_resnet18

BUILDERS = {
    "torchvision-resnet18": lambda: torchvision.models.resnet18(num_classes=10),
    "torchvision-resnet50": lambda: torchvision.models.resnet50(num_classes=10),
    "timm-resnet18": lambda: timm.create_model("resnet18", num_classes=10),
    "timm-resnet50": lambda: timm.create_model("resnet50", num_classes=10),
}


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("placement", ["pre", "branch", "post", "skip"])
def test_zero_lambda_keeps_outputs(name, placement):
    torch.manual_seed(0)
    model = BUILDERS[name]().eval()
    randomise_batchnorm(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 64, 64)
    expected = model(x)
    retrofit(model, placement=placement)
    model.eval()
    torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)
    blocks = [m for m in model.modules() if isinstance(m, ResidualBlock)]
    assert len(blocks) == (8 if name.endswith("18") else 16)
    # every original weight is still there (same values), under the block's new names
    after = list(model.state_dict().values())
    for key, value in before.items():
        assert any(v.shape == value.shape and torch.equal(v, value) for v in after), key


@pytest.mark.parametrize("name", ["torchvision-resnet18", "timm-resnet50"])
def test_one_training_step_moves_lambda(name):
    torch.manual_seed(1)
    model = BUILDERS[name]()
    # timm zero-initialises each branch's last BN: F then outputs 0 and pre attention gets
    # no gradient until that BN moves. Pretrained weights are never zero there; emulate them.
    randomise_batchnorm(model)
    model = retrofit(model)
    assert set(lambdas(model).values()) == {0.0}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    assert any(v != 0.0 for v in lambdas(model).values())


def test_stages_and_logging(caplog):
    model = torchvision.models.resnet18()
    with caplog.at_level(logging.INFO, logger="preattn"):
        retrofit(model, stages=(3, 4), lam=0.2, lam_param="sigmoid")
    assert model.preattn_retrofitted == ["layer3.0", "layer3.1", "layer4.0", "layer4.1"]
    assert "4 blocks converted" in caplog.text
    assert isinstance(model.layer1[0], torchvision.models.resnet.BasicBlock)
    assert lambdas(model) == pytest.approx({n: 0.2 for n in model.preattn_retrofitted})


def test_unsupported_models_are_rejected_with_the_supported_list():
    with pytest.raises(
        ValueError,
        match=r"no supported residual block in Sequential; supported "
        r"block types are \['torchvision.models.resnet.BasicBlock'",
    ):
        retrofit(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()))
    with pytest.raises(ValueError, match="no supported residual block"):
        retrofit(preattn_resnet18())  # already preattn blocks
    with pytest.raises(ValueError, match=r"stages must be a subset"):
        retrofit(torchvision.models.resnet18(), stages=(5,))
    with pytest.raises(ValueError, match="got 'none'"):
        retrofit(torchvision.models.resnet18(), placement="none")


class _OwnBlock(nn.Module):
    """A user's residual block that retrofit does not know: y = relu(x + bn(conv(x)))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.bn(self.conv(x)))


def test_the_no_supported_block_error_points_to_both_routes_for_your_own_network():
    """The hint's two routes work: a declared layout converts the user's block exactly
    (λ = 0 keeps its outputs), and ResidualBlock takes the user's transform."""
    from preattn import BlockLayout, register_block_layout, unregister_block_layout

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), _OwnBlock(8)).eval()
    with pytest.raises(ValueError) as caught:
        retrofit(model)
    message = str(caught.value)
    assert "preattn.ResidualBlock(in_ch, out_ch, stride, transform=" in message
    assert "preattn.register_block_layout (docs/retrofit.md)" in message
    register_block_layout(_OwnBlock, BlockLayout(("conv", "bn"), act="act"))
    try:
        x = torch.randn(2, 3, 8, 8)
        expected = model(x)
        retrofit(model)
        assert isinstance(model[1], ResidualBlock)
        torch.testing.assert_close(model.eval()(x), expected)
    finally:
        unregister_block_layout(_OwnBlock)
    own = ResidualBlock(8, 8, transform=lambda i, o, s: nn.Conv2d(i, o, 3, s, padding=1))
    assert own(torch.randn(1, 8, 4, 4)).shape == (1, 8, 4, 4)


def test_retrofit_in_several_calls_records_every_block_and_refuses_a_second_conversion():
    model = torchvision.models.resnet18()
    retrofit(model, stages=[1, 2])
    retrofit(model, stages=[4])
    assert model.preattn_retrofitted == [
        "layer1.0",
        "layer1.1",
        "layer2.0",
        "layer2.1",
        "layer4.0",
        "layer4.1",
    ]
    assert isinstance(model.layer3[0], torchvision.models.resnet.BasicBlock)
    with pytest.raises(ValueError, match=r"layer1.0, layer1.1 already converted"):
        retrofit(model, stages=[1, 3])
    assert isinstance(model.layer3[0], torchvision.models.resnet.BasicBlock)  # nothing done
    with pytest.raises(ValueError, match=r"layer1.0, .*layer4.1 already converted"):
        retrofit(model)

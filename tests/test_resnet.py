"""ResNet builders: torchvision parameter counts, CBAM Table 4, every placement runs."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from preattn import PLACEMENTS, ResidualBlock
from preattn.models import create_model, resnet18, resnet34, resnet50, resnet101, resnet152

BUILDERS = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "resnet152": resnet152,
}


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "name",
    [
        "resnet18",
        "resnet34",
        "resnet50",
        pytest.param("resnet101", marks=pytest.mark.slow),
        pytest.param("resnet152", marks=pytest.mark.slow),
    ],
)
def test_plain_resnet_matches_torchvision_parameter_count(name):
    ours = BUILDERS[name](placement="none")
    theirs = getattr(torchvision.models, name)()
    assert _params(ours) == _params(theirs)
    # same tensor shapes in the same order, name for name up to the block layout
    assert [p.shape for p in ours.parameters()] == [p.shape for p in theirs.parameters()]


def test_published_counts():
    assert _params(resnet18(placement="none")) == 11_689_512
    assert _params(resnet50(placement="none")) == 25_557_032


@pytest.mark.parametrize(
    "name,millions",
    [("resnet18", 11.78), ("resnet34", 21.96), ("resnet50", 28.09), ("resnet101", 49.33)],
)
def test_cbam_paper_table4_parameter_counts(name, millions):
    """Woo et al. 2018, Table 4: ResNet + CBAM (official module, after the branch)."""
    model = BUILDERS[name](
        placement="branch", attention="cbam-official", lam=None, stages=(1, 2, 3, 4)
    )
    assert round(_params(model) / 1e6, 2) == millions


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_every_parameter_learns_in_every_placement(name, placement):
    """Basic and bottleneck ResNets: one backward reaches every parameter with a non-zero
    gradient (attention and λ of all four stages included)."""
    torch.manual_seed(0)
    model = BUILDERS[name](num_classes=3, stem="cifar", placement=placement, stages=(1, 2, 3, 4))
    x = torch.randn(2, 3, 16, 16)
    y = model(x)
    assert y.shape == (2, 3)
    nn.functional.cross_entropy(y, torch.tensor([0, 2])).backward()
    silent = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert silent == []


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet101", "resnet152"])
def test_deep_builders_run_forward_and_backward(name):
    model = BUILDERS[name](num_classes=10, stem="cifar", placement="pre", stages=(3, 4))
    y = model(torch.randn(2, 3, 16, 16))
    assert y.shape == (2, 10)
    y.sum().backward()
    assert model.layer4[0].mix.logit.grad is not None


def test_default_stages_skip_the_first_stage():
    model = resnet18(placement="pre")
    attended = {
        n.split(".")[0]
        for n, m in model.named_modules()
        if isinstance(m, ResidualBlock) and m.placement == "pre"
    }
    assert attended == {"layer2", "layer3", "layer4"}
    assert all(
        m.placement == "none" for m in model.layer1.modules() if isinstance(m, ResidualBlock)
    )


def test_stems_and_input_channels():
    assert resnet18(stem="cifar", in_chans=1).forward_features(torch.randn(1, 1, 32, 32)).shape == (
        1,
        512,
        4,
        4,
    )
    assert resnet50(stem="imagenet").forward_features(torch.randn(1, 3, 64, 64)).shape == (
        1,
        2048,
        2,
        2,
    )


def test_zero_init_last_and_pre_attention_still_learns():
    torch.manual_seed(1)
    model = resnet18(num_classes=4, stem="cifar", zero_init_last=True, stages=(4,))
    block = model.layer4[1]
    assert torch.count_nonzero(block.transform.bn2.weight) == 0
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, target = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    for _ in range(2):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), target).backward()
        opt.step()
    assert block.attention.channel.fc1.weight.grad.abs().sum() > 0
    assert block.mix.logit.grad.abs() > 0


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: create_model("resnet9"), r"model must be one of \['simplecnn', 'resnet18'"),
        (
            lambda: resnet18(stages=(0, 2)),
            r"stages must be a subset of \[1, 2, 3, 4\] \(no repeats\), got "
            r"\[0, 2\]",
        ),
        (lambda: resnet18(stem="tiny"), r"stem must be one of \['imagenet', 'cifar'\]"),
        (lambda: resnet18(placement="everywhere"), "placement must be one of"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_wrong_input_channels():
    with pytest.raises(
        ValueError,
        match=r"expects input of shape \(N, 3, H, W\), got "
        r"\(1, 1, 32, 32\)",
    ):
        resnet18()(torch.randn(1, 1, 32, 32))

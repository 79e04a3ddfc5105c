"""Light backbones: the inverted-residual transform, coordinate attention and the
MobileNets, against torchvision's networks, the coordinate-attention paper's published
counts and formulas written out by hand."""

from __future__ import annotations

import functools

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models._utils import _make_divisible
from torchvision.ops import SqueezeExcitation

from _helpers import randomise_batchnorm
from preattn import (
    SE,
    CoordAttention,
    InvertedResidualTransform,
    ResidualBlock,
    attention_maps,
    check,
    summary,
)
from preattn.attention import make_divisible
from preattn.models import create_model, mobilenet_v2, mobilenet_v3_large, mobilenet_v3_small

PAIRS = {
    "mobilenet_v2": (mobilenet_v2, torchvision.models.mobilenet_v2),
    "mobilenet_v3_small": (mobilenet_v3_small, torchvision.models.mobilenet_v3_small),
    "mobilenet_v3_large": (mobilenet_v3_large, torchvision.models.mobilenet_v3_large),
}


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", PAIRS)
@pytest.mark.parametrize("width", [0.35, 0.5, 1.0, 1.4])
def test_parameter_count_equals_torchvision(name, width):
    ours, theirs = PAIRS[name]
    assert _count(ours(width_mult=width, placement="none")) == _count(theirs(width_mult=width))


@pytest.mark.parametrize("name", PAIRS)
def test_with_torchvision_weights_it_computes_torchvision_function(name):
    ours, theirs = PAIRS[name]
    torch.manual_seed(0)
    reference = randomise_batchnorm(theirs()).eval()
    model = ours(placement="none").eval()
    mine, given = model.state_dict(), reference.state_dict()
    assert [v.shape for v in mine.values()] == [v.shape for v in given.values()]
    model.load_state_dict(dict(zip(mine, given.values(), strict=True)))
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("dw_attention", "options", "published"),
    [
        (None, {}, 3.50),
        ("se", {"reduction": 24}, 3.89),
        ("cbam-official", {"reduction": 24}, 3.89),
        ("coord", {"reduction": 32}, 3.95),
    ],
)
def test_counts_in_the_coordinate_attention_papers_position(dw_attention, options, published):
    # Hou et al. 2021, table 3: MobileNetV2-1.0 with SE, CBAM, CA after the depthwise conv
    model = mobilenet_v2(placement="none", dw_attention=dw_attention, dw_attention_kwargs=options)
    assert round(_count(model) / 1e6, 2) == published


def test_make_divisible_is_torchvisions_rounding():
    for value in [x / 4 for x in range(1, 6000)]:
        assert make_divisible(value) == _make_divisible(value, 8), value


def test_mobilenet_v3_se_is_torchvisions_squeeze_excitation():
    ours = SE(96, reduction=4, divisor=8, gate="hardsigmoid")
    theirs = SqueezeExcitation(96, _make_divisible(96 // 4, 8), scale_activation=nn.Hardsigmoid)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 96, 5, 5)
    torch.testing.assert_close(ours(x), theirs(x))


class _PaperCoordAtt(nn.Module):
    """The coordinate attention paper's released module, rebuilt (Hou et al. 2021)."""

    def __init__(self, channels: int, reduction: int = 32) -> None:
        super().__init__()
        hidden = max(8, channels // reduction)
        self.conv1 = nn.Conv2d(channels, hidden, 1)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.act = nn.Hardswish()
        self.conv_h = nn.Conv2d(hidden, channels, 1)
        self.conv_w = nn.Conv2d(hidden, channels, 1)

    def forward(self, x):
        h, w = x.shape[2:]
        x_h = nn.AdaptiveAvgPool2d((None, 1))(x)
        x_w = nn.AdaptiveAvgPool2d((1, None))(x).permute(0, 1, 3, 2)
        y = self.act(self.bn1(self.conv1(torch.cat([x_h, x_w], dim=2))))
        x_h, x_w = torch.split(y, [h, w], dim=2)
        a_h = self.conv_h(x_h).sigmoid()
        a_w = self.conv_w(x_w.permute(0, 1, 3, 2)).sigmoid()
        return x * a_w * a_h


@pytest.mark.parametrize("training", [True, False])
def test_coordinate_attention_is_the_papers_module(training):
    torch.manual_seed(0)
    ours = randomise_batchnorm(CoordAttention(64)).train(training)
    paper = _PaperCoordAtt(64).train(training)
    paper.load_state_dict(ours.state_dict())
    x = torch.randn(3, 64, 6, 9)
    torch.testing.assert_close(ours(x), paper(x))


def test_coordinate_attention_gate_written_out():
    torch.manual_seed(0)
    attention = randomise_batchnorm(CoordAttention(16, reduction=4, min_hidden=2)).eval()
    x = torch.randn(2, 16, 3, 5)
    w1, b1 = attention.conv1.weight[:, :, 0, 0], attention.conv1.bias
    bn = attention.bn1
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)

    def shared(z):  # z: (B, C) pooled descriptor -> (B, hidden)
        v = (z @ w1.T + b1 - bn.running_mean) * scale + bn.bias
        return v * torch.clamp(v + 3, 0, 6) / 6  # hard-swish

    gate = torch.empty_like(x)
    for i in range(3):
        for j in range(5):
            f_h, f_w = shared(x[:, :, i, :].mean(-1)), shared(x[:, :, :, j].mean(-1))
            a_h = torch.sigmoid(f_h @ attention.conv_h.weight[:, :, 0, 0].T + attention.conv_h.bias)
            a_w = torch.sigmoid(f_w @ attention.conv_w.weight[:, :, 0, 0].T + attention.conv_w.bias)
            gate[:, :, i, j] = a_h * a_w
    with torch.no_grad():
        torch.testing.assert_close(attention.gate(x), gate)
        torch.testing.assert_close(attention(x), x * gate)


def _inverted(**options):
    return functools.partial(InvertedResidualTransform, **options)


def test_an_inverted_residual_block_adds_its_input_only_where_shapes_match():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 6)
    same = randomise_batchnorm(ResidualBlock(8, 8, 1, transform="inverted", placement="none"))
    strided = randomise_batchnorm(ResidualBlock(8, 8, 2, transform="inverted", placement="none"))
    wider = randomise_batchnorm(ResidualBlock(8, 16, 1, transform="inverted", placement="none"))
    for block in (same, strided, wider):
        block.eval()
    with torch.no_grad():
        # a linear bottleneck: no activation after the sum, none without a residual
        torch.testing.assert_close(same(x), x + same.transform(x))
        torch.testing.assert_close(strided(x), strided.transform(x))
        torch.testing.assert_close(wider(x), wider.transform(x))
    assert same.skip is not None and strided.skip is None and wider.skip is None


def test_the_inverted_transform_is_expand_depthwise_project():
    torch.manual_seed(0)
    transform = randomise_batchnorm(InvertedResidualTransform(4, 6, 2, expand_ratio=3)).eval()
    x = torch.randn(2, 4, 7, 7)
    e, d, p = transform.expand, transform.depthwise, transform.project
    assert e[0].out_channels == 12 and d[0].groups == 12 and d[0].stride == (2, 2)
    relu6 = functools.partial(torch.clamp, min=0, max=6)
    expanded = relu6(e[1](nn.functional.conv2d(x, e[0].weight)))
    depthwise = relu6(
        d[1](nn.functional.conv2d(expanded, d[0].weight, stride=2, padding=1, groups=12))
    )
    expected = p[1](nn.functional.conv2d(depthwise, p[0].weight))
    with torch.no_grad():
        torch.testing.assert_close(transform(x), expected)
    assert isinstance(InvertedResidualTransform(4, 6, expand_ratio=1).expand, nn.Identity)


@pytest.mark.parametrize("stride", [1, 2])
def test_pre_attention_on_an_inverted_block_at_lambda_zero_is_the_plain_block(stride):
    torch.manual_seed(0)
    plain = ResidualBlock(8, 8, stride, transform="inverted", placement="none")
    pre = ResidualBlock(8, 8, stride, transform="inverted", lam=0.0, lam_param="linear")
    pre.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(2, 8, 6, 6)
    plain.eval(), pre.eval()
    with torch.no_grad():
        torch.testing.assert_close(pre(x), plain(x), atol=0, rtol=0)


def test_skip_placement_needs_a_residual():
    with pytest.raises(ValueError, match=r"placement 'skip' needs a residual connection.*stride=2"):
        ResidualBlock(8, 8, 2, transform="inverted", placement="skip")
    model = mobilenet_v2(width_mult=0.25, placement="skip", stages=[1, 2, 3, 4, 5])
    placements = {
        b.placement for b in model.modules() if isinstance(b, ResidualBlock) and b.skip is None
    }
    assert placements == {"none"}  # the blocks without residual get no attention


@pytest.mark.parametrize("name", PAIRS)
@pytest.mark.parametrize("size", [32, 224])
def test_feature_levels_are_what_the_network_computes(name, size):
    model = create_model(name, image_size=size, width=0.25, num_classes=3).eval()
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        final, levels = model.forward_intermediates(x)
    # five levels, as timm's features_only expects: V3-small's stem is one (its first
    # block already halves the stem's resolution)
    assert len(levels) == len(model.feature_info) == 5
    for level, info in zip(levels, model.feature_info, strict=True):
        assert level.shape[1:] == (
            info["num_chs"],
            size // info["reduction"],
            size // info["reduction"],
        )
    assert final.shape[1] == model.num_features
    # the small-image stem ends a 32-pixel image at 4×4, not 1×1
    assert model.feature_info[-1]["reduction"] == (8 if size == 32 else 32)


def test_mobilenet_v3_head_has_its_hidden_layer():
    model = mobilenet_v3_small(num_classes=7)
    assert (model.num_features, model.head_hidden_size) == (576, 1024)
    x = torch.randn(2, 3, 64, 64)
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, 1024)
    model.reset_classifier(0)
    assert model(x).shape == (2, 1024)
    model.reset_classifier(0, "")
    assert model(x).shape[1] == 576  # unpooled maps: no hidden layer


def test_stages_choose_the_attended_layers():
    model = mobilenet_v2(width_mult=0.5, stages=[2, 5])
    attended = {
        name.split(".")[0]
        for name, m in model.named_modules()
        if isinstance(m, ResidualBlock) and m.attention is not None
    }
    assert attended == {"layer2", "layer5"}
    with pytest.raises(ValueError, match="stages"):
        mobilenet_v3_small(stages=[5])  # V3-small has four layers
    with pytest.raises(ValueError, match="width_mult or width"):
        mobilenet_v2(width_mult=0.5, width=0.5)


@pytest.mark.parametrize("placement", ["pre", "branch", "post"])
def test_maps_of_a_block_without_residual_are_of_the_tensor_its_attention_acts_on(placement):
    torch.manual_seed(0)
    block = ResidualBlock(8, 16, 2, transform="inverted", placement=placement, lam=0.5)
    model = nn.Sequential(randomise_batchnorm(block)).eval()
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        z = x if placement == "pre" else block.transform(x)  # post: y = F(x), no residual
        channel = block.attention.channel.gate(z).flatten(1)  # CBAM's channel gate on it
    maps = attention_maps(model, x)["0"]
    assert maps.input_size == tuple(z.shape[-2:])
    torch.testing.assert_close(maps.channel, channel)


def test_check_and_summary_read_mobilenets():
    model = mobilenet_v2(width_mult=0.35, stem="cifar", num_classes=10, stages=[1, 2, 3, 4, 5])
    findings = check(model, input_size=(3, 32, 32))
    assert not [f for f in findings if f.severity == "error"]
    assert any("no residual connection" in f.message for f in findings)
    report = summary(model, input_size=(3, 32, 32))
    plain = summary(
        mobilenet_v2(width_mult=0.35, stem="cifar", num_classes=10, placement="none"),
        input_size=(3, 32, 32),
    )
    assert report.params - plain.params == report.attention_params > 0
    assert report.macs - plain.macs == report.attention_macs > 0


def test_dw_attention_is_a_training_option_of_the_mobilenets_only():
    from preattn.data.registry import DATASET_SPECS
    from preattn.train import TrainConfig, build_model

    config = TrainConfig(
        model="mobilenet_v2", width=0.25, dw_attention="coord", dw_attention_kwargs={"reduction": 4}
    ).validate()
    model = build_model(config, DATASET_SPECS["synthetic"].info(32))
    assert all(isinstance(t.dw_attention, CoordAttention) for t in _transforms(model))
    plain = TrainConfig(model="mobilenet_v3_small", width=0.25, dw_attention="none").validate()
    model = build_model(plain, DATASET_SPECS["synthetic"].info(32))
    assert all(isinstance(t.dw_attention, nn.Identity) for t in _transforms(model))
    with pytest.raises(ValueError, match=r"dw_attention applies to .*got model 'simplecnn'"):
        TrainConfig(dw_attention="se").validate()
    with pytest.raises(ValueError, match=r"dw_attention must be 'default', 'none' or one of"):
        TrainConfig(model="mobilenet_v2", dw_attention="sse").validate()
    with pytest.raises(ValueError, match=r"stages must be a subset of \[1, 2, 3, 4\]"):
        TrainConfig(model="mobilenet_v3_small", stages=[5]).validate()


def _transforms(model: nn.Module) -> list[InvertedResidualTransform]:
    return [m for m in model.modules() if isinstance(m, InvertedResidualTransform)]


def test_summary_command_reads_the_depthwise_position(capsys):
    from preattn.cli import main

    assert (
        main(
            ["summary", "--model", "mobilenet_v2", "--placement", "none", "--dw-attention", "coord"]
        )
        == 0
    )
    assert "3,951,504" in capsys.readouterr().out  # CA in the paper's position: 3.95M
    assert main(["summary", "--model", "resnet18", "--dw-attention", "se"]) == 2
    error = capsys.readouterr().err
    assert "dw_attention applies to the networks with depthwise blocks" in error
    assert "got model 'resnet18'" in error

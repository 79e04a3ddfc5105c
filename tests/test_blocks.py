"""ResidualBlock: every placement against its formula, identities, gradients, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from _helpers import randomise_batchnorm
from _reference import bn_eval, channel_by_hand, spatial_by_hand
from preattn import PLACEMENTS, ResidualBlock
from preattn.blocks import BasicTransform, BottleneckTransform

ATTENDED = [p for p in PLACEMENTS if p != "none"]


def _f_basic(x, t: BasicTransform, stride):
    h = torch.relu(bn_eval(F.conv2d(x, t.conv1.weight, stride=stride, padding=1), t.bn1))
    return bn_eval(F.conv2d(h, t.conv2.weight, padding=1), t.bn2)


def _skip(x, block: ResidualBlock):
    if isinstance(block.skip, nn.Identity):
        return x
    conv, bn = block.skip[0], block.skip[1]
    return bn_eval(F.conv2d(x, conv.weight, stride=block.stride), bn)


def _cbam(x, a):
    """Notebook CBAM written out from its weights."""
    x = x * channel_by_hand(a.channel, x)
    return x * spatial_by_hand(a.spatial, x, ("mean", "max"))


def _expected(block: ResidualBlock, x, lam):
    def attend(z):
        a = _cbam(z, block.attention)
        return a if lam is None else (1 - lam) * z + lam * a

    p = block.placement
    s = _skip(x, block)
    if p == "pre":
        return torch.relu(s + _f_basic(attend(x), block.transform, block.stride))
    f = _f_basic(x, block.transform, block.stride)
    if p == "none":
        return torch.relu(s + f)
    if p == "branch":
        return torch.relu(s + attend(f))
    if p == "skip":
        return torch.relu(attend(s) + f)
    assert p == "post"
    return attend(torch.relu(s + f))


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("lam", [None, 0.3])
@pytest.mark.parametrize("in_ch,out_ch,stride", [(8, 8, 1), (8, 16, 2)])
def test_placement_matches_formula(placement, lam, in_ch, out_ch, stride):
    torch.manual_seed(0)
    block = ResidualBlock(in_ch, out_ch, stride, placement=placement, lam=lam).eval()
    randomise_batchnorm(block)
    x = torch.randn(2, in_ch, 8, 8)
    lam_value = None if block.mix is None else block.mix.value()
    torch.testing.assert_close(block(x), _expected(block, x, lam_value), atol=1e-5, rtol=1e-5)


def test_pre_attention_acts_on_input_channels_and_resolution():
    block = ResidualBlock(16, 32, stride=2, placement="pre")
    seen = []
    block.attention.spatial.conv.register_forward_hook(
        lambda m, i, o: seen.append(tuple(i[0].shape))
    )
    block(torch.randn(1, 16, 10, 10))
    assert seen == [(1, 2, 10, 10)]  # spatial attention at the input resolution
    assert block.attention.channel.fc1.in_channels == 16  # channel attention on in_ch
    for placement in ("branch", "post", "skip"):
        b = ResidualBlock(16, 32, stride=2, placement=placement)
        assert b.attention.channel.fc2.out_channels == 32


@pytest.mark.parametrize("placement", ATTENDED)
@pytest.mark.parametrize("transform", ["basic", "bottleneck"])
def test_linear_zero_lambda_equals_plain_block(placement, transform):
    torch.manual_seed(1)
    plain = ResidualBlock(16, 32, 2, placement="none", transform=transform).eval()
    randomise_batchnorm(plain)
    controlled = ResidualBlock(
        16, 32, 2, placement=placement, transform=transform, lam=0.0, lam_param="linear"
    ).eval()
    missing, unexpected = controlled.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(("attention.", "mix.")) for k in missing)
    x = torch.randn(3, 16, 8, 8)
    assert torch.equal(controlled(x), plain(x))


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("lam_param", ["sigmoid", "linear"])
def test_gradients_reach_every_parameter(placement, lam_param):
    torch.manual_seed(2)
    block = ResidualBlock(8, 16, 2, placement=placement, lam=0.2, lam_param=lam_param)
    x = torch.randn(2, 8, 8, 8, requires_grad=True)
    block(x).square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in block.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("placement", ATTENDED)
def test_gradcheck_float64(placement):
    torch.manual_seed(3)
    block = ResidualBlock(4, 8, 2, placement=placement, lam=0.4, attention_kwargs={"reduction": 2})
    block = block.double().eval()
    randomise_batchnorm(block)
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(block, (x,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_bottleneck_transform_structure():
    block = ResidualBlock(64, 256, stride=2, transform="bottleneck", placement="pre")
    t = block.transform
    assert isinstance(t, BottleneckTransform)
    assert [c.weight.shape for c in (t.conv1, t.conv2, t.conv3)] == [
        (64, 64, 1, 1),
        (64, 64, 3, 3),
        (256, 64, 1, 1),
    ]
    assert t.conv2.stride == (2, 2) and t.conv1.stride == (1, 1)
    assert block(torch.randn(1, 64, 8, 8)).shape == (1, 256, 4, 4)


def test_skip_projection_only_when_needed():
    assert isinstance(ResidualBlock(8, 8, 1).skip, nn.Identity)
    for args in ((8, 16, 1), (8, 8, 2)):
        skip = ResidualBlock(*args).skip
        assert isinstance(skip[0], nn.Conv2d) and skip[0].kernel_size == (1, 1)
        assert skip[0].bias is None and isinstance(skip[1], nn.BatchNorm2d)


def test_defaults_are_the_notebook_controlled_block():
    block = ResidualBlock(8, 8)
    assert block.placement == "pre"
    assert type(block.attention).__name__ == "CBAM"
    assert isinstance(block.mix.logit, nn.Parameter)
    assert block.mix.value().item() == pytest.approx(0.1)
    assert isinstance(block.transform, BasicTransform)


def test_zero_init_last_starts_at_skip_and_pre_attention_learns_after_a_step():
    torch.manual_seed(4)
    block = ResidualBlock(8, 8, placement="pre", zero_init_last=True)
    x = torch.randn(4, 8, 6, 6)
    assert torch.equal(block(x), torch.relu(x))
    opt = torch.optim.SGD(block.parameters(), lr=0.1)
    block(x).square().mean().backward()
    # step 1: F outputs 0, so nothing before the last BN (attention included) gets gradient
    assert block.attention.channel.fc1.weight.grad.abs().sum() == 0
    assert block.transform.bn2.weight.grad.abs().sum() > 0
    opt.step()
    opt.zero_grad()
    block(x).square().mean().backward()
    assert block.attention.channel.fc1.weight.grad.abs().sum() > 0
    assert block.mix.logit.grad.abs() > 0


def test_bf16_autocast_is_finite():
    torch.manual_seed(5)
    block = ResidualBlock(16, 32, 2)
    x = torch.randn(2, 16, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = block(x)
    assert torch.isfinite(y.float()).all()
    torch.testing.assert_close(y.float(), block(x), atol=0.1, rtol=0.05)


@pytest.mark.parametrize("attention", ["cbam", "se"])
def test_no_graph_breaks_in_training_mode(attention):
    """The lean autograd Functions, the warm-up counter and the input check trace as one graph."""
    block = ResidualBlock(8, 16, 2, attention=attention, lam_warmup_steps=5).train()
    x = torch.randn(2, 8, 8, 8, requires_grad=True)
    explanation = torch._dynamo.explain(block)(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_torch_compile_fullgraph_matches_eager():
    torch.manual_seed(6)
    block = ResidualBlock(8, 16, 2, lam_warmup_steps=5).eval()
    compiled = torch.compile(block, backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 8, 8, 8)
    torch.testing.assert_close(compiled(x), block(x))


def test_torch_compile_training_gradients_match_eager():
    torch.manual_seed(7)
    eager = ResidualBlock(8, 16, 2).train()
    twin = ResidualBlock(8, 16, 2).train()
    twin.load_state_dict(eager.state_dict())
    compiled = torch.compile(twin, backend="aot_eager", fullgraph=True)
    x = torch.randn(4, 8, 8, 8)
    torch.testing.assert_close(compiled(x), eager(x))
    compiled(x).square().sum().backward()
    eager(x).square().sum().backward()
    for (name, a), b in zip(eager.named_parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (
            {"placement": "middle"},
            r"placement must be one of \['none', 'pre', 'branch', 'post', "
            r"'skip'\], got 'middle'",
        ),
        ({"attention": "transformer"}, r"attention must be one of .*got 'transformer'"),
        (
            {"transform": "wide"},
            r"transform must be one of \['basic', 'bottleneck', 'inverted'\], got 'wide'",
        ),
        ({"lam": 2.0}, r"lam must be a float in \[0, 1\], got 2.0"),
        ({"lam_param": "exp"}, "lam_param must be one of"),
        ({"stride": 0}, "stride must be an int >= 1, got 0"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ResidualBlock(8, 8, **kwargs)
    with pytest.raises(ValueError, match="in_ch must be an int >= 1, got 0"):
        ResidualBlock(0, 8)


def test_wrong_input_names_block_and_expected_shape():
    block = ResidualBlock(16, 32, 2)
    with pytest.raises(
        ValueError,
        match=r"ResidualBlock\(in_ch=16, out_ch=32, stride=2, "
        r"placement='pre'\) expects input of shape "
        r"\(N, 16, H, W\), got \(2, 8, 4, 4\)",
    ):
        block(torch.randn(2, 8, 4, 4))
    with pytest.raises(ValueError, match=r"got \(16, 4, 4\)"):
        block(torch.randn(16, 4, 4))


@settings(max_examples=20, deadline=None)
@given(
    in_ch=st.integers(1, 12),
    out_ch=st.integers(1, 12),
    stride=st.integers(1, 3),
    size=st.integers(3, 10),
    placement=st.sampled_from(PLACEMENTS),
    lam=st.one_of(st.none(), st.floats(0, 1)),
)
def test_any_configuration_gives_the_expected_shape(in_ch, out_ch, stride, size, placement, lam):
    block = ResidualBlock(in_ch, out_ch, stride, placement=placement, lam=lam)
    x = torch.randn(2, in_ch, size, size)
    y = block(x)
    expected = (size - 1) // stride + 1
    assert y.shape == (2, out_ch, expected, expected)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("attention", ["cbam", "cbam-official", "channel", "spatial", "se", "eca"])
def test_half_precision_modules_run_in_their_dtype(dtype, attention):
    """A block converted with .half()/.bfloat16() runs (train and eval) and returns its
    dtype, close to the float32 block on the same weights."""
    torch.manual_seed(0)
    for placement in ATTENDED:
        block = ResidualBlock(8, 16, 2, placement=placement, attention=attention)
        reference = block.eval()
        x = torch.randn(2, 8, 6, 6)
        with torch.no_grad():
            expected = reference(x)
        half = ResidualBlock(8, 16, 2, placement=placement, attention=attention)
        half.load_state_dict(block.state_dict())
        half = half.to(dtype).eval()
        with torch.no_grad():
            y = half(x.to(dtype))
        assert y.dtype == dtype
        torch.testing.assert_close(y.float(), expected, atol=0.1, rtol=0.05)
        half.train()
        xh = x.to(dtype).requires_grad_(True)
        half(xh).float().sum().backward()
        assert xh.grad.dtype == dtype and torch.isfinite(xh.grad).all()


class _SigmoidGate(nn.Module):
    """A user's attention whose output its own backward reads (``sigmoid`` saves it)."""

    def __init__(self, channels: int) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x)


def _sigmoid_transform(in_ch: int, out_ch: int, stride: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, stride, 1), nn.Sigmoid())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"placement": "branch", "attention": _SigmoidGate, "lam": None},
        {"placement": "pre", "transform": _sigmoid_transform},
    ],
)
def test_residual_sum_never_overwrites_a_tensor_backward_needs(kwargs):
    """The residual sum is taken in place only in F's output of the built-in transforms;
    a user's transform or uncontrolled attention whose output is saved still trains, with
    the gradients of the out-of-place sum."""
    torch.manual_seed(0)
    block = ResidualBlock(4, 4, **kwargs)
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    block(x).square().sum().backward()
    assert block.attention is not None
    transform = block.transform
    attended = block._attend(x) if block.placement == "pre" else x
    f = transform(attended)
    if block.placement == "branch":
        f = block._attend(f)
    (expected,) = torch.autograd.grad(torch.relu(x + f).square().sum(), x)
    (actual,) = torch.autograd.grad(block(x).square().sum(), x)
    torch.testing.assert_close(actual, expected)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_block_leaves_its_input_unchanged(placement):
    torch.manual_seed(0)
    block = ResidualBlock(6, 6, placement=placement)
    x = torch.randn(2, 6, 5, 5)
    before = x.clone()
    for mode in (block.train, block.eval):
        mode()
        with torch.no_grad():
            block(x)
        block(x.requires_grad_(True)).sum().backward()
        x = x.detach()
    torch.testing.assert_close(x, before, atol=0, rtol=0)


def test_a_block_from_existing_parts_holds_them_and_computes_what_the_built_one_does():
    torch.manual_seed(0)
    built = ResidualBlock(8, 16, 2, placement="pre").eval()
    made = ResidualBlock.from_parts(
        built.transform,
        in_ch=8,
        out_ch=16,
        stride=2,
        skip=built.skip,
        act=built.act,
        drop_path=built.drop_path,
        placement="pre",
        dtype=torch.float64,
    ).eval()
    assert made.transform is built.transform and made.skip is built.skip  # nothing copied
    assert {p.dtype for p in made.attention.parameters()} == {torch.float64}  # created so
    made.attention.load_state_dict(built.attention.state_dict())
    made.to(torch.float32)
    x = torch.randn(2, 8, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(made(x), built(x))
    with pytest.raises(ValueError, match="placement 'skip' needs a residual connection"):
        ResidualBlock.from_parts(
            built.transform,
            in_ch=8,
            out_ch=16,
            stride=2,
            skip=None,
            act=nn.ReLU(),
            drop_path=nn.Identity(),
            placement="skip",
        )

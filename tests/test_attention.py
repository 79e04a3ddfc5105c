"""Attention modules against formulas written out by hand, over the whole registry."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from _reference import channel_by_hand, mlp_by_hand, spatial_by_hand
from preattn import (
    CBAM,
    ECA,
    SE,
    SpatialAttention,
    attention_names,
    create_attention,
    register_attention,
    unregister_attention,
)
from preattn.attention import eca_kernel_size

REQUIRED = ["cbam", "cbam-official", "channel", "spatial", "se", "eca"]


def test_registry_has_required_names():
    assert set(REQUIRED) <= set(attention_names())


@pytest.mark.parametrize("name", REQUIRED)
def test_registry_modules_keep_shape_and_backprop(name):
    torch.manual_seed(0)
    m = create_attention(name, 32)
    x = torch.randn(2, 32, 7, 5, requires_grad=True)
    y = m(x)
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for pname, p in m.named_parameters():
        assert p.grad is not None, pname
    # every module is x * gate(x) with a mask in (0, 1)
    gate = m.gate(x)
    torch.testing.assert_close(y, x * gate)
    assert ((gate > 0) & (gate < 1)).all()


def test_notebook_cbam_defaults():
    m = CBAM(64)
    assert m.channel.fc1.weight.shape == (4, 64, 1, 1)  # max(64 // 16, 4)
    assert m.channel.fc1.bias is None and m.channel.fc2.bias is None
    assert isinstance(m.spatial.bn, nn.Identity)
    assert m.spatial.conv.weight.shape == (1, 2, 7, 7) and m.spatial.conv.bias is None
    assert m.spatial.pool_order == ("mean", "max")
    assert CBAM(16).channel.fc1.out_channels == 4  # floor of 4 even where C // r = 1


def test_official_cbam_variant():
    m = create_attention("cbam-official", 512)
    assert m.channel.fc1.weight.shape == (32, 512, 1, 1)
    assert m.channel.fc1.bias is not None and m.channel.fc2.bias is not None
    assert isinstance(m.spatial.bn, nn.BatchNorm2d)
    assert m.spatial.pool_order == ("max", "mean")
    # params: MLP 2*C*C/16 + C/16 + C, spatial conv 2*7*7, BN 2
    assert sum(p.numel() for p in m.parameters()) == 2 * 512 * 32 + 32 + 512 + 98 + 2
    # official hidden width has no floor of 4
    assert create_attention("cbam-official", 32).channel.fc1.out_channels == 2


@pytest.mark.parametrize("official", [False, True])
def test_cbam_against_formula(official):
    torch.manual_seed(1)
    m = create_attention("cbam-official" if official else "cbam", 24, reduction=4).eval()
    if official:
        with torch.no_grad():
            m.spatial.bn.running_mean.fill_(0.3)
            m.spatial.bn.running_var.fill_(2.0)
    x = torch.randn(3, 24, 6, 8)
    ca = channel_by_hand(m.channel, x)
    x1 = x * ca
    order = ("max", "mean") if official else ("mean", "max")
    expected = x1 * spatial_by_hand(m.spatial, x1, order)
    torch.testing.assert_close(m(x), expected, atol=1e-6, rtol=1e-5)


def test_pool_order_matters():
    torch.manual_seed(2)
    a = SpatialAttention(8, pool_order=("mean", "max"))
    b = SpatialAttention(8, pool_order=("max", "mean"))
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 8, 5, 5)
    assert not torch.allclose(a(x), b(x))
    with torch.no_grad():
        b.conv.weight.copy_(a.conv.weight.flip(1))  # swapping the input channels undoes it
    torch.testing.assert_close(a(x), b(x))


def test_se_against_formula():
    torch.manual_seed(3)
    m = SE(32, reduction=8)
    x = torch.randn(2, 32, 4, 4)
    z = mlp_by_hand(x.mean((2, 3)), m.fc1.weight, m.fc2.weight, m.fc1.bias, m.fc2.bias)
    torch.testing.assert_close(m(x), x * torch.sigmoid(z)[:, :, None, None])
    assert m.fc1.out_channels == 4


def test_eca_against_formula():
    torch.manual_seed(4)
    m = ECA(64)
    assert m.conv.kernel_size == (3,)  # t = int((6 + 1) / 2) = 3
    x = torch.randn(2, 64, 5, 5)
    w = m.conv.weight.flatten()
    v = F.pad(x.mean((2, 3)), (1, 1))
    z = w[0] * v[:, :-2] + w[1] * v[:, 1:-1] + w[2] * v[:, 2:]
    torch.testing.assert_close(m(x), x * torch.sigmoid(z)[:, :, None, None])


@pytest.mark.parametrize("channels,k", [(64, 3), (256, 5), (512, 5), (2048, 7), (1, 1)])
def test_eca_kernel_size_rule(channels, k):
    t = int(abs((math.log2(channels) + 1) / 2))
    assert eca_kernel_size(channels) == max(t if t % 2 else t + 1, 1) == k


def test_create_attention_accepts_callable_and_kwargs():
    m = create_attention(lambda c: nn.Conv2d(c, c, 1), 5)
    assert isinstance(m, nn.Conv2d) and m.in_channels == 5
    assert create_attention("se", 64, reduction=4).fc1.out_channels == 16
    assert isinstance(create_attention("CBAM", 8), CBAM)


@pytest.fixture
def scratch_registry(monkeypatch):
    """A private copy of the registry: registrations made by a test vanish after it."""
    import preattn.attention as attention_module

    monkeypatch.setattr(attention_module, "_REGISTRY", dict(attention_module._REGISTRY))


def test_register_attention_any_case(scratch_registry):
    register_attention("MyGate", lambda c: SE(c, reduction=2))
    assert "mygate" in attention_names()
    for name in ("MyGate", "mygate", "MYGATE"):
        assert isinstance(create_attention(name, 8), SE)
    unregister_attention("MYGATE")
    assert "mygate" not in attention_names()
    with pytest.raises(KeyError, match="'mygate' is not registered"):
        unregister_attention("mygate")


def test_registering_an_existing_name_needs_overwrite(scratch_registry):
    with pytest.raises(ValueError, match=r"'cbam' is already registered; pass overwrite=True"):
        register_attention("CBAM", lambda c: SE(c))
    assert isinstance(create_attention("cbam", 8), CBAM)
    register_attention("CBAM", lambda c: SE(c), overwrite=True)
    assert isinstance(create_attention("cbam", 8), SE)


def test_scratch_registry_leaves_the_real_one_untouched():
    # runs after the tests above in file order: none of their names is left behind
    assert "mygate" not in attention_names()
    assert isinstance(create_attention("cbam", 8), CBAM)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: create_attention("nope", 8), r"attention must be one of .*'cbam'.*got 'nope'"),
        (lambda: create_attention(3, 8), "attention must be a str or a callable, got int"),
        (lambda: create_attention(lambda c: 1, 8), "must return an nn.Module, got int"),
        (lambda: CBAM(0), "channels must be an int >= 1, got 0"),
        (lambda: CBAM(8, reduction=0), "reduction must be an int >= 1, got 0"),
        (lambda: CBAM(8, spatial_kernel=4), "kernel_size must be an odd int >= 1.*got 4"),
        (lambda: SpatialAttention(8, kernel_size=-3), "kernel_size must be an int >= 1, got -3"),
        (lambda: SpatialAttention(8, pool_order=("mean",)), "pool_order must be"),
        (lambda: ECA(8, kernel_size=2), "kernel_size must be an odd int"),
        (lambda: SE(-1), "channels must be an int >= 1, got -1"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_channels_type_error_names_argument():
    with pytest.raises(TypeError, match=r"channels must be an int >= 1, got 8.0 \(float\)"):
        CBAM(8.0)  # type: ignore[arg-type]


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(REQUIRED),
    batch=st.integers(1, 3),
    channels=st.integers(1, 40),
    height=st.integers(1, 9),
    width=st.integers(1, 9),
)
def test_any_shape_is_preserved(name, batch, channels, height, width):
    m = create_attention(name, channels).train(batch * height * width > 1)
    x = torch.randn(batch, channels, height, width)
    y = m(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    # gates lie in (0, 1): attention never amplifies a value
    assert (y.abs() <= x.abs() + 1e-6).all()

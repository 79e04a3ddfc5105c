"""The memory-lean autograd Functions against plain autograd (amax, products)."""

from __future__ import annotations

import pytest
import torch

from preattn import CBAM
from preattn.lean_autograd import GlobalMax


def test_global_max_gradient_equals_amax_with_ties():
    torch.manual_seed(3)
    x = torch.relu(torch.randn(2, 3, 4, 5, dtype=torch.float64))
    x[0, 0] = 0.7  # a whole channel of ties
    x[1, 2, :2, :2] = 5.0  # four tied maxima
    x.requires_grad_(True)
    weights = torch.randn(2, 3, dtype=torch.float64)
    (lean,) = torch.autograd.grad((GlobalMax.apply(x) * weights).sum(), x)
    (plain,) = torch.autograd.grad((x.amax(dim=(2, 3)) * weights).sum(), x)
    torch.testing.assert_close(GlobalMax.apply(x), x.amax(dim=(2, 3)))
    torch.testing.assert_close(lean, plain, atol=1e-12, rtol=1e-12)
    assert torch.autograd.gradcheck(
        GlobalMax.apply, (torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True),)
    )


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("pool_order", [("mean", "max"), ("max", "mean")])
def test_lean_autograd_gradients_equal_plain_autograd_with_ties(pool_order, memory_format):
    """Post-ReLU inputs tie in the channel max; the lean backward splits like ``amax``.

    Channels-last inputs take the other branch of the (B, C, H·W) row views."""
    torch.manual_seed(2)
    cbam = CBAM(8, reduction=2, pool_order=pool_order).double()
    x = torch.relu(torch.randn(2, 8, 5, 5, dtype=torch.float64))
    x[0, :, 0, 0] = 0.0  # a whole pixel of ties
    x = x.contiguous(memory_format=memory_format).requires_grad_(True)
    assert x.is_contiguous(memory_format=memory_format)
    lam = torch.tensor(0.35, dtype=torch.float64, requires_grad=True)
    lean = cbam.mixed(x, lam)
    plain = (1 - lam) * x + lam * cbam(x)
    torch.testing.assert_close(lean, plain, atol=1e-12, rtol=1e-12)
    weights = torch.randn_like(lean)
    params = [x, lam, *cbam.parameters()]
    for a, b in zip(
        torch.autograd.grad((lean * weights).sum(), params),
        torch.autograd.grad((plain * weights).sum(), params),
        strict=True,
    ):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


def test_rows_view_is_the_same_for_both_layouts():
    from preattn.lean_autograd import _rows

    t = torch.randn(2, 3, 4, 5)
    expected = t.reshape(2, 3, 20)
    torch.testing.assert_close(_rows(t), expected, atol=0, rtol=0)
    torch.testing.assert_close(
        _rows(t.contiguous(memory_format=torch.channels_last)), expected, atol=0, rtol=0
    )


def test_lean_autograd_saves_only_the_input_and_small_gates():
    cbam = CBAM(16)
    x = torch.randn(2, 16, 12, 12, requires_grad=True)
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        cbam.mixed(x, torch.tensor(0.2))
    full_size = {t.untyped_storage().data_ptr() for t in saved if t.numel() == x.numel()}
    assert full_size == {x.untyped_storage().data_ptr()}

"""The memory-lean autograd Functions against plain autograd (amax, products)."""

from __future__ import annotations

import pytest
import torch

import preattn
from preattn import CBAM
from preattn.lean_autograd import GatedMix, ScaledChannelPool, SpatialStats


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_spatial_stats_equal_mean_and_amax_with_ties(memory_format):
    torch.manual_seed(3)
    x = torch.relu(torch.randn(2, 3, 4, 5, dtype=torch.float64))
    x[0, 0] = 0.7  # a whole channel of ties
    x[1, 2, :2, :2] = 5.0  # four tied maxima
    x = x.contiguous(memory_format=memory_format).requires_grad_(True)
    weights = torch.randn(2, 2, 3, dtype=torch.float64)
    stats = SpatialStats.apply(x, torch.float64)
    plain = torch.stack([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))])
    torch.testing.assert_close(stats, plain, atol=0, rtol=0)
    (lean,) = torch.autograd.grad((stats * weights).sum(), x)
    (reference,) = torch.autograd.grad((plain * weights).sum(), x)
    torch.testing.assert_close(lean, reference, atol=1e-12, rtol=1e-12)
    assert torch.autograd.gradcheck(
        lambda t: SpatialStats.apply(t, torch.float64),
        (torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True),),
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
    with preattn.fast_attention(False):  # plain PyTorch operators only
        plain = (1 - lam) * x + lam * cbam(x)
    assert "Backward" in type(lean.grad_fn).__name__ and _custom_nodes(lean)
    assert not _custom_nodes(plain)
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


class _Mixed(torch.nn.Module):
    """``attention.mixed(x, λ)`` as a module, for torch.fx to trace (λ a fixed buffer)."""

    def __init__(self, attention: torch.nn.Module, lam: torch.Tensor) -> None:
        super().__init__()
        self.attention = attention
        self.register_buffer("lam", lam)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention.mixed(x, self.lam)


@pytest.mark.parametrize("official", [False, True])
def test_every_execution_path_computes_the_same_mix(official):
    """Eager training (lean Functions), eager inference (in place), the reference path
    (``preattn.fast_attention(False)``) and a graph traced by torch.fx (plain operations, as
    under torch.compile) agree with ``(1 − λ)·x + λ·CBAM(x)``; none of them changes ``x``."""
    import preattn.attention as attention_module

    torch.manual_seed(5)
    cbam = (
        CBAM(8, reduction=2)
        if not official
        else attention_module.create_attention("cbam-official", 8, reduction=2)
    )
    cbam.eval()
    x = torch.randn(2, 8, 6, 7, dtype=torch.float64)
    cbam = cbam.double()
    lam = torch.tensor(0.3, dtype=torch.float64)
    expected = (1 - lam) * x + lam * cbam(x)
    original = x.clone()
    results = {"train": cbam.mixed(x.requires_grad_(True), lam).detach()}
    with torch.inference_mode():
        results["inference_mode"] = cbam.mixed(x.detach(), lam)
    with torch.no_grad():
        results["no_grad"] = cbam.mixed(x.detach(), lam)
    with preattn.fast_attention(False):
        results["plain"] = cbam.mixed(x, lam).detach()
    traced = torch.fx.symbolic_trace(_Mixed(cbam, lam))
    assert not _custom_nodes(traced(x))  # the graph holds plain operations only
    results["captured"] = traced(x).detach()
    for name, value in results.items():
        torch.testing.assert_close(value, expected, atol=1e-12, rtol=1e-12, msg=name)
    torch.testing.assert_close(x.detach(), original, atol=0, rtol=0)


def test_gated_mix_returns_the_spatial_gradient_in_the_gates_layout():
    """A channels-last spatial gate (the 7×7 convolution's output on channels-last maps)
    gets a channels-last gradient: its strides, not the contiguous ones."""
    from preattn.lean_autograd import GatedMix

    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    c = torch.rand(2, 3, 1, 1, dtype=torch.float64, requires_grad=True)
    s = torch.rand(2, 1, 4, 5, dtype=torch.float64).as_strided((2, 1, 4, 5), (20, 1, 5, 1))
    s.requires_grad_(True)
    lam = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    out = GatedMix.apply(x, c, s, lam, (x * c).detach())
    (grad_s,) = torch.autograd.grad((out * torch.randn_like(out)).sum(), s)
    assert grad_s.stride() == s.stride()


def test_lambda_mixed_cbam_allocates_one_full_size_tensor_forward():
    """As documented in preattn.lean_autograd: x·M_c is the only new full-size tensor of
    the forward, in training (it becomes the output) and at inference (likewise)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from _counting import count_full_size

    torch.manual_seed(0)
    cbam = CBAM(16)
    x = torch.randn(2, 16, 12, 12)
    lam = torch.tensor(0.2)
    train = count_full_size(lambda: cbam.mixed(x.requires_grad_(True), lam), x.numel())
    with torch.inference_mode():
        infer = count_full_size(lambda: cbam.mixed(x.detach(), lam), x.numel())
    assert train.allocations == 1, train.by_operator
    assert infer.allocations == 1, infer.by_operator
    plain = count_full_size(lambda: (1 - lam) * x + lam * cbam(x), x.numel())
    assert plain.allocations > 1, plain.by_operator  # the counter sees the plain products


def test_inference_in_place_equals_traced_graph_bit_for_bit():
    """A graph traced from the model (torch.fx, as timm's feature extraction and its
    tests do) reproduces eager inference exactly, not only within float tolerance."""
    torch.manual_seed(6)
    cbam = CBAM(16).eval()
    x = torch.randn(3, 16, 9, 9)
    lam = torch.tensor(0.1)
    with torch.inference_mode():
        eager = cbam.mixed(x, lam)
    traced = torch.fx.symbolic_trace(_Mixed(cbam, lam))
    with torch.no_grad():
        captured = traced(x)
    torch.testing.assert_close(eager, captured, atol=0, rtol=0)


_FUNCTIONS = ("GatedMix", "ScaledChannelPool", "SpatialStats")


def _custom_nodes(out: torch.Tensor) -> set[str]:
    """Names of this module's Functions in the autograd graph of ``out``."""
    seen, stack, found = set(), [out.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        found |= {f for f in _FUNCTIONS if type(node).__name__.startswith(f)}
        stack.extend(next_fn for next_fn, _ in node.next_functions)
    return found


def _float64(*shape: int, positive: bool = False) -> torch.Tensor:
    t = torch.rand(*shape, dtype=torch.float64) if positive else torch.randn(*shape).double()
    return t.requires_grad_(True)


@pytest.mark.parametrize("max_first", [False, True])
def test_scaled_channel_pool_passes_gradcheck(max_first):
    torch.manual_seed(11)
    x, c = _float64(2, 3, 4, 5), _float64(2, 3, 1, 1, positive=True)
    assert torch.autograd.gradcheck(
        lambda a, b: ScaledChannelPool.apply(a, b, max_first)[0], (x, c)
    )


def test_gated_mix_passes_gradcheck():
    torch.manual_seed(12)
    x, c, s = (
        _float64(2, 3, 4, 5),
        _float64(2, 3, 1, 1, positive=True),
        _float64(2, 1, 4, 5, positive=True),
    )
    lam = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)

    def mix(x, c, s, lam):  # a fresh work space per call: GatedMix overwrites it
        return GatedMix.apply(x, c, s, lam, (x * c).detach().clone())

    assert torch.autograd.gradcheck(mix, (x, c, s, lam))


def test_spatial_stats_passes_gradcheck():
    torch.manual_seed(13)
    x = _float64(2, 3, 4, 4)
    assert torch.autograd.gradcheck(lambda t: SpatialStats.apply(t, torch.float64), (x,))


def test_the_switch_selects_plain_operators_for_every_attention():
    torch.manual_seed(4)
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    lam = torch.tensor(0.2)
    for name in preattn.attention_names():
        module = preattn.create_attention(name, 8)
        fast = module.mixed(x, lam) if hasattr(module, "mixed") else module(x)
        with preattn.fast_attention(False):
            assert not preattn.use_fast_attention()
            plain = module.mixed(x, lam) if hasattr(module, "mixed") else module(x)
        assert not _custom_nodes(plain), name
        torch.testing.assert_close(fast, plain, atol=1e-6, rtol=1e-5, msg=name)
    assert preattn.use_fast_attention()  # restored
    assert _custom_nodes(preattn.create_attention("cbam", 8).mixed(x, lam)) == set(_FUNCTIONS)
    with pytest.raises(TypeError, match="enable must be a bool, got 0"):
        preattn.set_fast_attention(0)


def test_the_environment_variable_turns_the_fast_path_off():
    import subprocess
    import sys

    code = "import preattn; print(preattn.use_fast_attention())"
    for value, expected in (("0", "False"), ("1", "True"), ("off", "False")):
        env = {**__import__("os").environ, "PREATTN_FAST_ATTENTION": value}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert out.stdout.strip() == expected, out.stderr


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_the_gate_gradient_sums_in_the_tensors_own_layout(memory_format):
    """Σ_HW a·b per (batch, channel): the einsum over rows (contiguous) or one product and
    a sum (channels-last), never the two copies einsum makes of channels-last operands."""
    import sys
    from pathlib import Path

    from preattn.lean_autograd import _spatial_dots

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from _counting import count_full_size

    torch.manual_seed(0)
    a, b = (torch.randn(3, 8, 5, 7).contiguous(memory_format=memory_format) for _ in range(2))
    expected = (a.double() * b.double()).sum(dim=(2, 3))
    torch.testing.assert_close(_spatial_dots(a, b).double(), expected, atol=1e-5, rtol=1e-5)
    counts = count_full_size(lambda: _spatial_dots(a, b), a.numel())
    assert counts.allocations <= (0 if memory_format == torch.contiguous_format else 1), (
        counts.by_operator
    )


# the fast reductions of the bf16 channels-last recipe, against float64 references

_BF16_ULP = 2.0**-8  # relative spacing of bfloat16 numbers


def _bf16_channels_last(*shape: int, positive: bool = False) -> torch.Tensor:
    t = torch.rand(*shape) if positive else torch.randn(*shape)
    return t.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_fast_reductions_equal_the_float64_reductions(memory_format, dtype):
    """sum_hw / mean_hw / mean_channels: the sum rounded once to the input's dtype (a bf16
    sum is within one bf16 spacing); amax_channels: exact, in every layout."""
    from preattn.lean_autograd import amax_channels, mean_channels, mean_hw, sum_hw

    torch.manual_seed(21)
    x = torch.randn(3, 8, 5, 7).to(dtype).contiguous(memory_format=memory_format)
    ref = x.double()
    tol = _BF16_ULP if dtype == torch.bfloat16 else 1e-12
    torch.testing.assert_close(
        sum_hw(x).double(),
        ref.sum(dim=(2, 3)),
        rtol=tol,
        atol=tol * ref.abs().sum(dim=(2, 3)).max(),
    )
    assert sum_hw(x).dtype == dtype
    mean = mean_hw(x, torch.float32)
    assert mean.dtype == torch.float32 and mean.shape == (3, 8)
    tol = max(tol, 1e-6)  # a float32 mean
    torch.testing.assert_close(
        mean.double(), ref.mean(dim=(2, 3)), rtol=tol, atol=tol * ref.abs().mean(dim=(2, 3)).max()
    )
    by_channel = mean_channels(x, torch.float32)
    assert by_channel.dtype == torch.float32 and by_channel.shape == (3, 5, 7)
    torch.testing.assert_close(
        by_channel.double(), ref.mean(dim=1), rtol=tol, atol=tol * ref.abs().mean(dim=1).max()
    )
    peak = amax_channels(x)
    assert peak.shape == (3, 1, 5, 7)
    torch.testing.assert_close(peak.double(), ref.amax(dim=1, keepdim=True), atol=0, rtol=0)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last, "strided"])
def test_outer_plus_equals_addcmul(memory_format):
    """keep + c·s by a rank-two matrix product: float64 equal to addcmul within rounding,
    bfloat16 within one bfloat16 spacing of the exact value of its inputs (rounded once)."""
    from preattn.lean_autograd import _outer_plus

    torch.manual_seed(22)
    c, s = torch.rand(3, 8, 1, 1, dtype=torch.float64), torch.rand(3, 1, 5, 7, dtype=torch.float64)
    keep = torch.tensor(0.9, dtype=torch.float64)
    for dtype, tol in ((torch.float64, 1e-15), (torch.bfloat16, _BF16_ULP)):
        # the exact value for the inputs as the dtype holds them
        expected = torch.addcmul(*(t.to(dtype).double() for t in (keep, c, s)))
        if memory_format == "strided":  # no row view: the addcmul fallback
            out = torch.empty(8, 3, 5, 7, dtype=dtype).transpose(0, 1)
        else:
            out = torch.empty(3, 8, 5, 7, dtype=dtype).contiguous(memory_format=memory_format)
        result = _outer_plus(keep.to(dtype), c.to(dtype), s.to(dtype), out=out)
        assert result.data_ptr() == out.data_ptr()
        torch.testing.assert_close(result.double(), expected, rtol=tol, atol=0)


def test_bf16_channels_last_cbam_follows_the_float32_reference():
    """The recipe's path (bf16 autocast, channels-last, the fast reductions and products)
    against the plain float32 operators on the same input: the output, dL/dx, dL/dλ and
    the weight gradients within 5 % of each one's largest magnitude, and no more than one
    percentage point further from float32 than the plain operators in bf16 are (bf16 keeps
    8 bits; the gradient of the MLP's second layer is the least precise, about 4 %
    either way), in training and inference."""
    torch.manual_seed(23)
    cbam = CBAM(32)
    x = torch.relu(_bf16_channels_last(4, 32, 10, 10))
    x[0, :, 0, 0] = 0.0  # ties in the channel max
    weights = torch.randn(4, 32, 10, 10)
    lam = torch.tensor(0.3, requires_grad=True)

    def run(fast: bool, inp: torch.Tensor) -> list[torch.Tensor]:
        inp = inp.detach().requires_grad_(True)
        with preattn.fast_attention(fast), torch.autocast("cpu", dtype=torch.bfloat16):
            out = cbam.mixed(inp, lam)
        params = [inp, lam, *cbam.parameters()]
        grads = torch.autograd.grad((out.float() * weights).sum(), params)
        with (
            preattn.fast_attention(fast),
            torch.inference_mode(),
            torch.autocast("cpu", dtype=torch.bfloat16),
        ):
            inferred = cbam.mixed(inp.detach(), lam.detach())
        return [out.detach().float(), inferred.float(), *grads]

    fast, plain = run(True, x), run(False, x)
    reference = run(False, x.float())  # float32 throughout (autocast leaves it)
    names = ["output", "inference", "dL/dx", "dL/dλ", *(n for n, _ in cbam.named_parameters())]
    for name, a, b, ref in zip(names, fast, plain, reference, strict=True):
        scale = ref.abs().max()
        fast_error = float((a - ref).abs().max() / scale)
        plain_error = float((b - ref).abs().max() / scale)
        assert fast_error <= 0.05 and fast_error <= plain_error + 0.01, (
            name,
            fast_error,
            plain_error,
        )


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_uncontrolled_cbam_through_the_lean_functions_equals_plain_autograd(memory_format):
    """Standard CBAM (``forward``, no λ) in eager training takes the lean Functions with
    λ = None: the same output and gradients as the plain operators, ties included; at
    inference the same output, multiplied in place."""
    torch.manual_seed(24)
    cbam = CBAM(8, reduction=2).double()
    x = torch.relu(torch.randn(2, 8, 5, 5, dtype=torch.float64))
    x[0, :, 0, 0] = 0.0
    x = x.contiguous(memory_format=memory_format).requires_grad_(True)
    lean = cbam(x)
    with preattn.fast_attention(False):
        plain = cbam(x)
    assert _custom_nodes(lean) == set(_FUNCTIONS) and not _custom_nodes(plain)
    torch.testing.assert_close(lean, plain, atol=1e-12, rtol=1e-12)
    weights = torch.randn_like(lean)
    params = [x, *cbam.parameters()]
    for a, b in zip(
        torch.autograd.grad((lean * weights).sum(), params),
        torch.autograd.grad((plain * weights).sum(), params),
        strict=True,
    ):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)
    with torch.inference_mode():
        torch.testing.assert_close(cbam(x.detach()), plain.detach(), atol=1e-12, rtol=1e-12)
    assert torch.autograd.gradcheck(
        lambda a, c, s: GatedMix.apply(a, c, s, None, (a * c).detach().clone()),
        (_float64(2, 3, 4, 5), _float64(2, 3, 1, 1, positive=True), _float64(2, 1, 4, 5)),
    )

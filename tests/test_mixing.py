"""λ-mixing: parameterisations, warm-up ramp, state-dict round trip, lambdas()."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from preattn import LambdaMix, ResidualBlock, lambdas
from preattn.models import SimpleCNN


def test_sigmoid_parameterisation_stores_logit():
    mix = LambdaMix(0.2)
    assert isinstance(mix.logit, nn.Parameter)
    assert mix.logit.item() == pytest.approx(math.log(0.2 / 0.8), rel=1e-6)
    assert mix.value().item() == pytest.approx(0.2, rel=1e-6)


@pytest.mark.parametrize("lam,expected", [(0.0, 1e-4), (1.0, 1 - 1e-4), (0.5, 0.5)])
def test_sigmoid_init_is_clamped(lam, expected):
    assert LambdaMix(lam).value().item() == pytest.approx(expected, rel=1e-3)


def test_fixed_lambda_is_a_buffer():
    mix = LambdaMix(0.3, learnable=False)
    assert "logit" in dict(mix.named_buffers())
    assert list(mix.parameters()) == []
    mix_linear = LambdaMix(0.3, learnable=False, param="linear")
    assert "lam" in mix_linear.state_dict() and list(mix_linear.parameters()) == []


def test_mix_formula():
    mix = LambdaMix(0.25, param="linear")
    z, a = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(mix(z, a), 0.75 * z + 0.25 * a)
    torch.testing.assert_close(mix(z, a), z + 0.25 * (a - z))


def test_linear_zero_is_exact_identity_with_gradient():
    mix = LambdaMix(0.0, param="linear")
    z, a = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    out = mix(z, a)
    assert torch.equal(out, z)
    out.mul(a).sum().backward()  # d/dλ of <out, a> = <a - z, a>
    assert mix.lam.grad is not None
    assert mix.lam.grad.item() == pytest.approx(((a - z) * a).sum().item(), rel=1e-5)


def test_warmup_ramp_values():
    mix = LambdaMix(0.4, param="linear", warmup_steps=4)
    z, a = torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1)
    seen = [mix(z, a).item() for _ in range(7)]
    assert seen == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.4, 0.4])
    assert int(mix.warmup_step) == 7


def test_warmup_does_not_advance_in_eval():
    mix = LambdaMix(0.4, param="linear", warmup_steps=4).eval()
    z, a = torch.zeros(1), torch.ones(1)
    assert [mix(z, a).item() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert int(mix.warmup_step) == 0


def test_warmup_resumes_from_state_dict():
    first = LambdaMix(0.5, warmup_steps=10)
    z, a = torch.zeros(1), torch.ones(1)
    for _ in range(6):
        first(z, a)
    resumed = LambdaMix(0.5, warmup_steps=10)
    resumed.load_state_dict(first.state_dict())
    assert int(resumed.warmup_step) == 6
    assert resumed(z, a).item() == pytest.approx(0.5 * 0.6, rel=1e-5)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"lam": 1.5}, r"lam must be a float in \[0, 1\], got 1.5"),
        ({"lam": -0.1}, r"lam must be a float in \[0, 1\], got -0.1"),
        (
            {"param": "tanh"},
            r"lam_param must be one of \['sigmoid', 'linear', 'depth'\], got 'tanh'",
        ),
        ({"warmup_steps": -1}, "lam_warmup_steps must be an int >= 0, got -1"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LambdaMix(**kwargs)


def test_lambdas_names_every_controlled_block():
    model = SimpleCNN(lam=0.2)
    assert lambdas(model) == pytest.approx({"block1": 0.2, "block2": 0.2})
    assert lambdas(SimpleCNN(lam=None)) == {}
    assert lambdas(SimpleCNN(placement="none")) == {}
    seq = nn.Sequential(ResidualBlock(4, 4, lam=0.3, lam_param="linear"))
    assert lambdas(seq) == pytest.approx({"0": 0.3})


@pytest.mark.parametrize("name", ["cbam", "cbam-official", "channel", "spatial", "se", "eca"])
def test_fused_mix_equals_plain_composition_float64(name):
    """``mix.attend`` (fused) vs ``(1 − λ)·z + λ·A(z)`` composed eagerly: values and grads."""
    from preattn import create_attention

    torch.manual_seed(0)
    attention = create_attention(name, 16).double().eval()
    mix = LambdaMix(0.3).double()
    z = torch.randn(2, 16, 5, 6, dtype=torch.float64, requires_grad=True)
    fused = mix.attend(z, attention)
    lam = mix.value()
    plain = (1 - lam) * z + lam * attention(z)
    torch.testing.assert_close(fused, plain, atol=1e-12, rtol=1e-12)
    weights = torch.randn_like(fused)
    params = [z, mix.logit, *attention.parameters()]
    grads_fused = torch.autograd.grad((fused * weights).sum(), params)
    grads_plain = torch.autograd.grad((plain * weights).sum(), params)
    for a, b in zip(grads_fused, grads_plain, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_gates_are_float32_under_autocast(dtype):
    from preattn import CBAM

    torch.manual_seed(1)
    cbam = CBAM(32)
    x = torch.randn(2, 32, 8, 8)
    with torch.autocast("cpu", dtype=dtype):
        h = torch.nn.functional.conv2d(x, torch.randn(32, 32, 1, 1) / 6)
        assert h.dtype == dtype
        gate = cbam.gate(h)
        out = LambdaMix(0.5).attend(h, cbam)
    assert gate.dtype == torch.float32 and out.dtype == dtype
    reference = LambdaMix(0.5).attend(h.float(), cbam)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), reference, atol=0.05, rtol=0.02)


# --- the λ designs, against their formulas written out ---------------------------------------


def _gate_and_input(seed: int = 0):
    torch.manual_seed(seed)
    block = ResidualBlock(6, 6, lam=0.3, lam_shape="channel", lam_param="linear").eval()
    with torch.no_grad():
        block.mix.lam.copy_(torch.linspace(0.0, 1.0, 6))  # a different λ per channel
    z = torch.randn(2, 6, 5, 5)
    return block, z


def test_per_channel_lambda_mixes_each_channel_with_its_own_lambda():
    block, z = _gate_and_input()
    lam = torch.linspace(0.0, 1.0, 6).view(1, 6, 1, 1)
    with torch.no_grad():
        expected = z + lam * (block.attention(z) - z)
        torch.testing.assert_close(block._attend(z), expected, atol=1e-6, rtol=1e-5)
        assert block._attend(z)[:, 0].equal(z[:, 0])  # λ_0 = 0: channel 0 untouched
    assert lambdas(block) == {"": pytest.approx(0.5)}
    assert dict(block.mix.named_parameters())["lam"].shape == (6,)


def test_per_channel_sigmoid_lambda_starts_at_lambda_everywhere_and_learns_per_channel():
    block = ResidualBlock(4, 4, lam=0.2, lam_shape="channel")
    assert block.mix.logit.shape == (4,)
    torch.testing.assert_close(torch.sigmoid(block.mix.logit), torch.full((4,), 0.2))
    block(torch.randn(2, 4, 6, 6)).square().sum().backward()
    assert block.mix.logit.grad.shape == (4,) and block.mix.logit.grad.abs().sum() > 0


def test_depth_lambda_is_the_modulation_depth_of_the_mean_one_gate():
    torch.manual_seed(3)
    block = ResidualBlock(6, 6, lam=0.4, lam_param="depth", lam_learnable=True).eval()
    z = torch.randn(2, 6, 5, 5)
    with torch.no_grad():
        g = block.attention.gate(z)
        w = 1 + 0.4 * (g / g.mean(dim=(1, 2, 3), keepdim=True) - 1)
        torch.testing.assert_close(block._attend(z), z * w, atol=1e-6, rtol=1e-5)
    # a uniform gate changes nothing, whatever λ
    flat = LambdaMix(0.9, param="depth")
    torch.testing.assert_close(
        flat.multiplier(torch.full((2, 3, 4, 4), 0.3)), torch.ones(2, 3, 4, 4)
    )
    assert "mix.lam" in dict(block.named_parameters())  # stored as itself


@pytest.mark.parametrize(("stored", "bound"), [(1.7, 1.0), (-0.6, 0.0)])
def test_depth_is_bounded_so_the_gate_is_never_inverted(stored, bound):
    torch.manual_seed(4)
    gate = torch.rand(2, 3, 4, 4)  # a sigmoid gate lies in (0, 1)
    mix = LambdaMix(0.5, param="depth")
    with torch.no_grad():
        mix.lam.fill_(stored)  # where training pushed it
    normalised = gate / gate.mean(dim=(1, 2, 3), keepdim=True)
    expected = 1 + bound * (normalised - 1)  # the bound's multiplier, computed by hand
    w = mix.multiplier(gate)
    torch.testing.assert_close(w, expected)
    assert w.min() >= 0
    # the stored value would invert the gate: negative weights (λ > 1), or weights that
    # fall where the gate rises (λ < 0)
    unbounded = 1 + stored * (normalised - 1)
    pairs = torch.stack([unbounded.flatten(), gate.flatten()])
    assert unbounded.min() < 0 or torch.corrcoef(pairs)[0, 1] < 0
    assert lambdas(nn.ModuleDict({"b": nn.ModuleDict({"mix": mix})}))["b"] == bound
    # outside the bound λ gets no gradient: it stays where the bound holds it
    mix.multiplier(gate).sum().backward()
    assert mix.lam.grad.item() == 0.0


def test_the_default_design_is_unchanged():
    block = ResidualBlock(8, 8)
    assert block.spec.lam_param == "sigmoid" and block.spec.lam_shape == "scalar"
    assert block.mix.logit.shape == () and block.mix.logit.item() == pytest.approx(
        math.log(0.1 / 0.9), abs=1e-7
    )

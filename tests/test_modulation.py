"""The modulation (how much attention changes the tensor it acts on), by hand."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from torch import nn

import preattn
from preattn import ResidualBlock, attention_maps
from preattn.mixing import LambdaMix
from preattn.modulation import gate_modulation, modulation_of, residual_modulation


def test_gate_modulation_is_the_per_sample_coefficient_of_variation():
    # sample 0: values 1 and 3 (mean 2, population std 1) -> 0.5; sample 1: uniform -> 0
    w = torch.tensor([[1.0, 3.0, 1.0, 3.0], [0.4, 0.4, 0.4, 0.4]]).view(2, 4, 1, 1)
    assert gate_modulation(w) == pytest.approx((0.5 + 0.0) / 2)


def test_a_uniform_gate_gives_zero_whatever_its_level():
    for level in (0.05, 0.5, 1.0, 7.0):
        assert gate_modulation(torch.full((3, 8, 5, 5), level)) == pytest.approx(0, abs=1e-12)


def test_broadcast_gates_give_the_modulation_of_the_full_multiplier():
    torch.manual_seed(0)
    channel = torch.rand(2, 6, 1, 1)
    spatial = torch.rand(2, 1, 4, 5)
    assert gate_modulation(channel) == pytest.approx(gate_modulation(channel.expand(2, 6, 4, 5)))
    assert gate_modulation(spatial) == pytest.approx(gate_modulation(spatial.expand(2, 6, 4, 5)))


def test_lambda_mixing_scales_the_gates_variation_by_hand():
    # a gate taking 0.2 and 0.8 equally often: w = 0.9 + 0.1 g takes 0.92 and 0.98
    g = torch.tensor([0.2, 0.8] * 8).view(1, 16, 1, 1)
    mix = LambdaMix(0.1, learnable=False, param="linear")
    expected = 0.03 / 0.95  # population std 0.03 around the mean 0.95
    assert gate_modulation(mix.multiplier(g)) == pytest.approx(expected)
    depth = LambdaMix(0.1, learnable=False, param="depth")  # w = 1 + 0.1 (g / 0.5 - 1)
    assert gate_modulation(depth.multiplier(g)) == pytest.approx(0.1 * 0.6)


def test_residual_modulation_removes_the_best_scalar():
    z = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    assert residual_modulation(z, 2.5 * z) == pytest.approx(0, abs=1e-12)
    other = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    other -= (
        (other * z).sum(dim=(1, 2, 3), keepdim=True)
        / z.square().sum(dim=(1, 2, 3), keepdim=True)
        * z
    )  # orthogonal to z, sample by sample
    y = 2.0 * z + 0.3 * other
    expected = (0.3 * other.flatten(1).norm(dim=1) / z.flatten(1).norm(dim=1)).mean()
    assert residual_modulation(z, y) == pytest.approx(float(expected))


class _Shift(nn.Module):
    """Not a gate: A(z) = z + 1."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + 1.0


def test_modulation_of_a_block_by_hand_for_gates_and_other_attention():
    torch.manual_seed(1)
    block = ResidualBlock(8, 8, lam=0.3, lam_learnable=False, lam_param="linear").eval()
    z = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        g = block.attention.gate(z)
    by_hand = (0.7 + 0.3 * g).flatten(1)
    expected = (by_hand.std(dim=1, correction=0) / by_hand.mean(dim=1)).mean()
    assert modulation_of(block.attention, block.mix, z) == pytest.approx(float(expected))
    assert modulation_of(block.attention, None, z) == pytest.approx(gate_modulation(g))
    mix = LambdaMix(0.5, learnable=False, param="linear")
    y = 0.5 * z + 0.5 * (z + 1.0)
    assert modulation_of(_Shift(), mix, z) == pytest.approx(residual_modulation(z, y))


def test_attention_maps_report_the_modulation_of_each_block():
    torch.manual_seed(2)
    model = preattn.models.SimpleCNN(in_chans=1).eval()
    x = torch.randn(4, 1, 12, 12)
    maps = attention_maps(model, x)
    assert set(maps) == {"block1", "block2"}
    for value in maps.values():
        assert 0 < value.modulation < 1 and math.isfinite(value.modulation)
    uncontrolled = preattn.models.SimpleCNN(in_chans=1, lam=None).eval()
    uncontrolled.load_state_dict(model.state_dict(), strict=False)
    free = attention_maps(uncontrolled, x)
    # λ = 0.1 mixes in a tenth of the gate's variation, or less
    assert maps["block1"].modulation < 0.2 * free["block1"].modulation


def _short_run(tmp_path, name: str, **options) -> object:
    from _helpers import TINY_CONFIG
    from preattn.train import TrainConfig, train

    sizes = {"image_size": 16, "limit_train": 256, "limit_test": 64, "batch_size": 32}
    config = TrainConfig(**{**TINY_CONFIG, **sizes}, epochs=2, out=str(tmp_path / name), **options)
    train(config)
    return tmp_path / name


def test_modulation_is_recorded_printed_and_checked_after_a_short_run(tmp_path, capsys, caplog):
    """The default (λ = 0.1, sigmoid) leaves attention effectively off after a short run:
    check says so as info, with why and what to try, and passes (exit 0); uncontrolled
    attention acts, and check does not report it as off."""
    import json

    from preattn.cli import main

    caplog.set_level(logging.INFO, logger="preattn")  # the epoch lines, as the library logs them
    controlled = _short_run(tmp_path, "default")
    free = _short_run(tmp_path, "free", lam=None)
    out = "\n".join(caplog.messages)
    assert "λ [block1=0.100 m=" in out and "block1 m=" in out
    for run in (controlled, free):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert all(set(r["modulation"]) == {"block1", "block2"} for r in rows)
    last = json.loads((controlled / "metrics.jsonl").read_text().splitlines()[-1])
    assert all(m < 0.02 for m in last["modulation"].values())
    capsys.readouterr()
    assert main(["check", "--checkpoint", str(controlled)]) == 0
    report = capsys.readouterr().out
    assert "info     block1: attention is effectively off in block1 (modulation" in report
    assert "info     block2: attention is effectively off in block2" in report
    assert "the specification's λ = 0.1" in report and "--preset pattern3-depth" in report
    assert "0 warning(s)/error(s)" in report
    main(["check", "--checkpoint", str(free)])
    report = capsys.readouterr().out
    assert "effectively off" not in report and "attention acts: modulation" in report


def test_the_block_rejects_depth_for_attention_that_is_not_a_gate():
    preattn.register_attention("shift-for-test", lambda channels: _Shift(), overwrite=True)
    try:
        with pytest.raises(ValueError, match="lam_param='depth' needs gate attention"):
            ResidualBlock(4, 4, attention="shift-for-test", lam_param="depth")
    finally:
        preattn.unregister_attention("shift-for-test")

"""summary(): parameter and MAC counts against independent counts."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from preattn import summary
from preattn.cli import main
from preattn.models import resnet18


def test_summary_counts_attention_overhead_against_plain_model():
    with_attention = summary(resnet18(placement="pre"), (3, 64, 64))
    plain = summary(resnet18(placement="none"), (3, 64, 64))
    assert with_attention.base_params == plain.params == 11_689_512
    assert with_attention.base_macs == plain.macs
    assert plain.attention_params == 0 and plain.attention_macs == 0
    # CBAM on C channels: MLP 2·C·max(C//16, 4) params; 6 blocks in stages 2-4, λ each
    expected = sum(2 * c * max(c // 16, 4) + 98 + 1 for c in (64, 128, 128, 256, 256, 512))
    assert with_attention.attention_params == expected
    assert len(with_attention.lambdas) == 6


def test_summary_macs_equal_torch_flop_counter_on_torchvision():
    model = torchvision.models.resnet18().eval()
    mode = FlopCounterMode(display=False)
    with mode, torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    assert summary(resnet18(placement="none"), (3, 224, 224)).macs == mode.get_total_flops() // 2


def _macs_by_hand(model: torch.nn.Module, input_size: tuple[int, ...]) -> int:
    """Conv: out.numel() · (C_in / groups) · k_h · k_w; linear: out.numel() · in_features."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            kh, kw = module.kernel_size
            total += output.numel() * module.in_channels // module.groups * kh * kw
        elif isinstance(module, torch.nn.Linear):
            total += output.numel() * module.in_features

    handles = [m.register_forward_hook(count) for m in model.modules()]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *input_size))
    for h in handles:
        h.remove()
    return total


@pytest.mark.parametrize("placement", ["none", "pre", "branch"])
def test_summary_macs_equal_a_count_by_hand(placement):
    # spatial attention only: its 7x7 conv is a module a hook sees (the channel MLP runs
    # as functional matrix products on (N, C) vectors, which a module hook cannot count)
    model = resnet18(placement=placement, attention="spatial")
    assert summary(model, (3, 64, 64)).macs == _macs_by_hand(model, (3, 64, 64))


def test_summary_cli_prints_table(capsys):
    assert (
        main(
            [
                "summary",
                "--model",
                "resnet18",
                "--placement",
                "branch",
                "--attention",
                "cbam-official",
                "--stages",
                "1,2,3,4",
                "--lam",
                "none",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "11,779,392" in out and "attention overhead" in out


def test_bad_input_size():
    with pytest.raises(ValueError, match=r"input_size must be \(C, H, W\)"):
        summary(resnet18(), (224, 224))

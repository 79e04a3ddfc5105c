"""The networks on ``pytest --device``: float32 there against a float64 CPU reference of the
same weights, bf16 autocast in channels-last close to float32, and the attention maps.

On the CPU these check float32 against float64 (the library's fused operations and custom
backward functions in both precisions); on a GPU they check its kernels against the CPU.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from _helpers import randomise_batchnorm
from preattn import attention_maps
from preattn.models import create_model

NETWORKS = [
    ("simplecnn", {"in_chans": 1}, (1, 20)),
    ("simplecnn", {"in_chans": 1, "placement": "branch", "lam": None}, (1, 20)),
    ("resnet18", {"placement": "pre", "attention": "se"}, (3, 32)),
    ("mobilenet_v3_small", {"placement": "pre", "attention": "coord", "drop_rate": 0.0}, (3, 64)),
]


def _pair(name: str, options: dict, image: tuple[int, int], device: torch.device):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, image_size=image[1], **options)
    randomise_batchnorm(model, seed=0)
    reference = copy.deepcopy(model).double()
    x = torch.randn(4, image[0], image[1], image[1], dtype=torch.float64)
    return model.to(device), reference, x


def _gradients(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().cpu().double() for n, p in model.named_parameters()}


@pytest.mark.parametrize("name,options,image", NETWORKS, ids=lambda v: str(v))
def test_float32_on_the_device_is_the_float64_cpu_network(device, name, options, image):
    model, reference, x = _pair(name, options, image, device)
    for train in (True, False):
        model.train(train)
        reference.train(train)
        ours = model(x.float().to(device))
        expected = reference(x)
        torch.testing.assert_close(ours.cpu().double(), expected, atol=2e-4, rtol=2e-4)
        if train:
            ours.square().mean().backward()
            expected.square().mean().backward()
            theirs = _gradients(reference)
            for key, grad in _gradients(model).items():
                scale = theirs[key].abs().max().clamp_min(1e-3)
                torch.testing.assert_close(grad / scale, theirs[key] / scale, atol=2e-3, rtol=0)
    # the running statistics moved identically in the one training forward
    for (key, ours_v), theirs_v in zip(
        model.state_dict().items(), reference.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(
            ours_v.cpu().double(), theirs_v.double(), atol=1e-4, rtol=1e-4, msg=key
        )


@pytest.mark.parametrize("name,options,image", NETWORKS[1:3], ids=lambda v: str(v))
def test_bf16_channels_last_stays_close_to_float32(device, name, options, image):
    model, _, x = _pair(name, options, image, device)
    model.eval()
    x = x.float().to(device)
    with torch.inference_mode():
        full = model(x)
        model.to(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            low = model(x.contiguous(memory_format=torch.channels_last))
    # bf16 keeps 8 bits of mantissa: logits agree to a few percent of their spread
    spread = full.std().item()
    assert (low.float() - full).abs().max().item() < 0.1 * spread + 1e-3


def test_attention_maps_on_the_device(device):
    model, _, x = _pair(*NETWORKS[0], device)
    maps = attention_maps(model, x.float().to(device))
    assert set(maps) == {"block1", "block2"}
    for found in maps.values():
        assert 0.0 <= found.modulation < 10.0

"""retrofit() on segmentation_models.pytorch (the ``seg`` extra) models built with
encoder_weights=None: at λ = 0 the masks are unchanged in eval mode, a training step gives a
finite loss and λ a gradient, the original state dict loads with strict=False missing only
the new keys, and only the encoder is converted by default. Block counts are the encoders'
architecture tables (ResNet-18: 2+2+2+2 BasicBlocks; MobileNetV2: 17 inverted residuals;
EfficientNet-B0: 1+2+2+3+3+4+1 MBConv blocks; RegNetY-200MF: 1+1+4+7 blocks)."""

from __future__ import annotations

import pytest
import segmentation_models_pytorch as smp  # the seg extra, in the dev extras
import torch
from torch import nn

from _helpers import randomise_batchnorm
from preattn import ResidualBlock, retrofit
from preattn.mixing import LambdaMix

CASES = [
    ("Unet", "resnet18", 8),
    ("FPN", "mobilenet_v2", 17),
    ("DeepLabV3Plus", "resnet18", 8),
    ("Unet", "tu-efficientnet_b0", 16),
    ("FPN", "tu-regnety_002", 13),
]


def _built(arch: str, encoder: str) -> nn.Module:
    torch.manual_seed(0)
    model = getattr(smp, arch)(encoder_name=encoder, encoder_weights=None, classes=3)
    return randomise_batchnorm(model).eval()


@pytest.mark.parametrize(("arch", "encoder", "blocks"), CASES)
def test_an_encoder_is_converted_keeping_masks_training_and_loading(arch, encoder, blocks):
    model = _built(arch, encoder)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
    retrofit(model, own_attention="keep")
    converted = [n for n, m in model.named_modules() if isinstance(m, ResidualBlock)]
    assert len(converted) == blocks and all(n.startswith("encoder.") for n in converted)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), expected, atol=1e-5, rtol=1e-5)

    fresh = retrofit(_built(arch, encoder), own_attention="keep")
    result = fresh.load_state_dict(original, strict=False)
    assert result.unexpected_keys == [] and result.missing_keys
    assert all(".attention." in k or ".mix." in k for k in result.missing_keys)

    model.train()
    labels = torch.randint(0, 3, (2, 64, 64), generator=torch.Generator().manual_seed(2))
    loss = nn.functional.cross_entropy(model(x), labels)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for m in model.modules() if isinstance(m, LambdaMix) for p in m.parameters()]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) > 0 for g in grads) > len(grads) // 2


def test_an_encoder_of_an_unknown_block_type_is_refused_naming_it():
    model = _built("Unet", "efficientnet-b0")  # smp's own MBConvBlock: no layout
    with pytest.raises(ValueError, match="MBConvBlock"):
        retrofit(model)

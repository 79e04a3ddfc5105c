"""retrofit()'s view of the module tree: a block held at several places is converted at each
(or refused when only some are chosen), the usual wrappers are seen through
(nn.DataParallel's ``module.``, torch.compile's ``_orig_mod.``), DistributedDataParallel is
refused saying why, and a model's ``backbone`` is what is converted by default."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torchvision
from torch import nn

from _helpers import randomise_batchnorm
from preattn import ResidualBlock, retrofit


def _resnet() -> nn.Module:
    torch.manual_seed(0)
    return randomise_batchnorm(torchvision.models.resnet18(num_classes=4).eval())


def _input() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_a_block_held_at_two_places_is_converted_at_both_and_stays_shared():
    model = _resnet()
    model.layer1[1] = model.layer1[0]
    with torch.no_grad():
        expected = model(_input())
    retrofit(model, stages=[1, 2])
    assert model.preattn_retrofitted == ["layer1.0", "layer1.1", "layer2.0", "layer2.1"]
    assert isinstance(model.layer1[0], ResidualBlock) and model.layer1[1] is model.layer1[0]
    with torch.no_grad():
        torch.testing.assert_close(model(_input()), expected)
    # beyond the example: a block held in two different containers
    model = _resnet()
    shared = model.layer4[1]
    model.extra = nn.Sequential(shared)
    retrofit(model, within=["layer4", "extra"])
    assert model.extra[0] is model.layer4[1] and isinstance(model.extra[0], ResidualBlock)
    assert model.preattn_retrofitted == ["layer4.0", "layer4.1", "extra.0"]


def test_a_shared_block_chosen_at_one_place_only_is_refused_naming_the_other():
    model = _resnet()
    model.layer1[1] = model.layer1[0]
    with pytest.raises(ValueError, match=r"block at 'layer1.0' is also held at \['layer1.1'\]"):
        retrofit(model, within=["layer1.0"])
    model.extra = nn.Sequential(model.layer2[1])
    with pytest.raises(ValueError, match=r"block at 'layer2.1' is also held at \['extra.0'\]"):
        retrofit(model, stages=[2])
    assert not any(isinstance(m, ResidualBlock) for m in model.modules())


def test_data_parallel_is_seen_through_with_either_name():
    model = _resnet()
    with torch.no_grad():
        expected = model(_input())
    wrapped = retrofit(nn.DataParallel(model), stages=[2])
    assert isinstance(wrapped, nn.DataParallel)
    assert wrapped.preattn_retrofitted == ["layer2.0", "layer2.1"] == model.preattn_retrofitted
    retrofit(wrapped, within=["module.layer3"])
    retrofit(wrapped, within=["layer4"])
    assert model.preattn_retrofitted[2:] == ["layer3.0", "layer3.1", "layer4.0", "layer4.1"]
    with torch.no_grad():
        torch.testing.assert_close(wrapped(_input()), expected)


def test_a_compiled_model_is_converted_underneath_and_recompiled():
    model = _resnet()
    compiled = torch.compile(model, backend="eager")
    with torch.no_grad():
        before = compiled(_input())
    retrofit(compiled, stages=[3], lam=0.5)
    assert model.preattn_retrofitted == ["layer3.0", "layer3.1"]
    with torch.no_grad():
        after, eager = compiled(_input()), model(_input())
    torch.testing.assert_close(after, eager)
    assert not torch.allclose(after, before)  # λ = 0.5: the compiled model runs the new blocks


def test_distributed_data_parallel_is_refused_saying_why(tmp_path):
    dist.init_process_group(
        "gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1
    )
    try:
        wrapped = nn.parallel.DistributedDataParallel(_resnet())
        with pytest.raises(ValueError, match=r"inside DistributedDataParallel: DDP fixed the"):
            retrofit(wrapped)
    finally:
        dist.destroy_process_group()
    assert not any(isinstance(m, ResidualBlock) for m in wrapped.modules())


class _WithBackbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = _resnet()
        self.head = torchvision.models.resnet.BasicBlock(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)[:, :, None, None].expand(-1, -1, 2, 2))


def test_a_models_backbone_is_converted_by_default_and_everything_on_request():
    model = retrofit(_WithBackbone())
    assert len(model.preattn_retrofitted) == 8
    assert all(n.startswith("backbone.layer") for n in model.preattn_retrofitted)
    assert not isinstance(model.head, ResidualBlock)
    model = retrofit(_WithBackbone(), within=[""])
    assert model.preattn_retrofitted[-1] == "head" and len(model.preattn_retrofitted) == 9

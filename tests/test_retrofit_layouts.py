"""A user's own block types: declared with register_block_layout or layouts=, checked when
used (a missing attribute, a layout that does not compute the block's forward), and the
documented recipes for a YOLO-style bottleneck inside C2f and CSP stages.

The stand-in classes below are written here from the structure the recipes describe (a
bottleneck with ``cv1``, ``cv2`` and a shortcut flag; stages holding such bottlenecks); no
detector library is imported."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from _helpers import randomise_batchnorm
from preattn import (
    BlockLayout,
    ResidualBlock,
    lambdas,
    register_block_layout,
    retrofit,
    unregister_block_layout,
)
from preattn.block_layouts import BLOCK_LAYOUTS


class ConvBNAct(nn.Module):
    """conv -> BatchNorm -> SiLU, the unit the bottleneck's cv1 and cv2 are made of."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """y = x + cv2(cv1(x)) when ``add`` (shortcut asked and shapes equal), else cv2(cv1(x))."""

    def __init__(self, c_in: int, c_out: int, shortcut: bool = True) -> None:
        super().__init__()
        self.cv1 = ConvBNAct(c_in, c_out // 2, 3)
        self.cv2 = ConvBNAct(c_out // 2, c_out, 3)
        self.add = shortcut and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class SplitStage(nn.Module):
    """C2f-style: cv1 splits into two halves, each bottleneck extends the last part, cv2
    fuses all parts."""

    def __init__(self, channels: int, n: int = 2) -> None:
        super().__init__()
        self.half = channels // 2
        self.cv1 = ConvBNAct(channels, channels)
        self.cv2 = ConvBNAct((2 + n) * self.half, channels)
        self.m = nn.ModuleList(Bottleneck(self.half, self.half) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = list(self.cv1(x).chunk(2, dim=1))
        for block in self.m:
            parts.append(block(parts[-1]))
        return self.cv2(torch.cat(parts, dim=1))


class CrossStage(nn.Module):
    """CSP-style: bottlenecks on one path (cv1 -> m), cv2 on the other, cv3 fuses them."""

    def __init__(self, channels: int, n: int = 2) -> None:
        super().__init__()
        self.cv1 = ConvBNAct(channels, channels // 2)
        self.cv2 = ConvBNAct(channels, channels // 2)
        self.cv3 = ConvBNAct(channels, channels)
        self.m = nn.Sequential(*(Bottleneck(channels // 2, channels // 2) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat([self.m(self.cv1(x)), self.cv2(x)], dim=1))


class PostActBlock(nn.Module):
    """y = act(x + conv(x)): an activation after the sum, for a layout that forgets it."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.conv(x))


BOTTLENECK = f"{__name__}.Bottleneck"
# the documented recipe (docs/retrofit.md)
YOLO_BOTTLENECK = BlockLayout(branch=("cv1", "cv2"), residual="add")


def _detector() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        ConvBNAct(3, 16, 3, 2),
        SplitStage(16),
        ConvBNAct(16, 32, 3, 2),
        CrossStage(32),
        Bottleneck(32, 32, shortcut=False),
    )
    return randomise_batchnorm(model.eval())


def _input() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def registered():
    register_block_layout(BOTTLENECK, YOLO_BOTTLENECK)
    yield
    unregister_block_layout(BOTTLENECK)


@pytest.mark.usefixtures("registered")
def test_registered_bottlenecks_convert_inside_split_and_cross_stages():
    model = _detector()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        expected = model(_input())
    retrofit(model)
    assert model.preattn_retrofitted == ["1.m.0", "1.m.1", "3.m.0", "3.m.1", "4"]
    assert model[4].skip is None  # no shortcut: attention on a block without residual
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(_input()), expected, atol=1e-6, rtol=1e-5)
    fresh = retrofit(_detector())
    result = fresh.load_state_dict(original, strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and all(
        ".attention." in k or ".mix." in k for k in result.missing_keys
    )
    model.train()(_input()).square().mean().backward()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt.step()
    assert all(v != 0.0 for v in lambdas(model).values())


def test_layouts_of_one_call_are_not_kept():
    model = retrofit(_detector(), layouts={Bottleneck: YOLO_BOTTLENECK}, placement="branch")
    assert len(model.preattn_retrofitted) == 5
    assert BOTTLENECK not in BLOCK_LAYOUTS
    with pytest.raises(ValueError, match="no supported residual block"):
        retrofit(_detector())


def test_a_missing_attribute_names_the_block_and_the_attribute():
    model = _detector()
    wrong = BlockLayout(branch=("cv1", "cv2", "cv3"), residual="add")
    with pytest.raises(
        ValueError,
        match=r"block '1.m.0' \(test_retrofit_layouts.Bottleneck\) has no attribute 'cv3'",
    ):
        retrofit(model, layouts={BOTTLENECK: wrong})
    flag = BlockLayout(branch=("cv1", "cv2"), residual="shortcut")
    with pytest.raises(ValueError, match=r"has no attribute 'shortcut'"):
        retrofit(model, layouts={BOTTLENECK: flag})
    assert not any(isinstance(m, ResidualBlock) for m in model.modules())


def test_a_layout_that_computes_something_else_is_refused_before_any_change():
    model = _detector()
    with torch.no_grad():
        expected = model(_input())
    no_shortcut = BlockLayout(branch=("cv1", "cv2"))  # every block would add its input
    with pytest.raises(ValueError, match=r"block '4' .* computes something else than its"):
        retrofit(model, layouts={BOTTLENECK: no_shortcut})
    swapped = BlockLayout(branch=("cv2", "cv1"), residual="add")  # shapes do not chain
    with pytest.raises(ValueError, match=r"block '1.m.0' .* could not be checked"):
        retrofit(model, layouts={BOTTLENECK: swapped})
    post = nn.Sequential(PostActBlock(4), PostActBlock(4))
    with pytest.raises(ValueError, match=r"block '0' .* computes something else"):
        retrofit(post, layouts={PostActBlock: BlockLayout(branch=("conv",))})
    retrofit(post, layouts={PostActBlock: BlockLayout(branch=("conv",), act="act")})
    assert post.preattn_retrofitted == ["0", "1"]
    assert not any(isinstance(m, ResidualBlock) for m in model.modules())
    assert model.training is False and all(not m.training for m in model.modules())
    with torch.no_grad():
        torch.testing.assert_close(model(_input()), expected)


def test_registration_is_validated():
    with pytest.raises(ValueError, match=r"block_type must be a class or its path"):
        register_block_layout("Bottleneck", YOLO_BOTTLENECK)
    with pytest.raises(TypeError, match=r"layout must be a preattn.BlockLayout, got dict"):
        register_block_layout(BOTTLENECK, {"branch": ("cv1", "cv2")})
    with pytest.raises(ValueError, match=r"'torchvision.models.resnet.BasicBlock' already has"):
        register_block_layout("torchvision.models.resnet.BasicBlock", YOLO_BOTTLENECK)
    with pytest.raises(ValueError, match=r"is built in; its layout cannot be removed"):
        unregister_block_layout("torchvision.models.resnet.BasicBlock")
    with pytest.raises(KeyError, match=r"has no registered layout"):
        unregister_block_layout(BOTTLENECK)
    with pytest.raises(TypeError, match=r"BlockLayout.branch must be a tuple of attribute names"):
        BlockLayout(branch="cv1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"must name at least one attribute"):
        BlockLayout(branch=())
    with pytest.raises(ValueError, match=r"optional names \['se'\], which branch does not"):
        BlockLayout(branch=("cv1",), optional=("se",))
    with pytest.raises(TypeError, match=r"layouts\[.*\] must be a preattn.BlockLayout"):
        retrofit(_detector(), layouts={Bottleneck: ("cv1", "cv2")})
    register_block_layout(Bottleneck, YOLO_BOTTLENECK)
    try:
        register_block_layout(BOTTLENECK, BlockLayout(branch=("cv1", "cv2")), overwrite=True)
        assert BLOCK_LAYOUTS[BOTTLENECK].residual != "add"
    finally:
        unregister_block_layout(Bottleneck)

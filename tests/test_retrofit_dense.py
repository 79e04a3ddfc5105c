"""retrofit() on torchvision's detectors and segmenters (built with weights=None): at λ = 0
the backbone's features and the model's detections or masks are unchanged in eval mode, a
training step gives finite losses and λ a gradient, the original state dict loads with
strict=False missing only the new keys, and only the backbone is converted by default."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn
from torchvision.models import detection, segmentation

from _helpers import randomise_batchnorm
from preattn import ResidualBlock, retrofit
from preattn.mixing import LambdaMix

SIZE = 64
_NONE = {"weights": None, "weights_backbone": None}
# small inputs, every box kept (score threshold 0) so that detections are compared, few of them
_RCNN = {
    "min_size": SIZE,
    "max_size": SIZE,
    "box_score_thresh": 0.0,
    "box_detections_per_img": 10,
    "rpn_pre_nms_top_n_test": 100,
    "rpn_post_nms_top_n_test": 50,
    "rpn_pre_nms_top_n_train": 100,
    "rpn_post_nms_top_n_train": 50,
    "box_batch_size_per_image": 32,
}
_ONE_STAGE = {
    "min_size": SIZE,
    "max_size": SIZE,
    "score_thresh": 0.0,
    "detections_per_img": 10,
    "topk_candidates": 100,
}

# name: (builder, number of blocks converted by default: the backbone's residual-style blocks
# by the architecture's tables, dense-prediction backbones ending where their builders cut)
DETECTORS: dict[str, tuple[Callable[[], nn.Module], int]] = {
    "fasterrcnn_mobilenet_v3_large_fpn": (
        lambda: detection.fasterrcnn_mobilenet_v3_large_fpn(**_NONE, num_classes=3, **_RCNN),
        15,
    ),
    "fasterrcnn_resnet50_fpn": (
        lambda: detection.fasterrcnn_resnet50_fpn(**_NONE, num_classes=3, **_RCNN),
        16,
    ),
    "maskrcnn_resnet50_fpn": (
        lambda: detection.maskrcnn_resnet50_fpn(**_NONE, num_classes=3, **_RCNN),
        16,
    ),
    "keypointrcnn_resnet50_fpn": (
        lambda: detection.keypointrcnn_resnet50_fpn(
            **_NONE, num_classes=2, num_keypoints=5, **_RCNN
        ),
        16,
    ),
    "retinanet_resnet50_fpn": (
        lambda: detection.retinanet_resnet50_fpn(**_NONE, num_classes=3, **_ONE_STAGE),
        16,
    ),
    "fcos_resnet50_fpn": (
        lambda: detection.fcos_resnet50_fpn(**_NONE, num_classes=3, **_ONE_STAGE),
        16,
    ),
    "ssdlite320_mobilenet_v3_large": (
        lambda: detection.ssdlite320_mobilenet_v3_large(
            **_NONE, num_classes=3, score_thresh=0.0, detections_per_img=10, topk_candidates=100
        ),
        14,  # the builder's backbone stops at the C4 expansion: the last block is a head's
    ),
}
SEGMENTERS: dict[str, tuple[Callable[[], nn.Module], int]] = {
    "lraspp_mobilenet_v3_large": (
        lambda: segmentation.lraspp_mobilenet_v3_large(**_NONE, num_classes=3),
        15,
    ),
    "deeplabv3_mobilenet_v3_large": (
        lambda: segmentation.deeplabv3_mobilenet_v3_large(**_NONE, num_classes=3, aux_loss=True),
        15,
    ),
    "deeplabv3_resnet50": (
        lambda: segmentation.deeplabv3_resnet50(**_NONE, num_classes=3, aux_loss=True),
        16,
    ),
    "fcn_resnet50": (lambda: segmentation.fcn_resnet50(**_NONE, num_classes=3), 16),
}
FAST = {"fasterrcnn_mobilenet_v3_large_fpn", "lraspp_mobilenet_v3_large"}


def _cases(table: dict) -> list:
    return [
        pytest.param(name, marks=() if name in FAST else pytest.mark.slow, id=name)
        for name in table
    ]


def _built(table: dict, name: str) -> nn.Module:
    torch.manual_seed(0)
    return randomise_batchnorm(table[name][0]().eval())


def _images() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.rand(3, SIZE, SIZE, generator=g) for _ in range(2)]


def _targets(name: str) -> list[dict[str, torch.Tensor]]:
    boxes = torch.tensor([[4.0, 6.0, 40.0, 44.0], [20.0, 10.0, 60.0, 50.0]])
    target = {"boxes": boxes, "labels": torch.tensor([1, 1])}
    if name.startswith("maskrcnn"):
        masks = torch.zeros(2, SIZE, SIZE, dtype=torch.uint8)
        masks[0, 6:44, 4:40] = masks[1, 10:50, 20:60] = 1
        target["masks"] = masks
    if name.startswith("keypointrcnn"):
        points = torch.tensor([[10.0, 10.0, 1.0], [20.0, 30.0, 1.0], [30.0, 20.0, 1.0]] * 2)
        target["keypoints"] = torch.cat([points[:5], points[:5] + 10]).view(2, 5, 3)
    return [target, {k: v.clone() for k, v in target.items()}]


def _assert_same(got: object, want: object) -> None:
    """Equal tensors at every leaf of nested dicts, lists and tuples."""
    if isinstance(want, torch.Tensor):
        assert isinstance(got, torch.Tensor) and got.shape == want.shape
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    elif isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys()
        for key in want:
            _assert_same(got[key], want[key])
    else:
        assert isinstance(want, list | tuple) and len(got) == len(want)  # type: ignore[arg-type]
        for a, b in zip(got, want, strict=True):  # type: ignore[call-overload]
            _assert_same(a, b)


def _lambda_gradients(model: nn.Module) -> list[float]:
    mixes = [m for m in model.modules() if isinstance(m, LambdaMix)]
    grads = [p.grad for m in mixes for p in m.parameters()]
    assert mixes and all(g is not None and torch.isfinite(g).all() for g in grads)
    return [float(g.abs().sum()) for g in grads]  # type: ignore[union-attr]


def _converted_backbone_only(model: nn.Module, count: int) -> None:
    converted = [n for n, m in model.named_modules() if isinstance(m, ResidualBlock)]
    assert len(converted) == count
    assert converted == model.preattn_retrofitted
    assert all(n.startswith("backbone.") for n in converted)


def _assert_original_state_loads(table: dict, name: str, original: dict) -> None:
    fresh = retrofit(table[name][0]())
    result = fresh.load_state_dict(original, strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys
    assert all(".attention." in k or ".mix." in k for k in result.missing_keys)
    for key, value in original.items():
        assert torch.equal(fresh.state_dict()[key], value), key
    retrofit(table[name][0]()).load_state_dict(fresh.state_dict())  # its own: strictly


@pytest.mark.parametrize("name", _cases(DETECTORS))
def test_detector_keeps_its_detections_trains_and_loads(name):
    model = _built(DETECTORS, name)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    batch = torch.stack(_images())
    with torch.no_grad():
        features, detections = model.backbone(batch), model(_images())
    retrofit(model)
    _converted_backbone_only(model, DETECTORS[name][1])
    model.eval()
    with torch.no_grad():
        _assert_same(model.backbone(batch), features)
        _assert_same(model(_images()), detections)
    _assert_original_state_loads(DETECTORS, name, original)

    losses = model.train()(_images(), _targets(name))
    assert losses and all(torch.isfinite(v) for v in losses.values()), losses
    sum(losses.values()).backward()
    grads = _lambda_gradients(model)
    assert sum(g > 0 for g in grads) > len(grads) // 2


@pytest.mark.parametrize("name", _cases(SEGMENTERS))
def test_segmenter_keeps_its_masks_trains_and_loads(name):
    model = _built(SEGMENTERS, name)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    batch = torch.stack(_images())
    with torch.no_grad():
        expected = model(batch)
    retrofit(model)
    _converted_backbone_only(model, SEGMENTERS[name][1])
    with torch.no_grad():
        _assert_same(model.eval()(batch), expected)
    _assert_original_state_loads(SEGMENTERS, name, original)

    out = model.train()(batch)
    labels = torch.randint(0, 3, (2, SIZE, SIZE), generator=torch.Generator().manual_seed(2))
    losses = [nn.functional.cross_entropy(v, labels) for v in out.values()]
    assert all(torch.isfinite(loss) for loss in losses)
    sum(losses).backward()
    grads = _lambda_gradients(model)
    assert sum(g > 0 for g in grads) > len(grads) // 2


@pytest.mark.parametrize("placement", ["branch", "post", "skip"])
def test_other_placements_keep_a_detectors_features_and_a_segmenters_masks(placement):
    batch = torch.stack(_images())
    detector = _built(DETECTORS, "fasterrcnn_mobilenet_v3_large_fpn")
    segmenter = _built(SEGMENTERS, "lraspp_mobilenet_v3_large")
    with torch.no_grad():
        features, masks = detector.backbone(batch), segmenter(batch)
        retrofit(detector, placement=placement)
        retrofit(segmenter, placement=placement)
        _assert_same(detector.eval().backbone(batch), features)
        _assert_same(segmenter.eval()(batch), masks)
    # with skip, blocks without a residual (the strided ones) stay as they were
    expected = 15 if placement != "skip" else 10
    assert len(detector.preattn_retrofitted) == len(segmenter.preattn_retrofitted) == expected


def test_stages_and_within_reach_into_a_detectors_backbone():
    model = retrofit(
        detection.fasterrcnn_resnet50_fpn(**_NONE, num_classes=3, **_RCNN), stages=[3, 4]
    )
    assert model.preattn_retrofitted[0] == "backbone.body.layer3.0"
    assert len(model.preattn_retrofitted) == 6 + 3  # resnet50's layer3 and layer4
    model = retrofit(
        DETECTORS["fasterrcnn_mobilenet_v3_large_fpn"][0](), within=["backbone.body.13"]
    )
    assert model.preattn_retrofitted == ["backbone.body.13"]


@pytest.mark.slow
def test_ssd_vgg16_is_refused_it_has_no_residual_block():
    model = detection.ssd300_vgg16(**_NONE, num_classes=3)
    with pytest.raises(ValueError, match=r"no supported residual block within \['backbone'\]"):
        retrofit(model)


def test_frozen_stages_stay_frozen_and_their_attention_trains():
    """As torchvision builds a detector for pretrained weights: FrozenBatchNorm2d, conv1 and
    layer1 frozen (trainable_layers=3); retrofit keeps both, its new parameters train."""
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops import FrozenBatchNorm2d

    torch.manual_seed(0)
    backbone = resnet_fpn_backbone(
        backbone_name="resnet18", weights=None, norm_layer=FrozenBatchNorm2d, trainable_layers=3
    )
    model = detection.FasterRCNN(backbone, num_classes=3, **_RCNN).eval()
    names = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert any(".layer1." in n for n in names) and not any(".layer2." in n for n in names)
    frozen = {id(p) for p in model.parameters() if not p.requires_grad}
    with torch.no_grad():
        expected = model(_images())
    retrofit(model)
    with torch.no_grad():
        _assert_same(model(_images()), expected)
    assert {id(p) for p in model.parameters() if not p.requires_grad} == frozen
    new = [n for n, p in model.named_parameters() if ".attention." in n or ".mix." in n]
    assert any("layer1" in n for n in new)
    assert all(p.requires_grad for n, p in model.named_parameters() if n in new)

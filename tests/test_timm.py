"""timm's model API and registry for preattn's networks; checkpoints in and out."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
import torchvision

import preattn.timm  # registers the models
from preattn import retrofit
from preattn.models import SimpleCNN, resnet18
from preattn.train import load_run

NAMES = [
    "preattn_resnet18",
    "preattn_resnet34",
    "preattn_resnet50",
    "preattn_resnet101",
    "preattn_resnet152",
    "preattn_simplecnn",
    "preattn_mobilenetv2_100",
    "preattn_mobilenetv3_small_100",
    "preattn_mobilenetv3_large_100",
]


def test_every_model_is_registered_with_a_pretrained_cfg():
    assert set(timm.list_models("preattn_*")) == set(NAMES)
    for name in ("preattn_resnet18", "preattn_simplecnn", "preattn_mobilenetv3_small_100"):
        model = timm.create_model(name)
        cfg = model.pretrained_cfg
        assert cfg["architecture"] == name
        assert {"input_size", "mean", "std", "first_conv", "classifier"} <= set(cfg)
        assert model.get_submodule(cfg["first_conv"]).in_channels == cfg["input_size"][0]
        assert model.get_submodule(cfg["classifier"]) is model.get_classifier()


def test_create_model_passes_attention_and_timm_options():
    model = timm.create_model(
        "preattn_resnet50",
        placement="branch",
        attention="se",
        num_classes=10,
        in_chans=1,
        drop_path_rate=0.1,
        drop_rate=0.2,
    )
    assert model.spec.placement == "branch" and model.spec.attention == "se"
    assert model.conv1.in_channels == 1 and model.fc.out_features == 10
    # stochastic depth rises linearly to 0.1 at the last block
    assert model.layer1[0].drop_path.__class__.__name__ == "Identity"
    assert model.layer4[-1].drop_path.p == pytest.approx(0.1)
    assert model.drop_rate == 0.2
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(
    "feature_cls",
    ["list", "fx", *(pytest.param(c, marks=pytest.mark.slow) for c in ("hook", "getter", "dict"))],
)
@pytest.mark.parametrize("name,size", [("preattn_resnet18", 64), ("preattn_simplecnn", 28)])
def test_features_only_matches_feature_info(name, size, feature_cls):
    model = timm.create_model(name, features_only=True, feature_cls=feature_cls)
    x = torch.randn(2, model.in_chans if hasattr(model, "in_chans") else 3, size, size)
    out = model(x)
    features = list(out.values()) if isinstance(out, dict) else out
    assert [f.shape[1] for f in features] == model.feature_info.channels()
    assert [size // f.shape[-1] for f in features] == model.feature_info.reduction()


def test_out_indices_select_levels():
    model = timm.create_model("preattn_resnet18", features_only=True, out_indices=(2, 4))
    out = model(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in out] == [128, 512]


@pytest.mark.parametrize("build", [lambda: resnet18(stem="cifar"), lambda: SimpleCNN(in_chans=3)])
def test_model_api(build):
    model = build().eval()
    x = torch.randn(2, 3, 16, 16)
    features = model.forward_features(x)
    pooled = model.forward_head(features, pre_logits=True)
    assert pooled.shape == (2, model.num_features) == (2, model.head_hidden_size)
    torch.testing.assert_close(model.forward_head(features), model.get_classifier()(pooled))
    torch.testing.assert_close(model(x), model.fc(features.mean(dim=(2, 3))))
    final, levels = model.forward_intermediates(x)
    torch.testing.assert_close(final, features)
    assert [t.shape[1] for t in levels] == [i["num_chs"] for i in model.feature_info]
    assert len(model.forward_intermediates(x, indices=2, intermediates_only=True)) == 2
    # no classes: the network returns pooled features
    model.reset_classifier(0)
    torch.testing.assert_close(model(x), pooled)
    model.reset_classifier(4, "max")
    assert model(x).shape == (2, 4)
    torch.testing.assert_close(
        model.forward_head(features, pre_logits=True), features.amax(dim=(2, 3))
    )
    with pytest.raises(ValueError, match=r"global_pool='' .* needs num_classes=0"):
        model.reset_classifier(3, "")


def test_num_classes_zero_at_construction():
    model = resnet18(num_classes=0, stem="cifar")
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 512)


def test_grad_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = resnet18(num_classes=3, stem="cifar").double()
    reference = copy.deepcopy(model)
    model.set_grad_checkpointing()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    model(x).sum().backward()
    reference(x).sum().backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_a_run_loads_through_timm_pretrained(tiny_run):
    run = tiny_run
    loaded = load_run(run, limit_test=4)
    splits, ours = loaded.splits, loaded.model
    # the overlay alone: classes, channels (and a ResNet's stem) come from the run
    model = timm.create_model(
        "preattn_simplecnn", pretrained=True, pretrained_cfg_overlay=preattn.timm.run_overlay(run)
    ).eval()
    assert model.pretrained_cfg["input_size"] == (3, 8, 8)
    assert (model.num_classes, model.in_chans) == (6, 3)
    x = torch.stack([splits.test[i][0] for i in range(4)])
    torch.testing.assert_close(model(x), ours.eval()(x))


def test_the_overlay_alone_never_builds_a_silently_different_network(tiny_runs):
    """What the overlay cannot carry (a width) is an error naming the way that works."""
    run = tiny_runs(width=0.5)
    with pytest.raises(ValueError, match=r"size mismatch .*create_model_from_run\(run\)"):
        timm.create_model(
            "preattn_simplecnn",
            pretrained=True,
            pretrained_cfg_overlay=preattn.timm.run_overlay(run),
        )
    assert preattn.timm.create_model_from_run(run).stem[0].out_channels == 16


@pytest.mark.parametrize(
    "build",
    [lambda: torchvision.models.resnet18(), lambda: timm.create_model("resnet18")],
    ids=["torchvision", "timm"],
)
def test_original_checkpoints_load_into_a_retrofitted_model(build):
    original = build().eval()
    checkpoint = original.state_dict()
    converted = retrofit(build(), stages=(3, 4))
    result = converted.load_state_dict(checkpoint, strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and all(
        ".attention." in k or k.endswith(".mix.lam") for k in result.missing_keys
    )
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(converted.eval()(x), original(x), atol=1e-5, rtol=1e-4)
    # the converted model's own checkpoint keeps the original names and loads back strictly
    saved = converted.state_dict()
    assert "layer3.0.conv1.weight" in saved and "layer3.0.downsample.0.weight" in saved
    retrofit(build(), stages=(3, 4)).load_state_dict(saved, strict=True)

"""What experiments need from training: corruptions, a width multiplier, λ's own LR."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.utils.data import TensorDataset

from _helpers import TINY_CONFIG
from preattn.data.corrupt import CorruptedDataset, Corruption, parse_corruptions
from preattn.mixing import LambdaMix
from preattn.models import SimpleCNN, resnet18
from preattn.train.config import TrainConfig
from preattn.train.loop import StepContext, train, train_one_epoch
from preattn.train.optim import build_optimizer

MEAN, STD = (0.5,), (0.25,)


def _dataset(n: int = 6, size: int = 10, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    pixels = torch.rand(n, 1, size, size, generator=g)
    return TensorDataset((pixels - MEAN[0]) / STD[0], torch.arange(n))


def _pixels(dataset, index: int) -> torch.Tensor:
    return dataset[index][0] * STD[0] + MEAN[0]


# --- corruptions ----------------------------------------------------------------------------


def test_noise_is_the_clamped_gaussian_of_its_generator():
    base = _dataset()
    corrupted = CorruptedDataset(base, ["noise:0.3"], seed=5, split="train", mean=MEAN, std=STD)
    clean = _pixels(base, 2)
    g = Corruption("noise", 0.3).generator(5, 2, "train")
    expected = (clean + 0.3 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    got = corrupted[2][0] * STD[0] + MEAN[0]
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert corrupted[2][1] == 2  # the label is untouched


def test_corruptions_are_deterministic_per_seed_and_sample():
    base = _dataset()
    a, b, c = (
        CorruptedDataset(
            base, ["noise:0.2", "clutter:0.3"], seed=s, split="train", mean=MEAN, std=STD
        )
        for s in (1, 1, 2)
    )
    torch.manual_seed(0)
    first = a[3][0]
    torch.manual_seed(99)  # the global RNG plays no part
    assert torch.equal(first, b[3][0])
    assert not torch.equal(first, c[3][0])
    assert not torch.equal(a[3][0], a[4][0])


def test_training_and_test_images_draw_their_damage_from_separate_streams():
    # the same base images as both splits: with one stream per index, test image i would
    # carry exactly the noise field of training image i
    base = _dataset()
    train = CorruptedDataset(base, ["noise:0.2"], seed=0, split="train", mean=MEAN, std=STD)
    test = CorruptedDataset(base, ["noise:0.2"], seed=0, split="test", mean=MEAN, std=STD)
    for index in range(3):
        field_train = _pixels(train, index) - _pixels(base, index)
        field_test = _pixels(test, index) - _pixels(base, index)
        assert not torch.allclose(field_train, field_test)
    with pytest.raises(ValueError, match="split must be one of"):
        CorruptedDataset(base, ["noise:0.2"], seed=0, split="val", mean=MEAN, std=STD)


def test_occlusion_greys_a_square_of_the_given_area():
    base = _dataset(size=10)
    corrupted = CorruptedDataset(base, ["occlude:0.25"], seed=0, split="train", mean=MEAN, std=STD)
    clean, got = _pixels(base, 1), _pixels(corrupted, 1)
    changed = (got - clean).abs() > 1e-6
    grey = (got - 0.5).abs() < 1e-6
    assert int((grey & (changed | (clean - 0.5).abs().lt(1e-6))).sum()) == 25  # 5x5 = 25 % of 100
    rows = changed[0].any(dim=1).nonzero().flatten()
    cols = changed[0].any(dim=0).nonzero().flatten()
    assert rows.max() - rows.min() < 5 and cols.max() - cols.min() < 5  # one square


def test_clutter_pastes_patches_of_other_images():
    base = _dataset(n=4, size=12)
    corrupted = CorruptedDataset(base, ["clutter:0.5"], seed=3, split="train", mean=MEAN, std=STD)
    clean, got = _pixels(base, 0), _pixels(corrupted, 0)
    changed = (got - clean).abs() > 1e-6
    assert 0 < int(changed.sum()) <= 4 * 18  # 4 patches of round(sqrt(0.125 * 144)) = 4 -> 16
    # every changed pixel value comes from one of the data set's clean images
    pool = torch.cat([_pixels(base, i).flatten() for i in range(4)])
    for value in got[changed]:
        assert (pool - value).abs().min() < 1e-5


def test_corruption_names_are_checked():
    assert parse_corruptions("noise:0.20, occlude:0.25") == ["noise:0.2", "occlude:0.25"]
    assert parse_corruptions("none") == []
    for text, message in [
        ("blur:0.2", "kind one of ['noise', 'occlude', 'clutter']"),
        ("noise", "kind:severity"),
        ("occlude:1.5", "severity of occlude must be in (0, 1]"),
        ("noise:-1", "severity of noise must be > 0"),
        ("noise:x", "must be a number"),
    ]:
        with pytest.raises(
            ValueError,
            match=message.replace("(", r"\(")
            .replace(")", r"\)")
            .replace("[", r"\[")
            .replace("]", r"\]"),
        ):
            parse_corruptions(text)
    with pytest.raises(ValueError, match="eval_corrupt must not repeat"):
        TrainConfig(eval_corrupt=["noise:0.2", "noise:0.2"]).validate()
    with pytest.raises(TypeError, match="train_corrupt must be list"):
        TrainConfig(train_corrupt="noise:0.2").validate()


def test_eval_corruptions_are_measured_after_the_last_epoch(tmp_path):
    config = TrainConfig(
        **TINY_CONFIG,
        epochs=2,
        out=str(tmp_path / "r"),
        train_corrupt=["occlude:0.1"],
        eval_corrupt=["noise:0.5", "clutter:0.3"],
    )
    train(config)
    rows = [
        json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    ]
    assert "test_acc_corrupt" not in rows[0]
    assert set(rows[1]["test_acc_corrupt"]) == {"noise:0.5", "clutter:0.3"}
    assert all(0 <= v <= 1 for v in rows[1]["test_acc_corrupt"].values())
    assert rows[1]["elapsed_s"] == pytest.approx(
        sum(r["epoch_time_s"] + r["eval_time_s"] for r in rows)
    )


# --- width ----------------------------------------------------------------------------------


def _conv_bn_params(cin: int, cout: int) -> int:
    return 9 * cin * cout + 2 * cout


def test_simplecnn_width_scales_every_channel_count():
    model = SimpleCNN(10, in_chans=1, placement="none", width=1.5)
    c32, c64, c128 = 48, 96, 192
    expected = (
        _conv_bn_params(1, c32)
        + _conv_bn_params(c32, c64)
        + 2 * _conv_bn_params(c64, c64)  # block1: two 3x3 conv-BN
        + _conv_bn_params(c64, c128)
        + _conv_bn_params(c128, c128)  # block2's branch
        + (c64 * c128 + 2 * c128)  # block2's 1x1 projection skip
        + _conv_bn_params(c128, c128)  # conv2
        + (c128 * 10 + 10)  # head
    )
    assert sum(p.numel() for p in model.parameters()) == expected
    assert [i["num_chs"] for i in model.feature_info] == [c32, c64, c64, c128, c128]
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_resnet_width_scales_stem_and_stages():
    model = resnet18(num_classes=3, width=0.5)
    assert [i["num_chs"] for i in model.feature_info] == [32, 32, 64, 128, 256]
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)
    for bad, kind in ((0, ValueError), (-1.0, ValueError), ("2", TypeError)):
        with pytest.raises(kind, match="width must be"):
            SimpleCNN(width=bad)


# --- λ's learning rate ----------------------------------------------------------------------


def test_lam_lr_scale_multiplies_the_lambda_step_only():
    torch.manual_seed(0)
    model = SimpleCNN(4, in_chans=1)
    images, labels = torch.randn(8, 1, 12, 12), torch.randint(0, 4, (8,))
    lr, scale = 0.05, 40.0
    optimizer = build_optimizer(model, "sgd", lr, 0.0, momentum=0.0, lam_lr_scale=scale)
    lam_params = {
        id(p) for m in model.modules() if isinstance(m, LambdaMix) for p in m.parameters()
    }
    groups = optimizer.param_groups
    assert [g["lr_scale"] for g in groups] == [1.0, 1.0, scale]
    assert {id(p) for p in groups[2]["params"]} == lam_params and groups[2]["weight_decay"] == 0
    # the gradient of the same batch, in train mode, taken on a copy
    loss_fn = torch.nn.CrossEntropyLoss()
    reference = SimpleCNN(4, in_chans=1)
    reference.load_state_dict(model.state_dict())
    loss_fn(reference(images), labels).backward()
    grads = {n: p.grad.clone() for n, p in reference.named_parameters()}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ctx = StepContext(
        net=model,
        optimizer=optimizer,
        loss_fn=loss_fn,
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        lr_at=lambda step: lr,
        device=torch.device("cpu"),
        memory_format=torch.contiguous_format,
        amp_dtype=None,
    )
    train_one_epoch(ctx, [(images, labels)], 0, 1)
    lam_names = {
        f"{prefix}.{n}"
        for prefix, m in model.named_modules()
        if isinstance(m, LambdaMix)
        for n, _ in m.named_parameters()
    }
    assert lam_names == {"block1.mix.logit", "block2.mix.logit"}
    for name, param in model.named_parameters():
        factor = scale if name in lam_names else 1.0
        step = before[name] - param.detach()
        torch.testing.assert_close(step, factor * lr * grads[name], rtol=1e-4, atol=1e-7)
    assert any(not math.isclose(float(grads[n].abs().sum()), 0.0) for n in lam_names), (
        "λ got no gradient: the check above would be empty"
    )

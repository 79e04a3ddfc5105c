"""Test-time flips (``test_flip``): each evaluated image scored by the mean of the softmax
of it and of its mirror image, against the formula computed by hand."""

import json
import math

import pytest
import torch
from torch import nn

from _helpers import tiny_config
from preattn.train import TrainConfig, train
from preattn.train.evaluate import evaluate
from preattn.train.run_evaluation import evaluate_run


def _net() -> nn.Module:
    """A small classifier that is not mirror-symmetric (its dense layer sees positions)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 5))


def _batches():
    torch.manual_seed(1)
    images, labels = torch.randn(24, 3, 8, 8), torch.randint(0, 5, (24,))
    return [(images[:16], labels[:16]), (images[16:], labels[16:])], images, labels


def test_a_flipped_evaluation_is_the_mean_of_the_two_softmaxes():
    net, (batches, images, labels) = _net(), _batches()
    with torch.no_grad():
        p = (net(images).softmax(1) + net(images.flip(-1)).softmax(1)) / 2
    result = evaluate(net, batches, 5, torch.device("cpu"), flip=True, keep_correct=True)
    expected_loss = -p[torch.arange(24), labels].log().mean().item()
    assert result.loss == pytest.approx(expected_loss, rel=1e-5)
    predicted = p.argmax(1)
    assert result.accuracy == pytest.approx((predicted == labels).float().mean().item())
    assert result.correct.tolist() == (predicted == labels).to(torch.uint8).tolist()
    assert result.confusion.sum() == 24
    # the plain evaluation is the unflipped network's, and differs from it here
    plain = evaluate(net, batches, 5, torch.device("cpu"))
    with torch.no_grad():
        expected_plain = nn.functional.cross_entropy(net(images), labels).item()
    assert plain.loss == pytest.approx(expected_plain, rel=1e-5)
    assert not math.isclose(plain.loss, result.loss, rel_tol=1e-4)


def test_a_mirror_symmetric_network_scores_the_same_with_and_without_flips():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
    batches, _, _ = _batches()
    flipped = evaluate(net, batches, 5, torch.device("cpu"), flip=True)
    plain = evaluate(net, batches, 5, torch.device("cpu"))
    assert flipped.loss == pytest.approx(plain.loss, rel=1e-5)
    assert (flipped.confusion == plain.confusion).all()


def test_a_run_with_test_flip_records_what_its_evaluation_reproduces(tmp_path):
    config = tiny_config(test_flip=True, amp="off", out=str(tmp_path / "run"))
    last = train(config)
    rows = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert last.test_acc == rows[-1]["test_acc"]
    again = evaluate_run(tmp_path / "run")
    assert again.result.accuracy == pytest.approx(rows[-1]["test_acc"], abs=1e-9)
    assert again.result.loss == pytest.approx(rows[-1]["test_loss"], rel=1e-4)


def test_test_flip_is_refused_for_a_data_set_not_trained_with_flips():
    with pytest.raises(ValueError, match="test_flip applies to data sets trained with horizontal"):
        TrainConfig(dataset="mnist", test_flip=True).validate()


def test_test_flip_is_fixed_for_a_run():
    assert "test_flip" not in TrainConfig.resumable()

"""The cluttered canvases (preattn.data.canvas): the composition rule checked by hand,
determinism per (split, index), independent splits, and the data set through every reader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _helpers import write_idx_files
from preattn.data.canvas import CanvasOptions, compose_canvases, resize_items
from preattn.data.registry import build_datasets
from preattn.train.config import TrainConfig


def _items(count: int = 12, side: int = 28, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(1, 256, (count, side, side), dtype=np.uint8), np.arange(count) % 10


def _find(canvas: np.ndarray, item: np.ndarray) -> list[tuple[int, int]]:
    """Every (top, left) at which ``item`` lies in ``canvas`` under a pixel-wise maximum."""
    side = item.shape[0]
    places = []
    for top in range(canvas.shape[0] - side + 1):
        for left in range(canvas.shape[1] - side + 1):
            if np.all(canvas[top : top + side, left : left + side] >= item):
                places.append((top, left))
    return places


def test_without_distractors_a_canvas_is_the_item_on_black():
    images, labels = _items()
    canvases, got_labels = compose_canvases(
        images, labels, 40, CanvasOptions(patches=0), split="train"
    )
    assert canvases.shape == (12, 40, 40) and canvases.dtype == np.uint8
    np.testing.assert_array_equal(got_labels, labels)
    for canvas, item in zip(canvases, images, strict=True):
        (top, left), *rest = _find(canvas, item)
        assert not rest
        outside = canvas.copy()
        outside[top : top + 28, left : left + 28] = 0
        assert outside.max() == 0  # nothing but the item
        np.testing.assert_array_equal(canvas[top : top + 28, left : left + 28], item)


def test_patches_are_cut_from_other_items_and_never_cover_the_item():
    images, labels = _items()
    options = CanvasOptions(patches=3, patch=6)
    canvases, _ = compose_canvases(images, labels, 48, options, split="train")
    for index, canvas in enumerate(canvases):
        # the item stays whole (composition by maximum) ...
        assert _find(canvas, images[index])
        # ... and every lit pixel outside it belongs to some 6x6 window of another item
        lit = int((canvas > 0).sum())
        assert 28 * 28 < lit <= 28 * 28 + 3 * 36


def test_whole_distractor_items_are_of_another_class():
    images, labels = _items(count=20)
    options = CanvasOptions(patches=0, items=2, item_scale=0.5)
    canvases, _ = compose_canvases(images, labels, 56, options, split="test")
    small = resize_items(images, 14)
    for index, canvas in enumerate(canvases[:6]):
        found = [j for j in range(20) if j != index and _find(canvas, small[j])]
        assert found, "no whole distractor item on the canvas"
        assert all(labels[j] != labels[index] for j in found)


def test_canvases_are_fixed_per_split_and_index_and_the_splits_differ():
    images, labels = _items()
    options = CanvasOptions(patches=2, patch=5)
    train_a, _ = compose_canvases(images, labels, 36, options, split="train")
    train_b, _ = compose_canvases(images, labels, 36, options, split="train")
    test, _ = compose_canvases(images, labels, 36, options, split="test")
    np.testing.assert_array_equal(train_a, train_b)
    # the same items as both splits: separate streams place them differently
    assert sum(not np.array_equal(a, b) for a, b in zip(train_a, test, strict=True)) >= 10
    # a canvas depends on its own index only: the first canvases are the same whatever limit
    first, first_labels = compose_canvases(images, labels, 36, options, split="train", limit=5)
    np.testing.assert_array_equal(first, train_a[:5])
    np.testing.assert_array_equal(first_labels, labels[:5])


def test_copies_put_each_test_item_on_several_canvases():
    images, labels = _items(count=6)
    canvases, got = compose_canvases(
        images, labels, 32, CanvasOptions(patches=0, copies=3), split="test"
    )
    assert len(canvases) == 18
    np.testing.assert_array_equal(got, np.tile(labels, 3))
    for index in range(18):
        assert _find(canvases[index], images[index % 6])
    train, _ = compose_canvases(
        images, labels, 32, CanvasOptions(patches=0, copies=3), split="train"
    )
    assert len(train) == 6  # copies enlarge the test set only


def test_items_are_resized_with_antialiasing():
    flat = np.full((2, 28, 28), 200, dtype=np.uint8)
    small = resize_items(flat, 14)
    assert small.shape == (2, 14, 14)
    np.testing.assert_array_equal(small, 200)  # a flat image stays flat


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"patches": -1}, "patches must be an integer >= 0, got -1"),
        ({"patch": 0}, "patch must be an integer >= 1, got 0"),
        ({"item_scale": 1.5}, r"item_scale must be a number in \(0, 1\], got 1.5"),
        ({"copies": 1000}, "copies must be at most 100, got 1000"),
        ({"colour": 1}, r"unknown option\(s\) \['colour'\]"),
        ({"items": True}, "items must be an integer >= 0, got True"),
    ],
)
def test_bad_canvas_options_name_the_option(values, message):
    with pytest.raises(ValueError, match=message):
        CanvasOptions.from_dict(values)


def test_a_canvas_smaller_than_the_item_is_refused():
    with pytest.raises(ValueError, match="must be at least the item's side 28, got 20"):
        TrainConfig(dataset="cluttered-fashion-mnist", image_size=20).validate()
    with pytest.raises(ValueError, match="canvas applies to cluttered-fashion-mnist"):
        TrainConfig(dataset="fashion-mnist", canvas={"patches": 2}).validate()


def test_the_data_set_reads_fashion_mnist_files_and_keeps_to_its_split(tmp_path):
    arrays = write_idx_files(tmp_path / "fm", n_train=30, n_test=12)
    splits = build_datasets(
        "cluttered-fashion-mnist",
        tmp_path / "fm",
        image_size=36,
        canvas={"patches": 0, "copies": 2},
        limit_train=20,
    )
    assert splits.info.image_size == 36 and splits.num_classes == 10
    assert len(splits.train) == 20 and len(splits.test) == 24
    for index in (0, 13):
        image, label = splits.test[index]
        assert image.shape == (1, 36, 36) and label == index % 12 % 10
        pixels = (image[0] * 0.3530 + 0.2860) * 255
        item = arrays["t10k-images-idx3-ubyte"][index % 12].astype(np.float32)
        places = _find(pixels.round().numpy(), item - 0.5)
        assert places, "the test canvas does not hold its own test item"
    # a test canvas is the same whatever limit_test; limit_train makes a smaller task whose
    # canvases hold only its own items
    few = build_datasets(
        "cluttered-fashion-mnist",
        tmp_path / "fm",
        image_size=36,
        canvas={"copies": 2},
        limit_train=4,
        limit_test=5,
    )
    full = build_datasets(
        "cluttered-fashion-mnist", tmp_path / "fm", image_size=36, canvas={"copies": 2}
    )
    assert len(few.test) == 5 and torch.equal(few.test[3][0], full.test[3][0])
    own, _ = compose_canvases(
        arrays["train-images-idx3-ubyte"][:4].astype(np.uint8),
        arrays["train-labels-idx1-ubyte"][:4],
        36,
        CanvasOptions(),
        split="train",
    )
    pixels = ((few.train[2][0][0] * 0.3530 + 0.2860) * 255).round().numpy()
    # training augmentation is a horizontal flip at random: the canvas or its mirror image
    assert np.array_equal(pixels, own[2]) or np.array_equal(pixels, own[2][:, ::-1])


def test_a_run_on_the_canvas_trains_and_its_readers_rebuild_the_canvas(tmp_path):
    from preattn.train.load import load_model, load_run
    from preattn.train.loop import train

    write_idx_files(tmp_path / "fm", n_train=24, n_test=8)
    config = TrainConfig(
        dataset="cluttered-fashion-mnist",
        data_dir=str(tmp_path / "fm"),
        image_size=32,
        canvas={"patches": 1, "patch": 4},
        epochs=1,
        batch_size=8,
        width=0.25,
        out=str(tmp_path / "run"),
        plots=False,
    )
    result = train(config)
    assert 0.0 <= result.test_acc <= 1.0
    loaded = load_model(tmp_path / "run")
    assert loaded.config.canvas == {"patches": 1, "patch": 4}
    assert loaded.info.image_size == 32
    assert loaded.model.eval()(torch.zeros(2, 1, 32, 32)).shape == (2, 10)
    loaded = load_run(tmp_path / "run")  # the readers rebuild the same canvases
    config, splits = loaded.config, loaded.splits
    rebuilt = build_datasets(
        "cluttered-fashion-mnist", tmp_path / "fm", image_size=32, canvas=config.canvas
    )
    assert torch.equal(splits.test[3][0], rebuilt.test[3][0])

"""A validation set held out of the training images (``holdout``): which images it takes,
how it is read, and what a run with one records."""

import json

import pytest
import torch

from _helpers import tiny_config, write_idx_files
from preattn.data.device_batches import DeviceImages
from preattn.data.registry import build_datasets
from preattn.train import TrainConfig, train
from preattn.train.build import build_data
from preattn.train.load import load_run


def _fashion(tmp_path, n_train=40, n_test=10):
    arrays = write_idx_files(tmp_path / "fm", n_train=n_train, n_test=n_test)
    return tmp_path / "fm", arrays


# 8 of 30 images, evenly spaced: i * 30 // 8 for i < 8
HELD_8_OF_30 = [0, 3, 7, 11, 15, 18, 22, 26]


def test_evenly_spaced_images_are_held_out_and_read_as_the_test_set(tmp_path):
    folder, arrays = _fashion(tmp_path)
    splits = build_datasets("fashion-mnist", folder, limit_train=30, holdout=8)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (22, 8, 10)
    raw = torch.as_tensor(arrays["train-images-idx3-ubyte"], dtype=torch.float32) / 255
    mean, std = splits.mean[0], splits.std[0]
    for i, index in enumerate(HELD_8_OF_30):  # normalised, neither cropped nor flipped
        image, label = splits.val[i]
        assert label == index % 10
        torch.testing.assert_close(image[0], (raw[index] - mean) / std)
    # the training split keeps its augmentation and never reaches a held-out image
    assert splits.train.dataset.transform.train and not splits.val.dataset.transform.train
    assert sorted([*splits.train.indices, *HELD_8_OF_30]) == list(range(30))


def test_without_holdout_there_is_no_validation_set(tmp_path):
    folder, _ = _fashion(tmp_path)
    splits = build_datasets("fashion-mnist", folder, limit_train=30)
    assert splits.val is None and len(splits.train) == 30


@pytest.mark.parametrize("holdout", [30, 31])
def test_a_holdout_that_leaves_no_training_image_is_refused_naming_it(tmp_path, holdout):
    folder, _ = _fashion(tmp_path)
    with pytest.raises(ValueError, match=rf"holdout must be an int in \[0, 29\].*got {holdout}"):
        build_datasets("fashion-mnist", folder, limit_train=30, holdout=holdout)
    with pytest.raises(ValueError, match="holdout must be an int >= 0"):
        TrainConfig(holdout=-1).validate()
    # with limit_train the configuration knows it before any data is read
    with pytest.raises(
        ValueError, match=r"holdout must be smaller than limit_train \(30\), got 30"
    ):
        TrainConfig(limit_train=30, holdout=30).validate()


def test_an_image_folder_stored_class_by_class_gives_every_class_to_validation(tmp_path):
    from PIL import Image

    for split, count in (("train", 6), ("val", 1)):
        for name in ("cat", "dog", "fox"):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(folder / f"{i}.png")
    splits = build_datasets("imagefolder", tmp_path, image_size=8, holdout=3)
    assert sorted(label for _, label in splits.val) == [0, 1, 2]
    assert len(splits.train) == 15


def test_the_device_copy_of_the_validation_set_holds_the_held_out_images(tmp_path):
    folder, _ = _fashion(tmp_path)
    splits = build_datasets("fashion-mnist", folder, holdout=6)
    images = DeviceImages.of(splits.val, torch.device("cpu"))
    assert images is not None and len(images) == 6
    batch = next(iter(images.epoch(6, drop_last=False)))
    x, y = batch
    expected = torch.stack([splits.val[i][0] for i in range(6)])
    torch.testing.assert_close(x, expected)
    assert y.tolist() == [(i * 40 // 6) % 10 for i in range(6)]


@pytest.mark.parametrize("device_data", [False, True])
def test_a_run_with_a_validation_set_scores_the_test_set_after_the_last_epoch_only(
    tmp_path, device_data
):
    folder, _ = _fashion(tmp_path, n_train=48, n_test=12)
    config = tiny_config(
        dataset="fashion-mnist",
        data_dir=str(folder),
        image_size=None,
        limit_test=None,
        holdout=16,
        epochs=2,
        device_data=device_data,
        out=str(tmp_path / "run"),
    )
    assert len(build_data(config).val) == 16
    last = train(config)
    rows = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert [("val_acc" in r, "test_acc" in r) for r in rows] == [(True, False), (True, True)]
    assert last.test_acc == rows[-1]["test_acc"] and last.val_acc == rows[-1]["val_acc"]
    # the validation accuracy is over the 16 held-out images
    assert all(round(r["val_acc"] * 16, 6) == round(r["val_acc"] * 16) for r in rows)
    # a reader of the run evaluates the whole test set, not the validation set
    loaded = load_run(tmp_path / "run")
    assert loaded.splits.val is None and len(loaded.splits.test) == 12


def test_a_reader_with_its_own_limit_train_drops_the_validation_set(tmp_path):
    folder, _ = _fashion(tmp_path)
    config = TrainConfig(dataset="fashion-mnist", data_dir=str(folder), holdout=35)
    assert len(build_data(config).val) == 35
    assert build_data(config, limit_train=1).val is None


def test_holdout_is_fixed_for_a_run():
    assert "holdout" not in TrainConfig.resumable()


def test_a_grid_cannot_time_a_target_on_runs_that_hold_images_out():
    from _helpers import tiny_grid, tiny_options
    from preattn.train.config import ConfigError

    with pytest.raises(ConfigError, match="target_acc times the epochs' test accuracy"):
        tiny_grid(target_acc=0.5, base=tiny_options(holdout=8))

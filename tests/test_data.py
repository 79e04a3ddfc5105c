"""Data readers on small files written here, including corrupt ones, and the real set."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _helpers import idx_bytes as _idx_bytes
from _helpers import write_idx_files as _write_mnist
from preattn.data import DatasetError, SyntheticShapes, build_datasets
from preattn.data.cifar import read_cifar
from preattn.data.idx import read_idx
from preattn.data.registry import DEBIAN_FASHION_MNIST, find_idx_files


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_roundtrip(tmp_path, gz):
    arrays = _write_mnist(tmp_path, gz=gz)
    suffix = ".gz" if gz else ""
    images = read_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", expected_ndim=3)
    assert images.shape == (20, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, arrays["train-images-idx3-ubyte"])


def test_read_idx_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope-ubyte"
    with pytest.raises(DatasetError, match=f"{missing}: file not found"):
        read_idx(missing)
    bad_magic = tmp_path / "magic-ubyte"
    bad_magic.write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 8)
    with pytest.raises(DatasetError, match=r"magic-ubyte: not an IDX file \(magic bytes 12340801"):
        read_idx(bad_magic)
    truncated = tmp_path / "short-ubyte"
    truncated.write_bytes(_idx_bytes(np.zeros((5, 28, 28)))[:-100])
    with pytest.raises(DatasetError, match=r"short-ubyte: truncated or padded.*\(5, 28, 28\)"):
        read_idx(truncated)
    not_gzip = tmp_path / "broken.gz"
    not_gzip.write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match=r"broken\.gz: cannot decompress"):
        read_idx(not_gzip)
    with pytest.raises(DatasetError, match="expected an IDX file of 3 dims, got 1"):
        labels = tmp_path / "labels-ubyte"
        labels.write_bytes(_idx_bytes(np.zeros(4)))
        read_idx(labels, expected_ndim=3)


def test_mnist_dataset_from_data_dir(tmp_path):
    arrays = _write_mnist(tmp_path / "mnist", gz=False)
    splits = build_datasets("mnist", tmp_path)
    assert (len(splits.train), len(splits.test), splits.in_chans, splits.num_classes) == (
        20,
        10,
        1,
        10,
    )
    image, label = splits.test[3]
    assert image.shape == (1, 28, 28) and label == 3
    # test split: no augmentation, just scaling and the documented normalisation
    expected = (
        torch.from_numpy(arrays["t10k-images-idx3-ubyte"][3]).float() / 255 - 0.1307
    ) / 0.3081
    torch.testing.assert_close(image[0], expected)


def test_incomplete_and_missing_sets_say_what_is_wrong(tmp_path, monkeypatch):
    monkeypatch.delenv("PREATTN_DATA", raising=False)
    _write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match=r"incomplete mnist data set, missing \['t10k-labels"):
        build_datasets("mnist", tmp_path)
    monkeypatch.setattr("preattn.data.registry.DEBIAN_FASHION_MNIST", tmp_path / "absent")
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
        find_idx_files("fashion-mnist", tmp_path / "empty")


def test_data_dir_from_environment(tmp_path, monkeypatch):
    _write_mnist(tmp_path / "MNIST" / "raw")
    monkeypatch.setenv("PREATTN_DATA", str(tmp_path))
    assert len(build_datasets("mnist").train) == 20


def _write_cifar(root: Path, name: str) -> np.ndarray:
    rng = np.random.default_rng(1)
    if name == "cifar10":
        folder, files, key = (
            root / "cifar-10-batches-py",
            [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"],
            "labels",
        )
    else:
        folder, files, key = root / "cifar-100-python", ["train", "test"], "fine_labels"
    folder.mkdir(parents=True)
    first = None
    for f in files:
        data = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        first = data if first is None else first
        with (folder / f).open("wb") as fh:
            pickle.dump({"data": data, key: [0, 1, 2, 3]}, fh)
    return first


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_read_cifar_channel_major_layout(tmp_path, name):
    first = _write_cifar(tmp_path, name)
    images, labels = read_cifar(tmp_path, name, train=True)
    assert images.shape == ((20 if name == "cifar10" else 4), 32, 32, 3)
    # the first 1024 bytes are the red plane, row-major
    np.testing.assert_array_equal(images[0, :, :, 0], first[0, :1024].reshape(32, 32))
    np.testing.assert_array_equal(images[0, :, :, 2], first[0, 2048:].reshape(32, 32))
    assert labels.tolist()[:4] == [0, 1, 2, 3]
    splits = build_datasets(name, tmp_path)
    assert splits.train[0][0].shape == (3, 32, 32) and splits.in_chans == 3
    assert splits.num_classes == (10 if name == "cifar10" else 100)


def test_cifar_corrupt_files(tmp_path):
    _write_cifar(tmp_path, "cifar10")
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="data_batch_3: not a readable CIFAR pickle batch"):
        read_cifar(tmp_path, "cifar10", train=True)
    with batch.open("wb") as fh:
        pickle.dump({"data": np.zeros((2, 100), dtype=np.uint8), "labels": [0, 1]}, fh)
    with pytest.raises(DatasetError, match=r"data_batch_3: expected data of shape \(N, 3072\)"):
        read_cifar(tmp_path, "cifar10", train=True)
    with pytest.raises(DatasetError, match="cifar100: folder 'cifar-100-python' not found"):
        build_datasets("cifar100", tmp_path)


def test_imagefolder(tmp_path):
    for split in ("train", "val"):
        for cls, colour in (("cat", 30), ("dog", 220)):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.full((40, 50, 3), colour + i, dtype=np.uint8)).save(
                    folder / f"{i}.png"
                )
    splits = build_datasets("imagefolder", tmp_path, image_size=32)
    assert splits.classes == ("cat", "dog") and len(splits.train) == 4
    image, label = splits.test[3]
    assert image.shape == (3, 32, 32) and label == 1
    with pytest.raises(DatasetError, match="expected subfolders train/ and val/"):
        build_datasets("imagefolder", tmp_path / "train")


def test_synthetic_is_deterministic_balanced_and_split():
    a = SyntheticShapes(60, image_size=16, seed=3)
    b = SyntheticShapes(60, image_size=16, seed=3)
    test = SyntheticShapes(60, image_size=16, seed=3, train=False)
    assert torch.equal(a[7][0], b[7][0])
    assert not torch.equal(a[7][0], test[7][0])
    assert np.bincount(a.targets).tolist() == [10] * 6
    assert a[0][0].shape == (3, 16, 16)
    assert SyntheticShapes(6, in_chans=1, image_size=8)[0][0].shape == (1, 8, 8)


def test_limits_keep_a_fixed_prefix():
    splits = build_datasets("synthetic", limit_train=24, limit_test=12, image_size=8)
    assert len(splits.train) == 24 and len(splits.test) == 12


def test_real_fashion_mnist_files():
    """Integration: the Debian package's files (CI installs dataset-fashion-mnist)."""
    assert DEBIAN_FASHION_MNIST.is_dir(), (
        "dataset-fashion-mnist is not installed, so this test fails on purpose (CI installs it "
        "in .ci/run); run `apt-get install dataset-fashion-mnist` to test the real files"
    )
    files = find_idx_files("fashion-mnist", None)
    labels = read_idx(files["train_labels"], expected_ndim=1)
    assert labels.shape == (60000,)
    assert np.bincount(labels).tolist() == [6000] * 10
    images = read_idx(files["test_images"], expected_ndim=3)
    assert images.shape == (10000, 28, 28)
    splits = build_datasets("fashion-mnist", limit_train=10, limit_test=10)
    assert splits.classes[9] == "Ankle boot" and splits.train[0][0].shape == (1, 28, 28)


def test_a_new_data_set_is_one_table_entry(monkeypatch):
    """A DatasetSpec added to the table is found by build_datasets and TrainConfig."""
    import preattn.data.registry as registry
    from preattn.train import TrainConfig

    def load(spec, request):
        images = np.arange(10 * 5 * 5, dtype=np.uint8).reshape(10, 5, 5)
        labels = np.arange(10) % 2

        def transform(t):
            return t.float()

        data = registry.ArrayImageDataset(images, labels, transform)
        return data, data, "memory", spec.classes

    toy = registry.DatasetSpec("toy", load, in_chans=1, image_size=5, classes=("even", "odd"))
    monkeypatch.setitem(registry.DATASET_SPECS, "toy", toy)
    splits = build_datasets("toy", limit_train=4)
    assert (len(splits.train), len(splits.test), splits.num_classes) == (4, 10, 2)
    assert (splits.in_chans, splits.image_size, splits.classes) == (1, 5, ("even", "odd"))
    assert TrainConfig(dataset="toy").validate().dataset == "toy"


def test_image_size_is_refused_for_fixed_size_data_sets(tmp_path):
    _write_mnist(tmp_path)
    with pytest.raises(ValueError, match=r"image_size applies to .*mnist images are 28x28"):
        build_datasets("mnist", tmp_path, image_size=64)

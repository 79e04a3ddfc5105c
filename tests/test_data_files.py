"""Data files a user (or an attacker) hands in: crafted pickles, labels out of range,
corrupt, 16-bit and oversized images. Each gives what its clean 8-bit copy gives, or one
error naming the file; nothing runs, nothing blows up memory."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from PIL import Image

from _helpers import one_line_error
from preattn.cli import main
from preattn.data import DatasetError, build_datasets
from preattn.data.images import open_image
from preattn.data.registry import DATASET_SPECS
from preattn.predict import preprocess_image


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_cifar_batch_runs_no_code(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    payload = _Payload()
    payload.marker = tmp_path / "pwned"
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with (folder / name).open("wb") as fh:
            pickle.dump({"data": payload, "labels": [0]}, fh)
    with pytest.raises(DatasetError, match=r"data_batch_1: .*refused to load posix.system"):
        build_datasets("cifar10", tmp_path)
    assert not payload.marker.exists()


def test_a_real_format_python2_style_cifar_batch_still_loads(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            "batch_label": b"training batch",
            "labels": [1, 2],
            "data": rng.integers(0, 256, (2, 3072), dtype=np.uint8),
            "filenames": [b"a.png", b"b.png"],
        }
        with (folder / name).open("wb") as fh:
            pickle.dump(batch, fh, protocol=2)
    assert len(build_datasets("cifar10", tmp_path).train) == 10


def _idx(array: np.ndarray) -> bytes:
    import struct

    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    return header + array.astype(np.uint8).tobytes()


def test_idx_labels_out_of_range_name_the_file(tmp_path):
    files = {
        "train-images-idx3-ubyte": np.zeros((4, 28, 28)),
        "train-labels-idx1-ubyte": np.array([0, 1, 2, 12]),
        "t10k-images-idx3-ubyte": np.zeros((2, 28, 28)),
        "t10k-labels-idx1-ubyte": np.array([0, 1]),
    }
    for name, array in files.items():
        (tmp_path / name).write_bytes(_idx(array))
    with pytest.raises(
        DatasetError, match=r"train-labels-idx1-ubyte: label 12 out of range for 10"
    ):
        build_datasets("mnist", tmp_path)


def test_cifar_labels_out_of_range_name_the_folder(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with (folder / name).open("wb") as fh:
            pickle.dump({"data": np.zeros((1, 3072), np.uint8), "labels": [-1]}, fh)
    with pytest.raises(DatasetError, match=r"cifar-10-batches-py: label -1 out of range"):
        build_datasets("cifar10", tmp_path)


def test_missing_cifar_says_where_it_looked_or_that_nowhere_was_given(tmp_path, monkeypatch):
    monkeypatch.delenv("PREATTN_DATA", raising=False)
    with pytest.raises(DatasetError) as nowhere:
        build_datasets("cifar10", None)
    assert "not found: no --data-dir given and $PREATTN_DATA is not set" in str(nowhere.value)
    assert "nothing" not in str(nowhere.value)
    with pytest.raises(DatasetError, match=rf"'cifar-10-batches-py' not found in \['{tmp_path}'\]"):
        build_datasets("cifar10", tmp_path)


def test_a_corrupt_image_is_found_before_training(tmp_path, capsys):
    for split in ("train", "val"):
        for cls in ("a", "b"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(folder / f"{i}.png")
    good = (tmp_path / "train" / "b" / "1.png").read_bytes()
    (tmp_path / "train" / "b" / "1.png").write_bytes(good[: len(good) // 2])
    argv = ["train", "--dataset", "imagefolder", "--data-dir", str(tmp_path), "--image-size", "8"]
    assert main([*argv, "--batch-size", "2", "--epochs", "1", "--out", str(tmp_path / "r")]) == 2
    assert "train/b/1.png: not a readable image" in one_line_error(capsys)
    assert not (tmp_path / "r" / "metrics.jsonl").exists()


def test_an_explicit_data_dir_never_falls_back(tmp_path, monkeypatch):
    from preattn.data.registry import find_idx_files

    monkeypatch.setenv("PREATTN_DATA", str(tmp_path / "elsewhere"))
    with pytest.raises(DatasetError) as info:
        find_idx_files("fashion-mnist", tmp_path / "empty")
    assert "/usr/share/datasets" not in str(info.value).split("not found in")[1].split("]")[0]
    assert "elsewhere" not in str(info.value)


def test_image_folder_checks_only_the_images_a_run_reads(tmp_path):
    for split in ("train", "val"):
        folder = tmp_path / split / "a"
        folder.mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(folder / f"{i}.png")
    (tmp_path / "train" / "a" / "2.png").write_bytes(b"broken")  # third in sorted order
    splits = build_datasets("imagefolder", tmp_path, limit_train=2, image_size=8)
    assert len(splits.train) == 2
    with pytest.raises(DatasetError, match=r"train/a/2.png: not a readable image"):
        build_datasets("imagefolder", tmp_path, image_size=8)


# --- image modes and bombs -----------------------------------------------------------------


def _grey_ramp() -> np.ndarray:
    return np.arange(256, dtype=np.uint8).reshape(16, 16)


@pytest.mark.parametrize("channels", [1, 3])
def test_sixteen_bit_grey_reads_as_its_eight_bit_copy(tmp_path, channels):
    eight = _grey_ramp()
    Image.fromarray(eight).save(tmp_path / "g8.png")
    Image.fromarray(eight.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")  # really 16 bits on disk
    a = np.asarray(open_image(tmp_path / "g8.png", channels))
    b = np.asarray(open_image(tmp_path / "g16.png", channels))
    assert b.dtype == np.uint8 and np.array_equal(a, b)
    assert b.max() == 255 and b.min() == 0  # not clipped to white


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "I;16", "I", "1", "CMYK", "F"])
def test_every_pil_mode_reads_as_its_eight_bit_copy(tmp_path, mode):
    rgb = Image.fromarray(np.stack([_grey_ramp()] * 3, axis=-1), "RGB")
    grey = rgb.convert("L")
    if mode in ("I;16", "I"):
        image = Image.fromarray(
            np.asarray(grey).astype(np.int32 if mode == "I" else np.uint16) * 257
        )
        image = image if mode == "I;16" else image.convert("I")
        path = tmp_path / "x.tiff"
    elif mode == "P":  # a 256-entry palette holds the ramp exactly
        image = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
        path = tmp_path / "x.png"
    else:
        image = grey.convert(mode) if mode in ("L", "LA", "1", "F") else rgb.convert(mode)
        path = tmp_path / ("x.tiff" if mode in ("CMYK", "F") else "x.png")
    image.save(path)
    expected = np.asarray((grey.convert("1") if mode == "1" else grey).convert("L"))
    got = np.asarray(open_image(path, 1)).astype(int)
    tolerance = 1 if mode == "CMYK" else 0  # PIL's CMYK <-> RGB round trip
    assert np.abs(got - expected.astype(int)).max() <= tolerance


def test_a_decompression_bomb_is_one_line_in_predict_and_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # a 100x100 header is then a bomb
    bomb = tmp_path / "bomb.png"
    Image.new("L", (100, 100)).save(bomb)
    with pytest.raises(DatasetError, match=r"bomb.png: the image claims more than 1000 pixels"):
        preprocess_image(bomb, DATASET_SPECS["fashion-mnist"].info())
    for split in ("train", "val"):
        folder = tmp_path / "set" / split / "a"
        folder.mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(folder / "0.png")
    Image.new("RGB", (100, 100)).save(tmp_path / "set" / "train" / "a" / "1.png")
    argv = ["train", "--dataset", "imagefolder", "--data-dir", str(tmp_path / "set")]
    assert (
        main([*argv, "--image-size", "8", "--batch-size", "1", "--out", str(tmp_path / "r")]) == 2
    )
    assert "train/a/1.png: the image claims more than" in one_line_error(capsys)


def test_an_image_size_beyond_the_limit_is_refused_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "r"
    argv = ["train", "--dataset", "synthetic", "--image-size", "100000", "--out", str(out)]
    assert main(argv) == 2
    assert "image_size must be at most 4096, got 100000" in one_line_error(capsys)
    assert not out.exists()

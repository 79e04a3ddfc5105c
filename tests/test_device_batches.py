"""The device-resident data path against torchvision's per-sample transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Subset
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from preattn.data.corrupt import CorruptedDataset
from preattn.data.device_batches import DeviceImages, crop_offsets
from preattn.data.registry import ArrayImageDataset
from preattn.data.synthetic import SyntheticShapes
from preattn.data.transforms import ArrayTransform

MEAN, STD = (0.2860,), (0.3530,)


def _images(count: int, size: int = 6, channels: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 256, (count, channels, size, size), generator=g, dtype=torch.uint8)


def _reference(image: torch.Tensor, top: int, left: int, flip: bool, pad: int) -> torch.Tensor:
    """torchvision's functional ops, one image: scale, pad, crop, flip, normalise."""
    size = image.shape[-1]
    x = TF.to_dtype(image, torch.float32, scale=True)
    x = TF.crop(TF.pad(x, [pad]), top, left, size, size)
    if flip:
        x = TF.horizontal_flip(x)
    return TF.normalize(x, list(MEAN) * image.shape[0], list(STD) * image.shape[0])


@pytest.mark.parametrize("channels", [1, 3])
def test_a_batch_is_the_crop_flip_and_normalisation_torchvision_computes(device, channels):
    images = _images(12, channels=channels)
    transform = ArrayTransform(MEAN * channels, STD * channels, 6, pad=2, flip=True, train=True)
    on_device = DeviceImages(images, torch.arange(12), transform, device)
    index = torch.tensor([3, 0, 11, 3, 7, 5])
    top, left = torch.tensor([0, 4, 2, 1, 3, 4]), torch.tensor([4, 0, 2, 3, 1, 4])
    flipped = torch.tensor([False, True, False, True, True, False])
    args = [t.to(device) for t in (index, top, left, flipped)]
    batch = on_device.batch(*args).cpu()
    assert batch.dtype == torch.float32 and batch.shape == (6, channels, 6, 6)
    for row, (i, t, l_, f) in enumerate(zip(index, top, left, flipped, strict=True)):
        expected = _reference(images[i], int(t), int(l_), bool(f), pad=2)
        torch.testing.assert_close(batch[row], expected, rtol=0, atol=1e-6)


def _offset_of(output: torch.Tensor, image: torch.Tensor, pad: int) -> tuple[int, int, bool]:
    """Which (top, left, flip) of ``image`` produced ``output`` (pixels are distinct)."""
    padded = torch.nn.functional.pad(image, (pad,) * 4)
    size = image.shape[-1]
    for top in range(2 * pad + 1):
        for left in range(2 * pad + 1):
            crop = padded[..., top : top + size, left : left + size]
            for flip in (False, True):
                if torch.equal(crop.flip(-1) if flip else crop, output):
                    return top, left, flip
    raise AssertionError("output is no crop of the image")


def test_crops_and_flips_follow_random_crop_and_random_horizontal_flip():
    """Both paths draw top, left uniformly over [0, 2·pad] and flip half the time: their
    frequencies agree within sampling error (2,500 draws each, 25 cells)."""
    pad, draws = 2, 2500
    image = torch.arange(1, 37, dtype=torch.uint8).view(1, 6, 6)  # distinct pixels
    torch.manual_seed(0)
    per_sample = v2.Compose([v2.RandomCrop(6, padding=pad), v2.RandomHorizontalFlip()])
    theirs = [_offset_of(per_sample(image), image, pad) for _ in range(draws)]
    top, left, flipped = crop_offsets(draws, pad, True, torch.Generator().manual_seed(0))
    ours = list(zip(top.tolist(), left.tolist(), flipped.tolist(), strict=True))
    cells = 2 * pad + 1
    for drawn in (theirs, ours):
        counts = np.zeros((cells, cells))
        for t, left_, _ in drawn:
            counts[t, left_] += 1
        expected = draws / cells**2  # 100 per cell, sd 9.8
        assert np.abs(counts - expected).max() < 5 * np.sqrt(expected), counts
        assert abs(sum(f for *_, f in drawn) - draws / 2) < 5 * np.sqrt(draws / 4)
    _, _, never = crop_offsets(100, pad, False, torch.Generator().manual_seed(0))
    assert not never.any()


def test_an_epoch_visits_each_image_once_and_is_fixed_by_its_seed(device):
    images = _images(50)
    transform = ArrayTransform(MEAN, STD, 6, pad=2, flip=True, train=True)
    on_device = DeviceImages(images, torch.arange(50), transform, device)

    def epoch(seed: int, **kwargs):
        batches = on_device.epoch(8, generator=torch.Generator().manual_seed(seed), **kwargs)
        pairs = [(x.cpu(), y.cpu()) for x, y in batches]
        return pairs, batches

    first, batches = epoch(3)
    assert len(batches) == len(first) == 7  # 50 images in batches of 8, the last of 2
    labels = torch.cat([y for _, y in first])
    assert sorted(labels.tolist()) == list(range(50))
    again, _ = epoch(3)
    other, _ = epoch(4)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again, strict=True))
    assert not torch.equal(torch.cat([y for _, y in other]), labels)
    # training batches of a process: full batches only, the same count on every process
    shares = [epoch(3, drop_last=True, rank=r, world_size=3)[0] for r in range(3)]
    seen = [torch.cat([y for _, y in share]).tolist() for share in shares]
    assert [len(s) for s in seen] == [16, 16, 16]  # 50 // 3 = 16 images, 2 batches of 8
    assert len(set(seen[0]) | set(seen[1]) | set(seen[2])) == 48


def test_a_test_set_comes_in_order_unaugmented(device):
    images = _images(10)
    transform = ArrayTransform(MEAN, STD, 6, pad=2, flip=True, train=False)
    on_device = DeviceImages(images, torch.arange(10), transform, device)
    batches = list(on_device.epoch(4, rank=1, world_size=2))
    xs = torch.cat([x.cpu() for x, _ in batches])
    assert torch.cat([y.cpu() for _, y in batches]).tolist() == [1, 3, 5, 7, 9]
    expected = torch.stack([transform(images[i]) for i in (1, 3, 5, 7, 9)])
    torch.testing.assert_close(xs, expected, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="needs a generator"):
        DeviceImages(
            images, torch.arange(10), ArrayTransform(MEAN, STD, 6, train=True), device
        ).epoch(4)


def test_only_in_memory_sets_go_to_the_device(device):
    images = _images(10).squeeze(1).numpy()
    labels = np.arange(10) % 3
    transform = ArrayTransform(MEAN, STD, 6, pad=1, train=True)
    data = ArrayImageDataset(images, labels, transform)
    limited = DeviceImages.of(Subset(Subset(data, range(8)), [5, 1, 2]), device)
    assert limited is not None and limited.labels.tolist() == [2, 1, 2]
    expected = torch.nn.functional.pad(torch.from_numpy(images[[5, 1, 2]]), (1,) * 4)
    assert torch.equal(limited.padded.cpu().squeeze(1), expected)
    assert DeviceImages.of(SyntheticShapes(8, train=True, image_size=8), device) is None
    corrupted = CorruptedDataset(data, ["noise:0.1"], seed=0, split="train", mean=MEAN, std=STD)
    assert DeviceImages.of(corrupted, device) is None
    own = ArrayImageDataset(images, labels, lambda t: t.float())
    assert DeviceImages.of(own, device) is None

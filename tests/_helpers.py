"""Shared test helpers."""

from __future__ import annotations

import gzip
import json
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from preattn.train import TrainConfig

# the wall-clock fields of a metrics record: they differ between identical runs
TIMING_KEYS = (
    "images_per_s",
    "epoch_time_s",
    "eval_time_s",
    "elapsed_s",
    "wall_start",
    "wall_end",
)


def metrics_without_timings(run: Path) -> list[dict]:
    """The run's metrics records without :data:`TIMING_KEYS`."""
    rows = [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in rows]


# The tiny run, declared once: TrainConfig keywords (without ``epochs``) for 32 generated 8x8
# images, 2 optimiser steps per epoch, no plots, on the CPU (the tests that follow
# `pytest --device` replace the device). One epoch takes about a second. Every test that
# trains "a tiny run" starts from these: `tiny_config` as a TrainConfig, `tiny_flags` on the
# command line, and the session's finished runs (`tiny_run`, `tiny_runs` in conftest.py).
TINY_CONFIG = dict(
    device="cpu",
    dataset="synthetic",
    image_size=8,
    limit_train=32,
    limit_test=12,
    batch_size=16,
    lr=0.05,
    plots=False,
)


def tiny_options(**changes: Any) -> dict[str, Any]:
    """:data:`TINY_CONFIG` for one epoch, with ``changes`` applied (TrainConfig keywords)."""
    return {**TINY_CONFIG, "epochs": 1, **changes}


def tiny_config(**changes: Any) -> TrainConfig:
    """The tiny run as a :class:`TrainConfig` (:func:`tiny_options`)."""
    return TrainConfig(**tiny_options(**changes))


def tiny_flags(**changes: Any) -> list[str]:
    """The tiny run as ``preattn train`` flags (:func:`tiny_options`): ``--image-size 8``,
    booleans as ``true``/``false``."""
    flags: list[str] = []
    for key, value in tiny_options(**changes).items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        flags += [f"--{key.replace('_', '-')}", text]
    return flags


# the same one-epoch run as command-line flags
TINY_TRAIN_FLAGS = tiny_flags()


def copy_run(run: Path, folder: Path, name: str = "r") -> Path:
    """A copy of the run directory ``run`` as ``folder/name``, for a test that changes it
    (the session's shared runs, ``tiny_runs`` in conftest.py, are never changed)."""
    return Path(shutil.copytree(run, folder / name))


def randomise_batchnorm(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm2d non-trivial affine parameters and running statistics.

    Freshly built BatchNorms are the identity in eval mode (mean 0, var 1, weight 1, bias 0),
    which would let a wrong wiring of BN pass unnoticed; trained weights never look like that.
    """
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return module


def assert_fx_trace_equals_eager(model: nn.Module, x: torch.Tensor) -> None:
    """``torch.fx.symbolic_trace(model)`` computes what ``model`` computes on ``x``, in train
    and in eval mode (train-mode BatchNorm statistics reset between the two runs, and the
    same random numbers drawn by both, for dropout and stochastic depth)."""
    for training in (True, False):
        model.train(training)
        graph = torch.fx.symbolic_trace(model)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        with torch.random.fork_rng():
            expected = model(x)
        model.load_state_dict(state)  # BatchNorm statistics moved: start again
        torch.testing.assert_close(graph(x), expected, atol=1e-10, rtol=1e-8)


def one_line_error(capsys) -> str:
    """What the command printed on stderr, checked to be one line without a traceback."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def idx_bytes(array: np.ndarray) -> bytes:
    """``array`` as an IDX file of unsigned bytes (the MNIST format)."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_files(
    folder: Path, n_train: int = 20, n_test: int = 10, gz: bool = True, seed: int = 0
) -> dict[str, np.ndarray]:
    """The four (Fashion-)MNIST IDX files of random 28x28 images, labels ``i % 10``, in
    ``folder``; returns the arrays by file stem."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    for name, array in arrays.items():
        data = idx_bytes(array)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


def tiny_grid(**changes):
    """A grid of two tiny one-epoch variants (``none``, the reference, and ``pre``) over seeds
    0 and 1; ``changes`` replace its keys (new variants: the first is the reference unless
    ``reference`` is given)."""
    from preattn.ablate import Grid

    values = {
        "base": tiny_options(),
        "variants": {"none": {"placement": "none"}, "pre": {"placement": "pre"}},
        "reference": "none",
        "seeds": [0, 1],
    }
    if changes.get("variants") and "reference" not in changes:
        changes["reference"] = next(iter(changes["variants"]))
    values.update(changes)
    return Grid.from_dict(values)

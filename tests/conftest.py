"""``pytest --device cuda``: the module and training tests that take the ``device`` fixture
run on that device (default ``cpu``); the others are CPU tests by design (multi-process
gloo, exact float32 comparisons with CPU references, timings of this machine's CPU)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from _helpers import copy_run, tiny_config, write_idx_files


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--device",
        default="cpu",
        help="torch device for the tests that take the `device` fixture: cpu (default), "
        "cuda, cuda:N",
    )


@pytest.fixture(scope="session")
def device(request: pytest.FixtureRequest) -> torch.device:
    """The device of ``pytest --device`` (an error, not a skip, when it is not there).

    On CUDA, TF32 is switched off for the session: the tests compare float32 results with
    tolerances of 1e-5, which TF32 convolutions and matrix products (10-bit mantissas)
    do not meet; the training tests pick their precision themselves."""
    name = request.config.getoption("--device")
    try:
        chosen = torch.device(name)
    except RuntimeError:
        raise pytest.UsageError(
            f"--device must be a torch device such as cuda:0, got {name!r}"
        ) from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError(f"--device {name}: CUDA is not available on this machine")
    if chosen.type == "cuda":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    return chosen


@pytest.fixture
def train_device(device: torch.device) -> dict[str, object]:
    """TrainConfig options that put a training test on ``--device``; on CUDA with
    deterministic kernels, as exact-resume comparisons need."""
    return {"device": str(device), "deterministic": device.type == "cuda"}


@pytest.fixture
def fashion_files(tmp_path: Path) -> Path:
    """A folder with Fashion-MNIST-format files: 48 training and 24 test images."""
    folder = tmp_path / "fashion-files"
    write_idx_files(folder, n_train=48, n_test=24)
    return folder


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``tiny_runs(**changes)``: the finished run of ``tiny_config(**changes)``, trained once
    per session for each set of changes. Shared by every test that asks for it: read it,
    never change it (``_helpers.copy_run`` first)."""
    runs: dict[tuple[tuple[str, Any], ...], Path] = {}

    def finished(**changes: Any) -> Path:
        key = tuple(sorted(changes.items()))
        if key not in runs:
            from preattn.train import train

            out = tmp_path_factory.mktemp("tiny-run") / "r"
            train(tiny_config(**changes, out=str(out)))
            runs[key] = out
        return runs[key]

    return finished


@pytest.fixture(scope="session")
def tiny_run(tiny_runs: Callable[..., Path]) -> Path:
    """The session's finished one-epoch tiny run (read it; :func:`run_copy` to change it)."""
    return tiny_runs()


@pytest.fixture
def run_copy(tiny_run: Path, tmp_path: Path) -> Path:
    """This test's own copy of :func:`tiny_run`, ``tmp_path / "r"``."""
    return copy_run(tiny_run, tmp_path)

"""How the backends pick their kernels during a run: fast, or deterministic.

* ``deterministic=False`` (default): on CUDA, ``cudnn.benchmark`` times the convolution
  algorithms for each new input shape once and keeps the fastest (a training run has one
  or two shapes); TF32 stays as PyTorch sets it.
* ``deterministic=True``: ``torch.use_deterministic_algorithms(True)`` (an operator without a
  deterministic implementation warns), ``cudnn.deterministic``, no benchmarking, and the
  cuBLAS workspace setting deterministic matrix products need
  (``CUBLAS_WORKSPACE_CONFIG=:4096:8``, unless set already). That is what an exact resume
  on CUDA needs; on a CPU training is deterministic either way.

The settings are process-wide; :func:`kernel_settings` restores the previous ones when the
run ends, so a run inside a larger program leaves it as it found it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

__all__ = ["kernel_settings"]

CUBLAS_DETERMINISTIC = ":4096:8"


@contextlib.contextmanager
def kernel_settings(device: torch.device, deterministic: bool) -> Iterator[None]:
    """Within the block, kernels for ``device`` chosen as the module docstring says."""
    cudnn = torch.backends.cudnn
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        cudnn.deterministic,
        cudnn.benchmark,
    )
    try:
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC)
            torch.use_deterministic_algorithms(True, warn_only=True)
            cudnn.deterministic, cudnn.benchmark = True, False
        elif device.type == "cuda":
            cudnn.benchmark = True
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        cudnn.deterministic, cudnn.benchmark = before[2], before[3]

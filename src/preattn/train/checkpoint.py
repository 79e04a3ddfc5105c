"""Run-directory checkpoints: weights as safetensors, training state via ``torch.save``.

A run directory holds ``model.safetensors`` (the model's state dict, with the epoch in its
metadata) and ``state.pt`` (optimizer, scheduler, AMP scaler, RNG and epoch), both written
atomically (a temporary file in the same directory, then ``os.replace``), so a crash never
leaves a half-written file. ``state.pt`` is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .._io import atomic_write

__all__ = ["STATE_FILE", "WEIGHTS_FILE", "atomic_write", "load_state", "load_weights", "save"]

WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "state.pt"


def save(run_dir: Path, model: torch.nn.Module, state: dict[str, Any], epoch: int) -> None:
    """Write the weights, then the training state, of ``epoch`` (1-based, completed)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(
        run_dir / WEIGHTS_FILE,
        lambda p: save_file(tensors, str(p), metadata={"epoch": str(epoch)}),
    )
    atomic_write(run_dir / STATE_FILE, lambda p: torch.save({**state, "epoch": epoch}, p))


def load_weights(run_dir: Path) -> tuple[dict[str, torch.Tensor], int]:
    """Read ``model.safetensors`` of a run: (state dict, epoch)."""
    path = Path(run_dir) / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no weights in run directory {run_dir}")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        epoch = int((fh.metadata() or {}).get("epoch", 0))
    return load_file(str(path)), epoch


def load_state(run_dir: Path) -> dict[str, Any]:
    """Read ``state.pt`` of a run with ``weights_only=True``."""
    path = Path(run_dir) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no training state in run directory {run_dir}")
    return torch.load(path, map_location="cpu", weights_only=True)

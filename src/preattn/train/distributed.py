"""DDP set-up from the environment ``torchrun`` provides (RANK, WORLD_SIZE, LOCAL_RANK).

Backend: NCCL on CUDA, gloo on CPU. Without torchrun (WORLD_SIZE unset or 1) everything
runs in one process and the helpers below are no-ops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = [
    "DistContext",
    "all_reduce_sum",
    "barrier",
    "init_distributed",
    "pick_device",
    "shutdown",
]


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(requested: str, local_rank: int = 0) -> torch.device:
    """The torch device of a ``device`` option: ``auto`` is CUDA when available, else the
    CPU; ``cuda`` without an index is ``cuda:local_rank``. Raises ``ValueError`` for a
    device that is not there (naming how many CUDA devices are)."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise ValueError(
            f"device must be auto, cpu, cuda, cuda:N or another torch device, got {requested!r}"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        count = torch.cuda.device_count()
        if device.index >= count:
            raise ValueError(
                f"device cuda:{device.index} requested (LOCAL_RANK={local_rank}) but only "
                f"{count} CUDA device(s) are visible; start at most {count} process(es) per "
                "machine (torchrun --nproc-per-node) or choose another --device"
            )
        torch.cuda.set_device(device)
    return device


def init_distributed(device: str = "auto") -> DistContext:
    """Start the process group when launched by torchrun; return this process's context."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch_device = pick_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if torch_device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return DistContext(rank, world_size, local_rank, torch_device)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all processes (in place) and return it."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()

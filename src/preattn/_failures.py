"""Failures of the machine rather than of the input: a full disk, exhausted memory.

Each is recognised by what the operating system or PyTorch raises (``ENOSPC``/``EDQUOT``;
``MemoryError``, ``torch.OutOfMemoryError``, the CPU allocator's "can't allocate memory";
PyTorch's archive writer failing mid-file, "unexpected pos", on a full disk) and told in one
line that says what happened and what to change.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

__all__ = ["disk_full_message", "is_disk_full", "out_of_memory_message", "writer_failed"]

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
# what torch.save's archive writer says when a write comes up short
_WRITER_FAILURE = ("PytorchStreamWriter", "unexpected pos", "file write failed")
# free bytes below which a failed write is taken for a full disk
LOW_SPACE = 16 << 20
_OUT_OF_MEMORY = ("out of memory", "can't allocate memory", "DefaultCPUAllocator")


def is_disk_full(exc: BaseException) -> bool:
    """An ``OSError`` for a full disk or an exhausted quota."""
    return isinstance(exc, OSError) and exc.errno in _DISK_FULL


def writer_failed(exc: BaseException) -> bool:
    """PyTorch's archive writer (``torch.save``) could not write its file."""
    return isinstance(exc, RuntimeError) and any(s in str(exc) for s in _WRITER_FAILURE)


def low_on_space(folder: Path) -> bool:
    """Whether the disk holding ``folder`` has less than :data:`LOW_SPACE` bytes free."""
    try:
        return shutil.disk_usage(folder).free < LOW_SPACE
    except OSError:
        return False


def disk_full_message(exc: OSError) -> str:
    """One line for a full disk: what could not be written and what to change (the
    error's own text when it already says that, as a run's failed commit does)."""
    if exc.strerror and exc.errno is not None and exc.strerror != os.strerror(exc.errno):
        return exc.strerror
    where = f" writing {exc.filename}" if exc.filename else ""
    return (
        f"out of disk space{where} ({exc.strerror or 'No space left on device'}): free space "
        "on that disk or choose another --out; a run keeps its last complete epoch and "
        "continues with --resume"
    )


def out_of_memory_message(exc: BaseException) -> str | None:
    """One line for exhausted memory (``None`` when ``exc`` is something else)."""
    if not isinstance(exc, MemoryError | RuntimeError):
        return None
    if not (isinstance(exc, MemoryError) or any(s in str(exc) for s in _OUT_OF_MEMORY)):
        return None
    first = next(iter(str(exc).strip().splitlines()), "")
    detail = f" ({first[:160]})" if first else ""
    return f"out of memory{detail}: use a smaller --batch-size, --image-size, --width or model"

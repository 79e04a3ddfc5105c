"""Atomic file writes: a temporary file beside the target, then one ``os.replace``.

A crash or a full disk never leaves a half-written file at ``path``: either the old
content or the new one is there.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_text", "set_file_mode"]

FILE_MODE = 0o644


def set_file_mode(path: Path) -> None:
    """Mode 0644 less the process umask: every file a run writes gets the same mode."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, FILE_MODE & ~umask)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it onto ``path``.

    The file gets mode 0644 (less the process umask), like any other file the run writes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        set_file_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """``atomic_write`` of a UTF-8 text."""
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))

"""Only regular files are read as images, records or checkpoints.

Opening a FIFO for reading blocks until a writer comes (forever, for a forgotten pipe), a
character device such as ``/dev/zero`` never ends, and a directory is not content: each is
refused by its path before it is opened, with one line that says what it is.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["irregular_kind", "require_regular_file"]

_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def irregular_kind(path: str | Path) -> str | None:
    """What ``path`` is when it exists and is not a regular file (links followed), e.g.
    ``"a FIFO (named pipe)"``; ``None`` for a regular file or a path that does not exist
    (its reader says it is missing)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def require_regular_file(
    path: str | Path, error: type[Exception] = ValueError, what: str = "file"
) -> None:
    """Raise ``error`` naming ``path`` when it exists and is not a regular file."""
    kind = irregular_kind(path)
    if kind is not None:
        raise error(f"{path}: {kind}, not a regular {what}; only regular files are read")

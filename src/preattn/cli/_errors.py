"""How an error reaches the console: one line, and only preattn's own refusals as usage
errors (a ``TypeError`` a bug raised keeps its traceback)."""

from __future__ import annotations

import linecache
from pathlib import Path

from .._failures import disk_full_message, is_disk_full

__all__ = ["one_line", "raised_by_preattn"]

# the preattn package: a `raise` in a file below it is preattn's own
_PACKAGE = Path(__file__).resolve().parents[1]


def one_line(exc: BaseException) -> str:
    """The error's message on one line (an OSError with its file name; a full disk says
    what to change)."""
    if is_disk_full(exc):
        text = disk_full_message(exc)  # type: ignore[arg-type]
    elif isinstance(exc, OSError) and exc.filename and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def raised_by_preattn(exc: BaseException) -> bool:
    """Whether ``exc`` was raised by a ``raise`` statement of preattn's own code (its
    validation refusing a value), not by a library, a caller or a call that went wrong."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    filename = tb.tb_frame.f_code.co_filename
    if not Path(filename).resolve().is_relative_to(_PACKAGE):
        return False
    return linecache.getline(filename, tb.tb_lineno).lstrip().startswith("raise ")

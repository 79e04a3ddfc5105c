"""preattn's log records as the console lines a command shows.

The library logs what it says as it goes (a run's sizes, progress, one line per epoch, an
ablation's finished runs) at INFO on module loggers under ``preattn`` and prints nothing:
a Python caller sees those lines only once it configures :mod:`logging`, as with timm.
:func:`console_lines` is what the ``preattn`` command (and an ablation's run log) uses to
show them: each record's message alone, one line each, on stdout.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import TextIO

__all__ = ["console_lines"]

LOGGER = "preattn"


class _CurrentStdout(logging.StreamHandler):
    """Each record's message on whatever ``sys.stdout`` is when it is emitted (so a
    ``contextlib.redirect_stdout`` or a test's capture receives it), flushed at once."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))
        self.setLevel(logging.INFO)

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        """The stream is always the current stdout: what the base class sets is dropped."""

    def handleError(self, record: logging.LogRecord) -> None:
        """An error writing a line is raised, as ``print`` would raise it (a closed pipe
        ends ``preattn ... | head`` quietly, a full disk stops the run), not reported and
        passed over as :mod:`logging` does by default."""
        raise  # the exception emit is handling


@contextlib.contextmanager
def console_lines() -> Iterator[None]:
    """While open: records of INFO and above on the ``preattn`` logger tree are written to
    stdout as plain lines (format ``%(message)s``). Nested or repeated use adds no second
    handler (no line twice); on exit the ``preattn`` logger is as it was before. The root
    logger is left alone, and records still propagate to it."""
    logger = logging.getLogger(LOGGER)
    if any(isinstance(handler, _CurrentStdout) for handler in logger.handlers):
        yield
        return
    handler, level = _CurrentStdout(), logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)

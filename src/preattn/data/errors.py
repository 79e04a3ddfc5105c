"""The error raised for a missing or malformed data file."""

from __future__ import annotations

__all__ = ["DatasetError"]


class DatasetError(ValueError):
    """A data file is missing, truncated or in the wrong format; the message names it."""

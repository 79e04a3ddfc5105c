"""What a grid's finished runs measured after their last epoch, read from their metrics rows.

``Runs`` is ``{variant: {seed: metrics rows}}`` (one dict per epoch, ``metrics.jsonl``).
The report's statistics and the figures read the same values through these functions.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Runs", "corruption_names", "final_accuracies"]

Runs = dict[str, dict[int, list[dict[str, Any]]]]


def corruption_names(runs: Runs) -> list[str]:
    """The corrupted test sets (``eval_corrupt`` names) any run was evaluated on after its
    last epoch, in the order they first appear."""
    return list(
        dict.fromkeys(
            name
            for by_seed in runs.values()
            for rows in by_seed.values()
            for name in rows[-1].get("test_acc_corrupt", {})
        )
    )


def final_accuracies(
    by_seed: dict[int, list[dict[str, Any]]], corruption: str | None = None
) -> dict[int, float]:
    """``{seed: accuracy after the last epoch}`` on the test set, or on the ``corruption``
    of it (seeds whose run was not evaluated on it are left out)."""
    finals = {}
    for seed, rows in by_seed.items():
        last = rows[-1] if corruption is None else rows[-1].get("test_acc_corrupt", {})
        value = last.get("test_acc" if corruption is None else corruption)
        if value is not None:
            finals[seed] = value
    return finals

"""What a grid's finished runs measured after their last epoch, read from their metrics rows.

``Runs`` is ``{variant: {seed: metrics rows}}`` (one dict per epoch, ``metrics.jsonl``).
The report's statistics and the figures read the same values through these functions.

A *metric* is where a final accuracy was measured: ``test_acc`` (the test set, every run),
``val_acc`` (the held-out training images of runs with ``holdout``) or the name of a
corrupted test set (``eval_corrupt``, e.g. ``noise:0.2``).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "TEST",
    "VALIDATION",
    "Runs",
    "corruption_names",
    "final_accuracies",
    "final_value",
    "has_validation",
    "metric_label",
    "metric_names",
]

Runs = dict[str, dict[int, list[dict[str, Any]]]]

TEST = "test_acc"
VALIDATION = "val_acc"


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


def has_validation(runs: Runs) -> bool:
    """Whether any run measured a validation accuracy after its last epoch (``holdout``)."""
    lasts = (rows[-1] for by_seed in runs.values() for rows in by_seed.values())
    return any(last.get(VALIDATION) is not None for last in lasts)


def metric_names(runs: Runs) -> list[str]:
    """Every metric the runs were evaluated on after their last epoch: ``test_acc``, then
    ``val_acc`` where runs held images out, then the corrupted test sets."""
    return [TEST, *([VALIDATION] if has_validation(runs) else []), *corruption_names(runs)]


def metric_label(metric: str) -> str:
    """How a report names ``metric``: "test accuracy", "validation accuracy", or "test
    accuracy under `noise:0.2`"."""
    if metric == TEST:
        return "test accuracy"
    if metric == VALIDATION:
        return "validation accuracy"
    return f"test accuracy under `{metric}`"


def final_value(row: dict[str, Any], metric: str = TEST) -> float | None:
    """``metric``'s accuracy in one metrics row (None where the row has none)."""
    if metric in (TEST, VALIDATION):
        return row.get(metric)
    return row.get("test_acc_corrupt", {}).get(metric)


def final_accuracies(
    by_seed: dict[int, list[dict[str, Any]]], metric: str = TEST
) -> dict[int, float]:
    """``{seed: accuracy after the last epoch}`` on ``metric`` (seeds whose run was not
    evaluated on it are left out)."""
    finals = {}
    for seed, rows in by_seed.items():
        value = final_value(rows[-1], metric)
        if value is not None:
            finals[seed] = value
    return finals

"""Statistics over seeds: Student-t intervals and paired differences (``scipy.stats``).

For values ``x_1..x_n`` (one per seed)::

    mean  m = Σ x_i / n,      sample std  s = sqrt(Σ (x_i − m)² / (n − 1))
    95 % interval  m ± t_{0.975, n−1} · s / √n

A paired difference to the reference uses ``d_i = x_i − r_i`` over the seeds both have: its
mean, the same interval on ``d``, and the two-sided paired t-test p-value
(``scipy.stats.ttest_rel``). With fewer than 2 values the interval (and p) is undefined
(``None``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["paired_difference", "summarise"]


def summarise(values: Sequence[float], bounds: tuple[float, float] | None = None) -> dict[str, Any]:
    """``{"n", "mean", "std", "ci95": [lo, hi] | None}`` of ``values``; ``bounds``: the
    range the quantity cannot leave (accuracy: (0, 1)), to which the interval is clipped."""
    from scipy import stats

    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "ci95": None}
    mean = statistics.fmean(values)
    if n < 2:
        return {"n": 1, "mean": mean, "std": None, "ci95": None}
    std = statistics.stdev(values)
    half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return {"n": n, "mean": mean, "std": std, "ci95": [low, high]}


def paired_difference(
    values: Mapping[int, float], reference: Mapping[int, float]
) -> dict[str, Any] | None:
    """Mean, 95 % interval and paired t-test p of ``values[s] − reference[s]`` over the seeds
    ``s`` both hold; ``None`` when they share none. ``p`` is ``None`` below 2 pairs; when
    every seed gives the same difference it is 1.0 (all 0) or 0.0 (the limit of the test)."""
    from scipy import stats

    seeds = sorted(set(values) & set(reference))
    if not seeds:
        return None
    diffs = [values[s] - reference[s] for s in seeds]
    out = summarise(diffs)
    out["seeds"] = seeds
    if len(seeds) < 2:
        out["p"] = None
    elif max(diffs) - min(diffs) <= 1e-12 * max(1.0, abs(out["mean"])):
        # every seed gives the same difference: no spread, t = 0/0 or ±inf
        out["p"] = 1.0 if out["mean"] == 0 else 0.0
    else:
        test = stats.ttest_rel([values[s] for s in seeds], [reference[s] for s in seeds])
        out["p"] = float(test.pvalue)
    return out

"""Statistics over seeds: Student-t intervals and paired differences (``scipy.stats``).

For values ``x_1..x_n`` (one per seed)::

    mean  m = Σ x_i / n,      sample std  s = sqrt(Σ (x_i − m)² / (n − 1))
    95 % interval  m ± t_{0.975, n−1} · s / √n

A paired difference to the reference uses ``d_i = x_i − r_i`` over the seeds both have: its
mean, the same interval on ``d``, and the two-sided paired t-test p-value
(``scipy.stats.ttest_rel``). With fewer than 2 values the interval (and p) is undefined
(``None``).

Deciding a claim (:func:`verdict`), at level α = 0.05:

* **Holm** (:func:`holm`): the p-values of a grid's ``m`` paired tests, sorted
  ``p_(1) ≤ … ≤ p_(m)``, become ``p̃_(i) = max_{j ≤ i} min(1, (m − j + 1) · p_(j))``; a
  difference is significant when ``p̃ < α`` (the chance of any false positive among the
  ``m`` stays below α).
* **Equivalence** (:func:`equivalence_p`, two one-sided t-tests against a smallest effect
  of interest ``Δ``): ``H₀: mean d ≤ −Δ`` and ``H₀: mean d ≥ +Δ`` are each tested with a
  one-sided one-sample t-test; ``p_TOST`` is the larger p. ``p_TOST < α`` says the
  difference lies within ``±Δ``.
* **Seeds to resolve ±Δ** (:func:`seeds_to_resolve`): the smallest ``n`` with
  ``t_{0.975, n−1} · s / √n ≤ Δ``, for the spread ``s`` of the differences: about that
  many seeds make the 95 % interval no wider than ``±Δ``. At that ``n`` a true zero is
  called equivalent only about half the time: it places the interval, it does not decide.
* **Power** (:func:`power`), for paired differences ``d_i ~ N(μ, σ²)`` over ``n`` seeds,
  ``d̄ ~ N(μ, σ²/n)`` independent of ``s² ~ σ² χ²_{n−1} / (n − 1)``:

  - *equivalence power* at ``μ = 0``: TOST rejects both nulls exactly when
    ``|d̄| < Δ − t_{1−α, n−1} · s / √n``, so
    ``P = ∫ [Φ(√n (Δ − t·s/√n)/σ) − Φ(−√n (Δ − t·s/√n)/σ)]⁺ f(s) ds``
    over the distribution of ``s`` (numerical quadrature);
  - *detection power* at ``μ = Δ``: the two-sided paired t-test at level α rejects with
    probability ``P(|T| > t_{1−α/2, n−1})``, ``T`` noncentral t with ``n − 1`` degrees of
    freedom and noncentrality ``√n · Δ / σ``.

  :func:`seeds_for_power` is the smallest ``n`` at which both reach the target (80 %): with
  that many seeds a true zero is called equivalent, and a true difference of ``±Δ`` found,
  four times in five. ``σ`` is the spread measured so far, so the power is a planning
  figure, not a property of the finished test.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "ALPHA",
    "VERDICTS",
    "equivalence_p",
    "holm",
    "paired_difference",
    "power",
    "seeds_for_power",
    "seeds_to_resolve",
    "summarise",
    "verdict",
]

ALPHA = 0.05
VERDICTS = ("supported", "opposite", "equivalent", "undecided")


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
    out["diffs"] = diffs
    if len(seeds) < 2:
        out["p"] = None
    elif max(diffs) - min(diffs) <= 1e-12 * max(1.0, abs(out["mean"])):
        # every seed gives the same difference: no spread, t = 0/0 or ±inf
        out["p"] = 1.0 if out["mean"] == 0 else 0.0
    else:
        test = stats.ttest_rel([values[s] for s in seeds], [reference[s] for s in seeds])
        out["p"] = float(test.pvalue)
    return out


def holm(
    pvalues: Mapping[str, float | None], *, count_missing: bool = False
) -> dict[str, float | None]:
    """Holm-adjusted p-values by name: the i-th smallest of m is
    ``max_{j<=i} min(1, (m − j + 1) · p_(j))`` (ranks from 1). ``None`` (a test without
    its p yet) stays ``None``; it is left out of the family ``m``, or, with
    ``count_missing``, counted in it as p = 1: the declared family, so that a test still
    to come can only lower the others' adjusted p once it is known, never raise it."""
    named = sorted(((p, k) for k, p in pvalues.items() if p is not None), key=lambda t: t[0])
    m = len(pvalues) if count_missing else len(named)
    adjusted: dict[str, float | None] = {k: None for k in pvalues}
    running = 0.0
    for rank, (p, key) in enumerate(named):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[key] = running
    return adjusted


def equivalence_p(diffs: Sequence[float], margin: float) -> float | None:
    """``p_TOST`` of the paired differences ``diffs`` against ``±margin`` (None below 2)."""
    from scipy import stats

    if len(diffs) < 2:
        return None
    if max(diffs) - min(diffs) <= 1e-12 * max(1.0, abs(statistics.fmean(diffs))):
        return 0.0 if abs(statistics.fmean(diffs)) < margin else 1.0
    above = stats.ttest_1samp(diffs, -margin, alternative="greater").pvalue
    below = stats.ttest_1samp(diffs, margin, alternative="less").pvalue
    return float(max(above, below))


def seeds_to_resolve(std: float | None, margin: float, limit: int = 10_000) -> int | None:
    """The smallest ``n ≥ 2`` with ``t_{0.975, n−1} · std / √n ≤ margin`` (None when the
    spread is unknown or more than ``limit`` seeds would be needed)."""
    from scipy import stats

    if std is None:
        return None
    for n in range(2, limit + 1):
        if float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n) <= margin:
            return n
    return None


def _equivalence_power(std: float, margin: float, n: int) -> float:
    from scipy import integrate, stats

    df = n - 1
    t = float(stats.t.ppf(1 - ALPHA, df))
    root = math.sqrt(n)

    def given_s(s: float) -> float:
        room = margin - t * s / root
        if room <= 0:
            return 0.0
        z = root * room / std
        return float(stats.norm.cdf(z) - stats.norm.cdf(-z))

    def density(s: float) -> float:  # s = σ · sqrt(χ²_df / df)
        q = df * (s / std) ** 2
        return float(stats.chi2.pdf(q, df)) * 2 * df * s / std**2

    s_max = std * math.sqrt(float(stats.chi2.ppf(1 - 1e-9, df)) / df)
    limit = min(s_max, margin * root / t)  # beyond it the integrand is 0
    value, _ = integrate.quad(lambda s: given_s(s) * density(s), 0.0, limit, limit=200)
    return min(1.0, max(0.0, value))


def _detection_power(std: float, effect: float, n: int) -> float:
    """``P(T > t) + P(T < −t)``, ``T`` noncentral t (``n − 1`` degrees of freedom,
    noncentrality ``√n · effect / std``), ``t = t_{1−α/2, n−1}``; a tail that
    ``scipy.stats.nct`` cannot evaluate (it gives nan for a large noncentrality, e.g. the
    lower tail at ``df = 3, nc = 10``) comes from :func:`_noncentral_t_tails` instead."""
    from scipy import stats

    df = n - 1
    t = float(stats.t.ppf(1 - ALPHA / 2, df))
    nc = math.sqrt(n) * effect / std
    upper = float(stats.nct.sf(t, df, nc))
    lower = float(stats.nct.cdf(-t, df, nc))
    if not (math.isfinite(upper) and math.isfinite(lower)):
        by_quadrature = _noncentral_t_tails(t, df, nc)
        upper = upper if math.isfinite(upper) else by_quadrature[0]
        lower = lower if math.isfinite(lower) else by_quadrature[1]
    return min(1.0, max(0.0, upper + lower))


def _noncentral_t_tails(t: float, df: int, nc: float) -> tuple[float, float]:
    """``(P(T > t), P(T < −t))`` for ``T = (Z + nc) / S``, ``Z ~ N(0, 1)`` independent of
    ``S = sqrt(Q / df)``, ``Q ~ χ²_df``: given ``S``, ``T > t ⟺ Z > t·S − nc``, so

        P(T > t) = E[Φ(nc − t·S)],      P(T < −t) = E[Φ(−nc − t·S)],

    each expectation an integral over ``Q``'s quantiles ``u ∈ (0, 1)``,
    ``Q = F⁻¹_{χ²_df}(u)`` (bounded integrands, no singularity at ``Q = 0``)."""
    from scipy import integrate, stats

    def spread(u: float) -> float:
        return math.sqrt(float(stats.chi2.ppf(u, df)) / df)

    upper, _ = integrate.quad(lambda u: float(stats.norm.cdf(nc - t * spread(u))), 0.0, 1.0)
    lower, _ = integrate.quad(lambda u: float(stats.norm.cdf(-nc - t * spread(u))), 0.0, 1.0)
    return upper, lower


def power(std: float | None, margin: float, n: int) -> dict[str, float] | None:
    """``{"equivalence", "detection"}``: the chance, with ``n`` paired seeds whose differences
    spread by ``std``, that a true zero is called equivalent within ``±margin`` and that a
    true difference of ``margin`` is significant (module docstring); None when ``std`` is
    unknown or ``n < 2``. A zero spread gives power 1."""
    if std is None or n < 2 or not margin > 0:
        return None
    if std <= 0:
        return {"equivalence": 1.0, "detection": 1.0}
    return {
        "equivalence": _equivalence_power(std, margin, n),
        "detection": _detection_power(std, margin, n),
    }


def seeds_for_power(
    std: float | None, margin: float, target: float = 0.8, limit: int = 1000
) -> int | None:
    """The smallest ``n ≥ 2`` at which both powers of :func:`power` reach ``target`` (None
    when the spread is unknown or more than ``limit`` seeds would be needed)."""
    if std is None:
        return None
    for n in range(2, limit + 1):
        got = power(std, margin, n)
        if got is not None and min(got.values()) >= target:
            return n
    return None


def verdict(
    diff: Mapping[str, Any], p_holm: float | None, margin: float, expect: str = "better"
) -> dict[str, Any]:
    """The decision on one paired difference (``paired_difference``'s result with its
    ``diffs``), given its Holm-adjusted p, the smallest effect of interest ``margin`` and
    what the claim expects of the variant (``better`` or ``worse`` than the reference):

    ``supported`` (significant after Holm, in the expected direction), ``opposite``
    (significant, the other way), ``equivalent`` (within ``±margin`` by the equivalence
    test), or ``undecided``. Every decision carries the ``power`` of its ``n`` seeds at the
    measured spread; an undecided one also ``seeds_needed``, the seeds for 80 % power
    (:func:`seeds_for_power`)."""
    if expect not in ("better", "worse"):
        raise ValueError(f"expect must be 'better' or 'worse', got {expect!r}")
    diffs = diff.get("diffs", [])
    p_tost = equivalence_p(diffs, margin)
    out: dict[str, Any] = {"p_holm": p_holm, "p_tost": p_tost, "margin": margin, "n": len(diffs)}
    out["power"] = power(diff.get("std"), margin, len(diffs))
    mean = diff.get("mean")
    if p_holm is not None and p_holm < ALPHA and mean:
        wanted = mean > 0 if expect == "better" else mean < 0
        out["verdict"] = "supported" if wanted else "opposite"
    elif p_tost is not None and p_tost < ALPHA:
        out["verdict"] = "equivalent"
    else:
        out["verdict"] = "undecided"
        out["seeds_needed"] = seeds_for_power(diff.get("std"), margin)
    return out

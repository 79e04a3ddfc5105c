"""The report of a grid rendered: ``report.json``, ``report.md`` and the plots.

The report is built once from the run folders as a :class:`~preattn.ablate.results.GridReport`
(:func:`~preattn.ablate.collect.build_grid_report`, where what it holds is described);
``report.json`` is its :meth:`~preattn.ablate.results.GridReport.to_json`, ``report.md``
its Markdown (:func:`format_report`: accuracies in percent, intervals in brackets), and with
the plots ``forest.png`` draws the grid's primary contrasts (:mod:`preattn.ablate.forest`).

A variant near chance (``near_chance``) is flagged "near chance: nothing learned" in
report.md, since its interval and Holm p compare a network that did not learn.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._io import atomic_write_text
from .collect import build_grid_report, finished_runs
from .finals import VALIDATION, metric_label
from .forest import write_forest
from .grid import Grid
from .plots import plot_grid
from .results import GridReport, PairedDifference, Summary, VariantResult, Verdict

__all__ = ["build_report", "format_report", "power_text", "verdict_text", "write_report"]


def build_report(grid: Grid, root: str | Path, *, count_parameters: bool = True) -> dict[str, Any]:
    """The report of ``grid``'s finished runs under ``root`` as ``report.json``'s content
    (:func:`~preattn.ablate.collect.build_grid_report`)."""
    return build_grid_report(grid, root, count_parameters=count_parameters).to_json()


def _interval(summary: Summary | PairedDifference, signed: bool = False) -> str:
    """``91.23 [90.10, 92.36]`` (or signed, ``+0.12 [-0.30, +0.54]``), in percent or
    points; "—" without a mean."""
    mean, ci = summary.mean, summary.ci95
    if mean is None:
        return "—"
    text = f"{100 * mean:+.2f}" if signed else f"{100 * mean:.2f}"
    if ci is not None:
        text += (
            f" [{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]"
            if signed
            else (f" [{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]")
        )
    return text


def _p(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _family(report: GridReport, noun: str) -> str:
    """The Holm family in words: its size, and how many of its tests have no p yet (a
    variant without a finished pair: counted at p = 1, :func:`~preattn.ablate.stats.holm`)."""
    done = 0
    for v in report.variants:
        if v.name != report.reference:
            diffs = [v.paired_diff, v.val_diff, *(c.paired_diff for c in v.corrupt.values())]
            done += sum(d is not None and d.p is not None for d in diffs)
    pending = report.holm_tests - done
    words = _count(report.holm_tests, noun)
    return words if pending <= 0 else f"{words}, {pending} not finished yet and counted at p = 1"


def _diff_cells(diff: PairedDifference | None, reference: bool) -> tuple[str, str]:
    """The difference with its interval, and ``p (Holm p)``; "—" for a variant without a
    finished pair."""
    if reference:
        return "reference", "—"
    if diff is None:
        return "—", "—"
    if diff.p is None:
        return _interval(diff, signed=True), "—"
    return _interval(diff, signed=True), f"{_p(diff.p)} ({_p(diff.p_holm)})"


def verdict_text(decision: Verdict | Mapping[str, Any]) -> str:
    """The verdict in words (:attr:`~preattn.ablate.results.Verdict.text`) of a report's
    verdict or :func:`~preattn.ablate.stats.verdict`'s result."""
    return _as_verdict(decision).text


def power_text(decision: Verdict | Mapping[str, Any]) -> str:
    """The power of the decision's seeds at the measured spread: ``35 % / 51 %`` (a true zero
    called equivalent / a true difference of the margin found); "—" when unknown."""
    return _as_verdict(decision).power_text


def _as_verdict(decision: Verdict | Mapping[str, Any]) -> Verdict:
    return decision if isinstance(decision, Verdict) else Verdict.from_json(decision)


def _test_set_text(variant: VariantResult, metric: str) -> str:
    """``±0.12 (10,000 images)``: the difference's sampling error from the fixed test set;
    "—" when the runs kept no per-image outcomes."""
    error = variant.test_set.get(metric)
    return "—" if error is None else error.difference_text


def _verdict_lines(report: GridReport) -> list[str]:
    primary = report.primary
    decided = report.decided
    if primary is None or not decided:
        return []
    ref = report.reference
    lines = [
        "",
        f"Verdicts on the primary metric `{primary.metric}`, declared in the grid with its "
        f"smallest effect of interest ±{100 * primary.sesoi:.2f} points: significant after "
        f"Holm over the grid's {_family(report, 'paired test')} (α = 0.05) in the "
        "claimed direction = supported, in the other = opposite; else equivalent when two "
        "one-sided t-tests place the difference within the margin; else undecided. Power, "
        "at the spread measured over these seeds: the chance that a true zero is called "
        "equivalent / that a true difference of the margin is found (the seeds an undecided "
        "contrast needs bring both to 80 %). Test-set SE: the sampling error of the "
        "difference that comes from scoring every run on the same test images (from each "
        "image's outcome, averaged over the seeds), which the seeds' interval does not "
        "contain.",
        "",
        f"| variant | claim vs {ref} | Δ (pts) [95 %] | test-set SE (pts) | p Holm | "
        "p equivalence | power | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v in decided:
        d = v.verdict
        if d is None:
            continue
        metric = d.metric or primary.metric
        diff = v.difference(metric)
        lines.append(
            f"| {v.name} | {d.expect} | {'—' if diff is None else _interval(diff, signed=True)} | "
            f"{_test_set_text(v, metric)} | "
            f"{_p(d.p_holm)} | {_p(d.p_tost)} | {d.power_text} | {d.text} |"
        )
    return lines


def _per_seed_lines(report: GridReport) -> list[str]:
    """Each seed's value of the primary metric (test accuracy without one) per variant, and
    its paired difference to the reference: the numbers every interval above comes from."""
    metric = report.primary.metric if report.primary else "test_acc"
    ref = report.reference
    variants = report.variants
    seeds = sorted({s for v in variants for s in v.per_seed})
    if not seeds:
        return []
    others = [v.name for v in variants if v.name != ref]
    label = metric_label(metric)
    lines = [
        "",
        f"Per seed: {label} (%), and each variant's difference to `{ref}` on the same seed "
        "(points):",
        "",
        "| seed | "
        + " | ".join(v.name for v in variants)
        + " | "
        + " | ".join(f"Δ {name}" for name in others)
        + " |",
        "|---" * (1 + len(variants) + len(others)) + "|",
    ]
    for seed in seeds:
        values = {
            v.name: None if seed not in v.per_seed else v.per_seed[seed].value(metric)
            for v in variants
        }
        cells = [
            ("diverged" if seed in v.diverged else "—") if x is None else f"{100 * x:.2f}"
            for v, x in zip(variants, values.values(), strict=True)
        ]
        base = values[ref]
        deltas = [
            "—" if values[n] is None or base is None else f"{100 * (values[n] - base):+.2f}"  # type: ignore[operator]
            for n in others
        ]
        lines.append(f"| {seed} | " + " | ".join(cells + deltas) + " |")
    return lines


def _speed(v: VariantResult) -> str:
    """``2012 (1950–2080) shared``: images/s, mean (min–max) over seeds, marked when some
    run shared the machine with another of the grid."""
    speed = "—" if v.images_per_s is None else f"{v.images_per_s:.0f}"
    if v.images_per_s_range and v.n > 1:
        low, high = v.images_per_s_range
        speed += f" ({low:.0f}–{high:.0f})"
    if v.timing_shared and v.images_per_s is not None:
        speed += " shared"
    return speed


def _variant_row(v: VariantResult, ref: str) -> str:
    diff, p = _diff_cells(v.paired_diff, v.name == ref)
    lam = ", ".join(f"{b} {x:.3f}" for b, x in v.lambda_final.items()) or "—"
    mod = ", ".join(f"{b} {100 * x:.2g}" for b, x in v.modulation_final.items()) or "—"
    params = "—" if v.params is None else f"{v.params:,}"
    accuracy = _interval(v.test_acc)
    if v.near_chance:
        accuracy += " **near chance: nothing learned**"
    return (
        f"| {v.name} | {v.n} | {accuracy} | {diff} | {p} | {_speed(v)} | {params} | {lam} | {mod} |"
    )


def _main_lines(report: GridReport) -> list[str]:
    """The table of every variant's accuracy, difference, speed, size, λ and modulation."""
    ref = report.reference
    lines = [
        f"Final test accuracy (%), mean [Student-t 95 % interval] over seeds; paired "
        f"difference to `{ref}` in percentage points [95 % interval], two-sided paired "
        f"t-test p (Holm-adjusted over the grid's {_family(report, 'test')}).",
        "",
        "| variant | n | test acc % | Δ vs " + ref + " (pts) | p (Holm) | images/s | params | "
        "final λ (per block) | modulation % (per block) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    fewest = min((v.n for v in report.variants), default=0)
    if 0 < fewest < 3:
        lines[1:1] = [
            "",
            f"Only {fewest} seed(s) per variant: with n = 2 the 95 % interval is ±12.7 standard "
            "errors (Student t, 1 degree of freedom), so it can say almost nothing; run more "
            "seeds before reading a difference.",
        ]
    lines += [_variant_row(v, ref) for v in report.variants]
    flagged = [v for v in report.variants if v.near_chance]
    if flagged and flagged[0].chance is not None:
        lines += [
            "",
            "near chance: nothing learned: mean test accuracy below chance (1 / classes = "
            f"{100 * flagged[0].chance:.1f} %) plus a tenth of the way from chance to 100 %; its "
            "interval and p compare a network that did not learn (more epochs, another learning "
            "rate).",
        ]
    lines += [
        "",
        "images/s: training throughput, mean (min–max) over seeds, as each run measured it; "
        "'shared': some of the variant's runs trained while another run of the grid did, so "
        "they shared the machine and their speeds are not comparable; an unmarked speed may "
        "still have shared it with work outside the grid, which the runs' records cannot show; "
        "not a benchmark (benchmarks/ times variants interleaved).",
    ]
    return lines


def _metric_lines(report: GridReport) -> list[str]:
    """One table per metric beside the test set (validation, then each corrupted test set):
    accuracy and the paired difference."""
    ref = report.reference
    lines: list[str] = []
    validated = any(v.val_acc is not None for v in report.variants)
    for metric in ([VALIDATION] if validated else []) + list(report.corruptions):
        label = metric_label(metric)
        lines += [
            "",
            f"{label[0].upper()}{label[1:]} (%), and the paired difference to `{ref}`:",
            "",
            f"| variant | {'val' if metric == VALIDATION else 'test'} acc % | "
            f"Δ vs {ref} (pts) | p (Holm) |",
            "|---|---|---|---|",
        ]
        for v in report.variants:
            if metric == VALIDATION:
                accuracy, difference = v.val_acc, v.val_diff
            else:
                accuracy, difference = v.corrupt[metric].test_acc, v.corrupt[metric].paired_diff
            diff, p = _diff_cells(difference, v.name == ref)
            cell = "—" if accuracy is None else _interval(accuracy)
            lines.append(f"| {v.name} | {cell} | {diff} | {p} |")
    return lines


def _time_lines(report: GridReport) -> list[str]:
    """Epochs, steps and seconds to the grid's target accuracy (none without a target)."""
    if report.target_acc is None:
        return []
    lines = [
        "",
        f"Time to {100 * report.target_acc:.1f} % test accuracy (mean over the seeds "
        "that reached it; seconds of training and evaluation):",
        "",
        "| variant | reached | epochs | optimiser steps | seconds |",
        "|---|---|---|---|---|",
    ]
    for v in report.variants:
        t = v.time_to_target
        if t is None:
            raise ValueError(
                f"variant {v.name!r}: the report has target_acc {report.target_acc} but no "
                "time_to_target for it"
            )
        epochs = "not reached" if t.epochs is None else f"{t.epochs:.1f}"
        steps = "—" if t.steps is None else f"{t.steps:.0f}"
        seconds = "—" if t.seconds is None else f"{t.seconds:.0f}"
        if v.timing_shared:
            seconds += " (shared)"
        lines.append(f"| {v.name} | {t.reached}/{t.of} | {epochs} | {steps} | {seconds} |")
    return lines


def _match_cost_lines(report: GridReport) -> list[str]:
    """The sentence on the width ``match_cost`` gave the plain variant (none unmeasured)."""
    cost = report.match_cost
    if cost is None or cost.width is None:
        return []
    spread = cost.ratio_range
    below = cost.below
    return [
        "",
        f"`{cost.variant}` is a plain network at width {cost.width:.3f}, "
        + (
            f"the narrowest the search timed at no less than {1 - cost.tolerance:.2f}x "
            f"the cost of `{cost.to}`: "
            if cost.cost == "at_least"
            else "where "
        )
        + f"a training step measured {cost.ratio:.2f}x one of `{cost.to}`"
        + (
            f" (min–max {spread[0]:.2f}–{spread[1]:.2f} over {cost.repeats} repeats)"
            if spread is not None
            else ""
        )
        + (
            ""
            if below is None
            else f"; the widest timed below it, width {below[0]:.3f}, measured {below[1]:.2f}x"
        )
        + " (match_cost, interleaved timing before training).",
    ]


def _diverged_lines(report: GridReport) -> list[str]:
    """The runs whose training loss turned non-finite, each with where it happened."""
    runs = [(v.name, seed, m) for v in report.variants for seed, m in sorted(v.diverged.items())]
    if not runs:
        return []
    listing = "; ".join(f"`{name}` seed {seed}: {message}" for name, seed, message in runs)
    return [
        "",
        f"**Diverged: {len(runs)} run(s)** (training loss not finite; each stopped at its last "
        "good checkpoint and is kept as an outcome, not retried). Every statistic in this "
        "report leaves them out: it covers the seeds that finished, a paired difference the "
        f"seeds both variants finished. {listing}.",
    ]


def format_report(report: GridReport | Mapping[str, Any]) -> str:
    """Markdown tables of ``report`` (a :class:`~preattn.ablate.results.GridReport`, or
    ``report.json``'s content), accuracies in percent, intervals in brackets."""
    if not isinstance(report, GridReport):
        report = GridReport.from_json(report)
    lines = _main_lines(report)
    lines += _diverged_lines(report)
    lines += _metric_lines(report)
    lines += _time_lines(report)
    lines += _match_cost_lines(report)
    lines += _verdict_lines(report)
    lines += _per_seed_lines(report)
    missing = [(v.name, list(v.missing_seeds)) for v in report.variants if v.missing_seeds]
    if missing:
        lines += ["", "Not finished yet: " + "; ".join(f"{n} seeds {s}" for n, s in missing)]
    return "\n".join(lines) + "\n"


def write_report(
    grid: Grid,
    root: str | Path,
    *,
    report_dir: str | Path | None = None,
    plots: bool = True,
) -> dict[str, Any]:
    """Write ``report.json``, ``report.md`` and (``plots``) the PNGs of the runs under
    ``root`` into ``report_dir`` (default ``root``); returns ``report.json``'s content."""
    root = Path(root)
    target = Path(report_dir) if report_dir is not None else root
    target.mkdir(parents=True, exist_ok=True)
    report = build_grid_report(grid, root)
    content = report.to_json()
    atomic_write_text(target / "report.json", json.dumps(content, indent=1) + "\n")
    atomic_write_text(target / "report.md", format_report(report))
    if plots:
        plot_grid(grid, target, finished_runs(grid, root))
        write_forest([(target.name, report)], target / "forest.png")
    return content

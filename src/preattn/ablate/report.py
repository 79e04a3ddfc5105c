"""The report of a grid: ``report.json``, ``report.md`` and the plots, from its run folders.

Only finished runs (all of the grid's epochs committed) count. Per variant: the number of
seeds ``n``; final test accuracy (mean, sample std, Student-t 95 % interval); the paired
difference to the reference (mean, interval, p; :mod:`preattn.ablate.stats`); the same for
each corrupted test set (``eval_corrupt``); images/s (mean and min–max over seeds);
parameters; final λ per block (mean over seeds); epochs and seconds (training +
evaluation) to reach ``target_acc``; and ``per_seed``, each seed's own final values
(accuracy, corrupted accuracies, λ, modulation, images/s, seconds).
Accuracies are fractions in [0, 1]. With the plots, ``forest.png`` draws the grid's primary
contrasts (:mod:`preattn.ablate.forest`).

A variant whose mean test accuracy lies near chance (``chance = 1 / classes``; near:
below ``chance + NEAR_CHANCE_SHARE · (1 − chance)``, 19 % for ten classes) learned nothing:
``near_chance`` is true and report.md flags it "near chance: nothing learned", since its
interval and Holm p compare a network that did not learn.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from .._io import atomic_write_text
from ..train.epoch_record import EpochRecord, RecordError
from ..train.load import load_model
from ..train.rundir import METRICS_FILE, RunDir, RunError
from .finals import Runs, corruption_names, final_accuracies
from .forest import write_forest
from .grid import Grid
from .match_cost import MATCH_FILE
from .plots import plot_grid
from .sampling_error import sampling_error
from .stats import holm, paired_difference, summarise, verdict

__all__ = ["build_report", "format_report", "write_report"]


def _check_record(run_dir: RunDir, number: int, row: dict[str, Any]) -> None:
    """Raise :class:`RunError` naming the run, the record and the field the report cannot
    use (a damaged or hand-edited ``metrics.jsonl``): the line must be an
    :class:`~preattn.train.epoch_record.EpochRecord`."""
    try:
        EpochRecord.from_json(row, f"{run_dir.path / METRICS_FILE}: record {number}")
    except RecordError as exc:
        raise RunError(f"{exc}; retrain or remove that run") from None


def _runs_of(grid: Grid, root: Path) -> Runs:
    """Metrics rows of every finished run: ``{variant: {seed: rows}}``."""
    out: dict[str, dict[int, list[dict[str, Any]]]] = {v: {} for v in grid.variants}
    for run in grid.runs(root):
        run_dir = RunDir(run.config.out)  # type: ignore[arg-type]
        if not run_dir.holds_run() or run_dir.committed_epoch() != run.config.epochs:
            continue
        rows = run_dir.read_metrics(upto_epoch=run.config.epochs)
        for number, row in enumerate(rows, 1):
            _check_record(run_dir, number, row)
        if rows and "test_acc" not in rows[-1]:
            raise RunError(
                f"{run_dir.path / METRICS_FILE}: record {len(rows)} has no 'test_acc'; "
                "retrain or remove that run"
            )
        if len(rows) == run.config.epochs:
            out[run.variant][run.seed] = rows
    return out


def _parameters(grid: Grid, root: Path, variant: str, seeds: list[int]) -> int | None:
    """Parameters of ``variant``'s network, rebuilt from one of its finished runs."""
    if not seeds:
        return None
    loaded = load_model(grid.config(variant, seeds[0], root).out)  # type: ignore[arg-type]
    return sum(p.numel() for p in loaded.model.parameters())


# accuracy intervals are clipped to the range accuracy can take
ACCURACY = (0.0, 1.0)

# "near chance": within this share of the way from chance (1 / classes) to 100 %
NEAR_CHANCE_SHARE = 0.1


def _chance(grid: Grid, root: Path, variant: str, seeds: list[int]) -> float | None:
    """``1 / classes`` of the data ``variant`` was trained on (its first finished run's
    recorded data description); None when the run records none."""
    if not seeds:
        return None
    info = RunDir(grid.config(variant, seeds[0], root).out).read_data_info()  # type: ignore[arg-type]
    return None if info is None or not info.classes else 1.0 / len(info.classes)


def _final_per_block(by_seed: dict[int, list[dict[str, Any]]], key: str) -> dict[str, float]:
    """The mean over seeds of each block's value of ``key`` in the last epoch's record."""
    values: dict[str, list[float]] = {}
    for rows in by_seed.values():
        for block, value in rows[-1].get(key, {}).items():
            values.setdefault(block, []).append(value)
    return {block: statistics.fmean(v) for block, v in values.items()}


def _time_to_target(
    rows: list[dict[str, Any]], target: float
) -> tuple[int, float, int | None] | None:
    """(epochs, seconds, optimiser steps) of the first evaluated epoch at ``target``."""
    for row in rows:
        if row.get("test_acc", -1.0) >= target:
            step = row.get("step")
            return int(row["epoch"]), float(row.get("elapsed_s", 0.0)), step
    return None


def _span(rows: list[dict[str, Any]]) -> tuple[float, float] | None:
    """When a run trained (first epoch's start, last epoch's end; Unix seconds), or None
    for records without the times."""
    starts = [r["wall_start"] for r in rows if "wall_start" in r]
    ends = [r["wall_end"] for r in rows if "wall_end" in r]
    return (min(starts), max(ends)) if starts and ends else None


def _shared_time(runs: Runs) -> dict[tuple[str, int], Any]:
    """``{(variant, seed): True | False | None}``: whether the run's training overlapped in
    time with another run of the grid (its images/s then measured a shared machine);
    None when its records lack the times."""
    spans = {(v, s): _span(rows) for v, by_seed in runs.items() for s, rows in by_seed.items()}
    out: dict[tuple[str, int], Any] = {}
    for key, span in spans.items():
        if span is None:
            out[key] = None
            continue
        out[key] = any(
            other is not None and other_key != key and other[0] < span[1] and span[0] < other[1]
            for other_key, other in spans.items()
        )
    return out


def build_report(grid: Grid, root: str | Path, *, count_parameters: bool = True) -> dict[str, Any]:
    """The report of ``grid``'s finished runs under ``root`` as a JSON-ready dict."""
    root = Path(root)
    runs = _runs_of(grid, root)
    final = {v: final_accuracies(by_seed) for v, by_seed in runs.items()}
    reference = final[grid.reference]
    corrupt_names = corruption_names(runs)

    shared = _shared_time(runs)
    variants = []
    for name, overrides in grid.variants.items():
        by_seed = runs[name]
        accs = [final[name][s] for s in sorted(by_seed)]
        entry: dict[str, Any] = {
            "name": name,
            "overrides": overrides,
            "n": len(accs),
            "seeds": sorted(by_seed),
            "missing_seeds": [s for s in grid.seeds if s not in by_seed],
            "test_acc": {k: v for k, v in summarise(accs, ACCURACY).items() if k != "n"},
            "paired_diff": None
            if name == grid.reference
            else paired_difference(final[name], reference),
        }
        entry["corrupt"] = {
            c: {
                "test_acc": summarise(list(final_accuracies(runs[name], c).values()), ACCURACY),
                "paired_diff": None
                if name == grid.reference
                else paired_difference(
                    final_accuracies(runs[name], c), final_accuracies(runs[grid.reference], c)
                ),
            }
            for c in corrupt_names
        }
        speeds = [statistics.fmean(r["images_per_s"] for r in rows) for rows in by_seed.values()]
        entry["images_per_s"] = statistics.fmean(speeds) if speeds else None
        entry["images_per_s_range"] = [min(speeds), max(speeds)] if speeds else None
        marks = [shared[(name, seed)] for seed in by_seed]
        # True: some run overlapped another in time; None: the records cannot tell
        entry["timing_shared"] = (
            True if any(marks) else (None if any(m is None for m in marks) else False)
        )
        entry["seconds"] = (
            statistics.fmean(rows[-1].get("elapsed_s", 0.0) for rows in by_seed.values())
            if by_seed
            else None
        )
        entry["params"] = (
            _parameters(grid, root, name, sorted(by_seed)) if count_parameters else None
        )
        chance = _chance(grid, root, name, sorted(by_seed))
        entry["chance"] = chance
        entry["near_chance"] = (
            chance is not None
            and bool(accs)
            and statistics.fmean(accs) < chance + NEAR_CHANCE_SHARE * (1 - chance)
        )
        entry["lambda_final"] = _final_per_block(by_seed, "lambda")
        # how much attention changes its input at the end (preattn.modulation), per block
        entry["modulation_final"] = _final_per_block(by_seed, "modulation")
        # every seed's own final values, so the pairing and the statistics can be audited
        entry["per_seed"] = {
            str(seed): {
                "test_acc": rows[-1]["test_acc"],
                "test_acc_corrupt": dict(rows[-1].get("test_acc_corrupt", {})),
                "lambda": dict(rows[-1].get("lambda", {})),
                "modulation": dict(rows[-1].get("modulation", {})),
                "images_per_s": statistics.fmean(r["images_per_s"] for r in rows),
                "elapsed_s": rows[-1].get("elapsed_s"),
                "timing_shared": shared[(name, seed)],
            }
            for seed, rows in sorted(by_seed.items())
        }
        if grid.target_acc is not None:
            hits = [_time_to_target(rows, grid.target_acc) for rows in by_seed.values()]
            reached = [h for h in hits if h is not None]
            entry["time_to_target"] = {
                "reached": len(reached),
                "of": len(hits),
                "epochs": statistics.fmean(h[0] for h in reached) if reached else None,
                "seconds": statistics.fmean(h[1] for h in reached) if reached else None,
                "steps": (
                    statistics.fmean(h[2] for h in reached)
                    if reached and all(h[2] is not None for h in reached)
                    else None
                ),
            }
        entry["test_set"] = _sampling_errors(grid, root, name, runs, corrupt_names)
        variants.append(entry)
    tests = _adjust_for_multiplicity(variants)
    if grid.primary is not None:
        for entry in variants:
            expect = grid.expectation(entry["name"])
            metric = grid.primary["metric"]
            diff = (
                entry["paired_diff"]
                if metric == "test_acc"
                else entry["corrupt"].get(metric, {}).get("paired_diff")
            )
            if expect is not None and diff is not None and diff.get("diffs"):
                entry["verdict"] = {
                    "metric": metric,
                    "expect": expect,
                    **verdict(diff, diff.get("p_holm"), grid.primary["sesoi"], expect),
                }
    return {
        "reference": grid.reference,
        "seeds": list(grid.seeds),
        "target_acc": grid.target_acc,
        "base": grid.base,
        "primary": grid.primary,
        "match_cost": _match_cost(grid, root),
        "holm_tests": tests,
        "corruptions": corrupt_names,
        "variants": variants,
    }


def _sampling_errors(
    grid: Grid, root: Path, name: str, runs: Runs, corrupt_names: list[str]
) -> dict[str, Any]:
    """The test-set sampling error of ``name``'s accuracy and of its difference to the
    reference, per metric (:mod:`preattn.ablate.sampling_error`), from the finished runs'
    kept outcomes; metrics without them are left out."""
    folders: dict[str, dict[int, Path]] = {v: {} for v in grid.variants}
    for run in grid.runs(root):
        if run.seed in runs[run.variant]:
            folders[run.variant][run.seed] = Path(run.config.out)  # type: ignore[arg-type]
    reference = None if name == grid.reference else folders[grid.reference]
    out = {}
    for metric in ("test_acc", *corrupt_names):
        error = sampling_error(folders[name], reference, metric)
        if error is not None:
            out[metric] = error
    return out


def _match_cost(grid: Grid, root: Path) -> dict[str, Any] | None:
    """What ``match_cost`` measured (``match_cost.json`` in ``root``), or None."""
    if grid.match_cost is None:
        return None
    path = root / MATCH_FILE
    saved = json.loads(path.read_text()).get(grid.match_cost["variant"]) if path.is_file() else None
    return {**grid.match_cost, **(saved or {})}


def _adjust_for_multiplicity(variants: list[dict[str, Any]]) -> int:
    """Add ``p_holm`` to every paired difference of the report (clean and corrupted, all
    variants: one family); returns the number of tests in it."""
    diffs: dict[str, dict[str, Any]] = {}
    for entry in variants:
        if entry["paired_diff"] is not None:
            diffs[f"{entry['name']}|test_acc"] = entry["paired_diff"]
        for name, values in entry["corrupt"].items():
            if values["paired_diff"] is not None:
                diffs[f"{entry['name']}|{name}"] = values["paired_diff"]
    adjusted = holm({key: diff.get("p") for key, diff in diffs.items()})
    for key, diff in diffs.items():
        diff["p_holm"] = adjusted[key]
    return sum(p is not None for p in adjusted.values())


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def _interval(summary: dict[str, Any], signed: bool = False) -> str:
    mean, ci = summary.get("mean"), summary.get("ci95")
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


def _diff_cells(diff: dict[str, Any] | None, reference: bool) -> tuple[str, str]:
    """The difference with its interval, and ``p (Holm p)``; "—" for a variant without a
    finished pair."""
    if reference:
        return "reference", "—"
    if diff is None:
        return "—", "—"
    p, adjusted = diff.get("p"), diff.get("p_holm")
    if p is None:
        return _interval(diff, signed=True), "—"
    return _interval(diff, signed=True), f"{_p(p)} ({_p(adjusted)})"


def verdict_text(decision: dict[str, Any]) -> str:
    """The verdict in words: ``supported``, ``opposite``, ``equivalent within ±0.30
    points`` or ``undecided: about 23 seeds for 80 % power at ±0.30 points``."""
    margin = f"±{100 * decision['margin']:.2f} points"
    word = decision["verdict"]
    if word == "equivalent":
        return f"equivalent within {margin}"
    if word == "undecided" and decision.get("n", 2) < 2:
        return "undecided: a paired test needs at least 2 seeds"
    if word == "undecided":
        n = decision.get("seeds_needed")
        need = f"about {n} seeds for 80 % power at {margin}" if n else f"{margin} is out of reach"
        return f"undecided: {need}"
    return word


def _test_set_text(variant: dict[str, Any], metric: str) -> str:
    """``±0.12 (10,000 images)``: the difference's sampling error from the fixed test set;
    "—" when the runs kept no per-image outcomes."""
    error = variant.get("test_set", {}).get(metric)
    if not error or error.get("difference_se") is None:
        return "—"
    return f"±{100 * error['difference_se']:.2f} ({error['images']:,} images)"


def power_text(decision: dict[str, Any]) -> str:
    """The power of the decision's seeds at the measured spread: ``35 % / 51 %`` (a true zero
    called equivalent / a true difference of the margin found); "—" when unknown."""
    got = decision.get("power")
    if not got:
        return "—"
    return f"{100 * got['equivalence']:.0f} % / {100 * got['detection']:.0f} %"


def _verdict_lines(report: dict[str, Any]) -> list[str]:
    primary = report.get("primary")
    decided = [v for v in report["variants"] if v.get("verdict")]
    if primary is None or not decided:
        return []
    ref = report["reference"]
    lines = [
        "",
        f"Verdicts on the primary metric `{primary['metric']}`, declared in the grid with its "
        f"smallest effect of interest ±{100 * primary['sesoi']:.2f} points: significant after "
        f"Holm over the grid's {_count(report['holm_tests'], 'paired test')} (α = 0.05) in the "
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
        d = v["verdict"]
        metric = d["metric"]
        diff = v["paired_diff"] if metric == "test_acc" else v["corrupt"][metric]["paired_diff"]
        lines.append(
            f"| {v['name']} | {d['expect']} | {_interval(diff, signed=True)} | "
            f"{_test_set_text(v, metric)} | "
            f"{_p(d['p_holm'])} | {_p(d['p_tost'])} | {power_text(d)} | {verdict_text(d)} |"
        )
    return lines


def _seed_value(entry: dict[str, Any], seed: str, metric: str) -> float | None:
    values = entry.get("per_seed", {}).get(seed)
    if values is None:
        return None
    return values["test_acc"] if metric == "test_acc" else values["test_acc_corrupt"].get(metric)


def _per_seed_lines(report: dict[str, Any]) -> list[str]:
    """Each seed's value of the primary metric (test accuracy without one) per variant, and
    its paired difference to the reference: the numbers every interval above comes from."""
    primary = report.get("primary")
    metric = primary["metric"] if primary else "test_acc"
    ref = report["reference"]
    variants = report["variants"]
    seeds = sorted({int(s) for v in variants for s in v.get("per_seed", {})})
    if not seeds:
        return []
    others = [v["name"] for v in variants if v["name"] != ref]
    label = "test accuracy" if metric == "test_acc" else f"test accuracy under `{metric}`"
    lines = [
        "",
        f"Per seed: {label} (%), and each variant's difference to `{ref}` on the same seed "
        "(points):",
        "",
        "| seed | "
        + " | ".join(v["name"] for v in variants)
        + " | "
        + " | ".join(f"Δ {name}" for name in others)
        + " |",
        "|---" * (1 + len(variants) + len(others)) + "|",
    ]
    for seed in seeds:
        values = {v["name"]: _seed_value(v, str(seed), metric) for v in variants}
        cells = ["—" if x is None else f"{100 * x:.2f}" for x in values.values()]
        base = values[ref]
        deltas = [
            "—" if values[n] is None or base is None else f"{100 * (values[n] - base):+.2f}"
            for n in others
        ]
        lines.append(f"| {seed} | " + " | ".join(cells + deltas) + " |")
    return lines


def format_report(report: dict[str, Any]) -> str:
    """Markdown tables of ``report`` (accuracies in percent, intervals in brackets)."""
    ref = report["reference"]
    lines = [
        f"Final test accuracy (%), mean [Student-t 95 % interval] over seeds; paired "
        f"difference to `{ref}` in percentage points [95 % interval], two-sided paired "
        f"t-test p (Holm-adjusted over the grid's {_count(report.get('holm_tests', 0), 'test')}).",
        "",
        "| variant | n | test acc % | Δ vs " + ref + " (pts) | p (Holm) | images/s | params | "
        "final λ (per block) | modulation % (per block) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    fewest = min((v["n"] for v in report["variants"]), default=0)
    if 0 < fewest < 3:
        lines[1:1] = [
            "",
            f"Only {fewest} seed(s) per variant: with n = 2 the 95 % interval is ±12.7 standard "
            "errors (Student t, 1 degree of freedom), so it can say almost nothing; run more "
            "seeds before reading a difference.",
        ]
    for v in report["variants"]:
        diff, p = _diff_cells(v["paired_diff"], v["name"] == ref)
        lam = ", ".join(f"{b} {x:.3f}" for b, x in v["lambda_final"].items()) or "—"
        mod = (
            ", ".join(f"{b} {100 * x:.2g}" for b, x in v.get("modulation_final", {}).items()) or "—"
        )
        speed = "—" if v["images_per_s"] is None else f"{v['images_per_s']:.0f}"
        if v.get("images_per_s_range") and v["n"] > 1:
            low, high = v["images_per_s_range"]
            speed += f" ({low:.0f}–{high:.0f})"
        if v.get("timing_shared") and v["images_per_s"] is not None:
            speed += " shared"
        params = "—" if v["params"] is None else f"{v['params']:,}"
        accuracy = _interval(v["test_acc"])
        if v.get("near_chance"):
            accuracy += " **near chance: nothing learned**"
        lines.append(
            f"| {v['name']} | {v['n']} | {accuracy} | {diff} | {p} | {speed} | "
            f"{params} | {lam} | {mod} |"
        )
    flagged = [v for v in report["variants"] if v.get("near_chance")]
    if flagged:
        chance = flagged[0]["chance"]
        lines += [
            "",
            "near chance: nothing learned: mean test accuracy below chance (1 / classes = "
            f"{100 * chance:.1f} %) plus a tenth of the way from chance to 100 %; its interval "
            "and p compare a network that did not learn (more epochs, another learning rate).",
        ]
    lines += [
        "",
        "images/s: training throughput, mean (min–max) over seeds, as each run measured it; "
        "'shared': some of the variant's runs trained while another run of the grid did, so "
        "they shared the machine and their speeds are not comparable; an unmarked speed may "
        "still have shared it with work outside the grid, which the runs' records cannot show; "
        "not a benchmark (benchmarks/ times variants interleaved).",
    ]
    for name in report["corruptions"]:
        lines += [
            "",
            f"Test accuracy under `{name}` (%), and the paired difference to `{ref}`:",
            "",
            f"| variant | test acc % | Δ vs {ref} (pts) | p (Holm) |",
            "|---|---|---|---|",
        ]
        for v in report["variants"]:
            entry = v["corrupt"][name]
            diff, p = _diff_cells(entry["paired_diff"], v["name"] == ref)
            lines.append(f"| {v['name']} | {_interval(entry['test_acc'])} | {diff} | {p} |")
    if report.get("target_acc") is not None:
        lines += [
            "",
            f"Time to {100 * report['target_acc']:.1f} % test accuracy (mean over the seeds "
            "that reached it; seconds of training and evaluation):",
            "",
            "| variant | reached | epochs | optimiser steps | seconds |",
            "|---|---|---|---|---|",
        ]
        for v in report["variants"]:
            t = v["time_to_target"]
            epochs = "not reached" if t["epochs"] is None else f"{t['epochs']:.1f}"
            steps = "—" if t.get("steps") is None else f"{t['steps']:.0f}"
            seconds = "—" if t["seconds"] is None else f"{t['seconds']:.0f}"
            if v.get("timing_shared"):
                seconds += " (shared)"
            lines.append(
                f"| {v['name']} | {t['reached']}/{t['of']} | {epochs} | {steps} | {seconds} |"
            )
    cost = report.get("match_cost")
    if cost and cost.get("width") is not None:
        lines += [
            "",
            f"`{cost['variant']}` is a plain network at width {cost['width']:.3f}, where a "
            f"training step measured {cost['ratio']:.2f}x one of `{cost['to']}`"
            + (
                f" (min–max {cost['ratio_min']:.2f}–{cost['ratio_max']:.2f} over "
                f"{cost['repeats']} repeats)"
                if "ratio_min" in cost
                else ""
            )
            + " (match_cost, interleaved timing before training).",
        ]
    lines += _verdict_lines(report)
    lines += _per_seed_lines(report)
    missing = [(v["name"], v["missing_seeds"]) for v in report["variants"] if v["missing_seeds"]]
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
    ``root`` into ``report_dir`` (default ``root``)."""
    root = Path(root)
    target = Path(report_dir) if report_dir is not None else root
    target.mkdir(parents=True, exist_ok=True)
    report = build_report(grid, root)
    atomic_write_text(target / "report.json", json.dumps(report, indent=1) + "\n")
    atomic_write_text(target / "report.md", format_report(report))
    if plots:
        plot_grid(grid, target, _runs_of(grid, root))
        write_forest([(target.name, report)], target / "forest.png")
    return report

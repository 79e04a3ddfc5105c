"""A grid's :class:`~preattn.ablate.results.GridReport`, built once from its run folders.

Only finished runs (all of the grid's epochs committed) count. Per variant: the number of
seeds ``n``; final test accuracy (mean, sample std, Student-t 95 % interval); the paired
difference to the reference (mean, interval, p; :mod:`preattn.ablate.stats`); the same for
each corrupted test set (``eval_corrupt``); images/s (mean and min–max over seeds);
parameters; final λ per block (mean over seeds); epochs and seconds (training +
evaluation) to reach ``target_acc``; and ``per_seed``, each seed's own final values
(accuracy, corrupted accuracies, λ, modulation, images/s, seconds).
Accuracies are fractions in [0, 1]. Every paired difference of the grid (clean and
corrupted, all variants) is one Holm family; the primary metric's differences get a
verdict (:func:`preattn.ablate.stats.verdict`).

A variant whose mean test accuracy lies near chance (``chance = 1 / classes``; near:
below ``chance + NEAR_CHANCE_SHARE · (1 − chance)``, 19 % for ten classes) learned nothing:
``near_chance`` is true, since its interval and Holm p compare a network that did not learn.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from ..train.epoch_record import EpochRecord, RecordError
from ..train.load import load_model
from ..train.rundir import METRICS_FILE, RunDir, RunError
from .finals import TEST, VALIDATION, Runs, corruption_names, final_accuracies, metric_names
from .grid import Grid
from .match_cost import MATCH_FILE
from .results import (
    CorruptResult,
    GridReport,
    MatchCost,
    PairedDifference,
    Primary,
    SamplingError,
    SeedFinals,
    Summary,
    TimeToTarget,
    VariantResult,
    Verdict,
)
from .sampling_error import sampling_error
from .stats import holm, paired_difference, summarise, verdict

__all__ = ["ACCURACY", "NEAR_CHANCE_SHARE", "build_grid_report", "finished_runs"]

# accuracy intervals are clipped to the range accuracy can take
ACCURACY = (0.0, 1.0)

# "near chance": within this share of the way from chance (1 / classes) to 100 %
NEAR_CHANCE_SHARE = 0.1


def _check_record(run_dir: RunDir, number: int, row: dict[str, Any]) -> None:
    """Raise :class:`RunError` naming the run, the record and the field the report cannot
    use (a damaged or hand-edited ``metrics.jsonl``): the line must be an
    :class:`~preattn.train.epoch_record.EpochRecord`."""
    try:
        EpochRecord.from_json(row, f"{run_dir.path / METRICS_FILE}: record {number}")
    except RecordError as exc:
        raise RunError(f"{exc}; retrain or remove that run") from None


def finished_runs(grid: Grid, root: Path) -> Runs:
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


def diverged_runs(grid: Grid, root: Path) -> dict[str, dict[int, str]]:
    """``{variant: {seed: message}}`` of the runs whose training diverged
    (:meth:`RunDir.divergence`) before the grid's epochs: a run that has them all is
    finished for the grid, whatever a longer training did after them."""
    out: dict[str, dict[int, str]] = {v: {} for v in grid.variants}
    for run in grid.runs(root):
        run_dir = RunDir(run.config.out)  # type: ignore[arg-type]
        if not run_dir.holds_run() or run_dir.committed_epoch() >= run.config.epochs:
            continue
        record = run_dir.divergence()
        if record is not None:
            out[run.variant][run.seed] = record["message"]
    return out


def _parameters(grid: Grid, root: Path, variant: str, seeds: list[int]) -> int | None:
    """Parameters of ``variant``'s network, rebuilt from one of its finished runs."""
    if not seeds:
        return None
    loaded = load_model(grid.config(variant, seeds[0], root).out)  # type: ignore[arg-type]
    return sum(p.numel() for p in loaded.model.parameters())


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


def _time_to_target_over_seeds(
    by_seed: dict[int, list[dict[str, Any]]], target: float
) -> TimeToTarget:
    """Epochs, seconds and steps to ``target``, mean over the seeds that reached it."""
    hits = [_time_to_target(rows, target) for rows in by_seed.values()]
    reached = [h for h in hits if h is not None]
    return TimeToTarget(
        reached=len(reached),
        of=len(hits),
        epochs=statistics.fmean(h[0] for h in reached) if reached else None,
        seconds=statistics.fmean(h[1] for h in reached) if reached else None,
        steps=(
            statistics.fmean(h[2] for h in reached)  # type: ignore[misc]
            if reached and all(h[2] is not None for h in reached)
            else None
        ),
    )


def _span(rows: list[dict[str, Any]]) -> tuple[float, float] | None:
    """When a run trained (first epoch's start, last epoch's end; Unix seconds), or None
    for records without the times."""
    starts = [r["wall_start"] for r in rows if "wall_start" in r]
    ends = [r["wall_end"] for r in rows if "wall_end" in r]
    return (min(starts), max(ends)) if starts and ends else None


def _shared_time(runs: Runs) -> dict[tuple[str, int], bool | None]:
    """``{(variant, seed): True | False | None}``: whether the run's training overlapped in
    time with another run of the grid (its images/s then measured a shared machine);
    None when its records lack the times."""
    spans = {(v, s): _span(rows) for v, by_seed in runs.items() for s, rows in by_seed.items()}
    out: dict[tuple[str, int], bool | None] = {}
    for key, span in spans.items():
        if span is None:
            out[key] = None
            continue
        out[key] = any(
            other is not None and other_key != key and other[0] < span[1] and span[0] < other[1]
            for other_key, other in spans.items()
        )
    return out


def _sampling_errors(
    grid: Grid, root: Path, name: str, runs: Runs, metrics: list[str]
) -> dict[str, SamplingError]:
    """The test-set sampling error of ``name``'s accuracy and of its difference to the
    reference, per metric (:mod:`preattn.ablate.sampling_error`), from the finished runs'
    kept outcomes; metrics without them are left out."""
    folders: dict[str, dict[int, Path]] = {v: {} for v in grid.variants}
    for run in grid.runs(root):
        if run.seed in runs[run.variant]:
            folders[run.variant][run.seed] = Path(run.config.out)  # type: ignore[arg-type]
    reference = None if name == grid.reference else folders[grid.reference]
    out = {}
    for metric in metrics:
        error = sampling_error(folders[name], reference, metric)
        if error is not None:
            out[metric] = SamplingError.from_json(error)
    return out


def _match_cost(grid: Grid, root: Path) -> MatchCost | None:
    """What ``match_cost`` measured (``match_cost.json`` in ``root``), or None."""
    if grid.match_cost is None:
        return None
    path = root / MATCH_FILE
    saved = json.loads(path.read_text()).get(grid.match_cost["variant"]) if path.is_file() else None
    if saved is None:
        return MatchCost(dict(grid.match_cost))
    # a record keeps the cost it was sized with (older records: matched), not the grid's
    return MatchCost({**grid.match_cost, **saved, "cost": saved.get("cost", "matched")})


def _paired(values: dict[int, float], reference: dict[int, float]) -> PairedDifference | None:
    diff = paired_difference(values, reference)
    return None if diff is None else PairedDifference.from_json(diff)


def _paired_differences(
    grid: Grid, runs: Runs, metrics: list[str]
) -> tuple[dict[tuple[str, str], PairedDifference | None], int]:
    """``{(variant, metric): difference to the reference}`` for every variant but the
    reference and every metric (:func:`~preattn.ablate.finals.metric_names`), each with its
    p Holm-adjusted over all of them (one family, the grid's declared tests: one without
    a finished pair yet counts as p = 1, so an unfinished grid's p are never smaller than
    the finished grid's); and the number of tests in the family."""
    diffs: dict[tuple[str, str], PairedDifference | None] = {}
    for metric in metrics:
        reference = final_accuracies(runs[grid.reference], metric)
        for name in grid.variants:
            if name != grid.reference:
                diffs[(name, metric)] = _paired(final_accuracies(runs[name], metric), reference)
    family = {f"{n}|{m}": None if d is None else d.p for (n, m), d in diffs.items()}
    adjusted = holm(family, count_missing=True)
    held = {
        key: None if d is None else d.with_holm(adjusted[f"{key[0]}|{key[1]}"])
        for key, d in diffs.items()
    }
    return held, len(family)


def _verdict(
    primary: Primary | None, expect: str | None, diff: PairedDifference | None
) -> Verdict | None:
    """The decision on the primary contrast of a variant the claim ``expect``\\ s something
    of; None without a claim or a finished pair."""
    if primary is None or expect is None or diff is None or not diff.diffs:
        return None
    decision = verdict(diff.to_json(), diff.p_holm, primary.sesoi, expect)
    return Verdict.from_json({"metric": primary.metric, "expect": expect, **decision})


def _per_seed(
    by_seed: dict[int, list[dict[str, Any]]], shared: dict[int, bool | None]
) -> dict[int, SeedFinals]:
    """Every seed's own final values, so the pairing and the statistics can be audited."""
    return {
        seed: SeedFinals.from_json(
            {
                "test_acc": rows[-1]["test_acc"],
                VALIDATION: rows[-1].get(VALIDATION),
                "test_acc_corrupt": dict(rows[-1].get("test_acc_corrupt", {})),
                "lambda": dict(rows[-1].get("lambda", {})),
                "modulation": dict(rows[-1].get("modulation", {})),
                "images_per_s": statistics.fmean(r["images_per_s"] for r in rows),
                "elapsed_s": rows[-1].get("elapsed_s"),
                "timing_shared": shared[seed],
            }
        )
        for seed, rows in sorted(by_seed.items())
    }


def _summary(by_seed: dict[int, list[dict[str, Any]]], metric: str) -> Summary:
    """Mean and interval over seeds of the final accuracy on ``metric``."""
    return Summary.from_json(summarise(list(final_accuracies(by_seed, metric).values()), ACCURACY))


def _any_shared(marks: list[bool | None]) -> bool | None:
    """True: some run overlapped another in time; None: the records cannot tell."""
    return True if any(marks) else (None if any(m is None for m in marks) else False)


def build_grid_report(grid: Grid, root: str | Path, *, count_parameters: bool = True) -> GridReport:
    """The report of ``grid``'s finished runs under ``root`` (module docstring)."""
    root = Path(root)
    runs = finished_runs(grid, root)
    diverged = diverged_runs(grid, root)
    corrupt_names = corruption_names(runs)
    metrics = metric_names(runs)
    validated = VALIDATION in metrics
    diffs, tests = _paired_differences(grid, runs, metrics)
    primary = Primary.from_json(grid.primary)
    shared = _shared_time(runs)
    variants = []
    for name, overrides in grid.variants.items():
        by_seed = runs[name]
        seeds = sorted(by_seed)
        accs = [final_accuracies(by_seed, TEST)[s] for s in seeds]
        speeds = [statistics.fmean(r["images_per_s"] for r in rows) for rows in by_seed.values()]
        chance = _chance(grid, root, name, seeds)
        variants.append(
            VariantResult(
                name=name,
                overrides=overrides,
                n=len(accs),
                seeds=tuple(seeds),
                missing_seeds=tuple(
                    s for s in grid.seeds if s not in by_seed and s not in diverged[name]
                ),
                diverged=diverged[name],
                test_acc=Summary.from_json(summarise(accs, ACCURACY)),
                paired_diff=diffs.get((name, TEST)),
                val_acc=_summary(by_seed, VALIDATION) if validated else None,
                val_diff=diffs.get((name, VALIDATION)),
                corrupt={
                    c: CorruptResult(_summary(by_seed, c), diffs.get((name, c)))
                    for c in corrupt_names
                },
                images_per_s=statistics.fmean(speeds) if speeds else None,
                images_per_s_range=(min(speeds), max(speeds)) if speeds else None,
                timing_shared=_any_shared([shared[(name, seed)] for seed in by_seed]),
                seconds=(
                    statistics.fmean(rows[-1].get("elapsed_s", 0.0) for rows in by_seed.values())
                    if by_seed
                    else None
                ),
                params=_parameters(grid, root, name, seeds) if count_parameters else None,
                chance=chance,
                near_chance=(
                    chance is not None
                    and bool(accs)
                    and statistics.fmean(accs) < chance + NEAR_CHANCE_SHARE * (1 - chance)
                ),
                lambda_final=_final_per_block(by_seed, "lambda"),
                # how much attention changes its input at the end (preattn.modulation)
                modulation_final=_final_per_block(by_seed, "modulation"),
                per_seed=_per_seed(by_seed, {s: shared[(name, s)] for s in by_seed}),
                time_to_target=(
                    None
                    if grid.target_acc is None
                    else _time_to_target_over_seeds(by_seed, grid.target_acc)
                ),
                test_set=_sampling_errors(grid, root, name, runs, metrics),
                verdict=_verdict(
                    primary,
                    grid.expectation(name),
                    None if primary is None else diffs.get((name, primary.metric)),
                ),
            )
        )
    return GridReport(
        reference=grid.reference,
        seeds=tuple(grid.seeds),
        target_acc=grid.target_acc,
        base=grid.base,
        primary=primary,
        match_cost=_match_cost(grid, root),
        holm_tests=tests,
        corruptions=tuple(corrupt_names),
        variants=tuple(variants),
    )

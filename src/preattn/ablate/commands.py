"""A grid whose variants are commands: paired seeds, Holm and TOST over any training script.

``GRID.yaml``::

    command: python train.py --seed {seed} --out {out} --attention {attention}
    variants:               # name -> the values of the command's other {fields}
      none: {attention: none}
      pre: {attention: pre}
    reference: none
    seeds: [0, 1, 2]
    metric: test_acc        # a number in the JSON object the command writes to {out}/metric.json
    metric_file: metric.json  # optional: that file's name inside {out}
    primary:                # optional, as in a training grid: what the verdicts decide
      sesoi: 0.003
      expect: better

Run ``(variant, seed)`` runs the command in the current directory, each word of it
formatted with ``{seed}``, ``{out}`` (the run's folder ``DIR/<variant>/seed<seed>``),
``{variant}`` and the variant's fields (a value stays one argument, spaces included; no
shell). Its output goes to ``{out}/command.log``.

A run is finished when ``{out}/<metric_file>`` holds the metric: running the grid again keeps
it. A run without it (never started, interrupted, failed) is run again with the same
``{out}``, so a script that resumes from its folder resumes. A command that exits 0 without
writing its metric is a failed run whose error names the file and the key. The report
(``report.json``, ``report.md``) gives each variant's mean and 95 % interval, the paired
difference to the reference per seed, Holm's adjusted p and, with ``primary``, the verdict
(:mod:`preattn.ablate.stats`).

Pairing the runs' initialisation is the script's concern: build the network under
``torch.manual_seed(seed)`` and only then call ``preattn.retrofit`` (the shared layers are then
the same for every variant of a seed), or use
:func:`preattn.train.paired_init.initialise_paired` for networks built with attention.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import re
import shlex
import signal
import string
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import atomic_write_text
from ..train.config import ConfigError, load_yaml
from .command_plots import plot_command_report
from .command_results import CommandReport, CommandRow
from .grid import REPORT_FILES, reference_and_seeds
from .results import PairedDifference, Summary, Verdict
from .run import AblationFailed
from .stats import holm, paired_difference, summarise, verdict

__all__ = [
    "CommandFailed",
    "CommandGrid",
    "ablate_commands",
    "format_command_report",
    "is_command_grid",
    "run_from_cli",
]

_logger = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}")  # a variant's folder, a file name

_OWN_FIELDS = ("seed", "out", "variant")
_KEYS = {"command", "variants", "reference", "seeds", "metric", "metric_file", "primary"}


class CommandFailed(AblationFailed):
    """Some runs of a command grid failed; the report holds the others."""


def _fields(template: list[str]) -> set[str]:
    found: set[str] = set()
    for word in template:
        for _, name, _, _ in string.Formatter().parse(word):
            if name is not None:
                found.add(name)
    return found


@dataclass(frozen=True)
class CommandGrid:
    """A validated command grid (module docstring); build it with :meth:`from_dict`."""

    command: tuple[str, ...]
    variants: dict[str, dict[str, str]]
    reference: str
    seeds: tuple[int, ...]
    metric: str
    metric_file: str = "metric.json"
    primary: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, source: str = "grid") -> CommandGrid:
        """Check ``values``; errors name ``source``, the key, what was expected and given."""
        unknown = sorted(set(values) - _KEYS)
        if unknown:
            raise ConfigError(
                f"{source}: unknown command-grid keys {unknown}; known: {sorted(_KEYS)}"
            )
        command = values.get("command")
        if not isinstance(command, str) or not command.strip():
            raise ConfigError(f"{source}: command must be a non-empty string, got {command!r}")
        words = tuple(shlex.split(command))
        needed = _fields(list(words)) - set(_OWN_FIELDS)
        if "out" not in _fields(list(words)):
            raise ConfigError(
                f"{source}: command must contain {{out}} (the folder where the run writes "
                f"its metric), got {command!r}"
            )
        variants = _variants(values.get("variants"), needed, source)
        reference, seeds = reference_and_seeds(values, variants, source)
        metric = values.get("metric")
        if not isinstance(metric, str) or not metric:
            raise ConfigError(f"{source}: metric must name a key of the run's JSON, got {metric!r}")
        metric_file = values.get("metric_file", "metric.json")
        if not isinstance(metric_file, str) or not _NAME.fullmatch(metric_file):
            raise ConfigError(f"{source}: metric_file must be a file name, got {metric_file!r}")
        return cls(
            words, variants, reference, tuple(seeds), metric, metric_file, _primary(values, source)
        )

    @classmethod
    def from_yaml(cls, path: str | Path) -> CommandGrid:
        return cls.from_dict(load_yaml(Path(path), "grid file") or {}, source=str(path))

    def argv(self, variant: str, seed: int, out: Path) -> list[str]:
        """The command of run ``(variant, seed)`` as its list of arguments."""
        fields = {**self.variants[variant], "seed": str(seed), "out": str(out), "variant": variant}
        return [word.format(**fields) for word in self.command]


def _variants(given: Any, needed: set[str], source: str) -> dict[str, dict[str, str]]:
    if not isinstance(given, Mapping) or not given:
        raise ConfigError(f"{source}: variants must map names to field values, got {given!r}")
    out: dict[str, dict[str, str]] = {}
    for name, fields in given.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name) or name in REPORT_FILES:
            raise ConfigError(f"{source}: variant name {name!r} cannot name a folder here")
        fields = fields or {}
        if not isinstance(fields, Mapping):
            raise ConfigError(f"{source}: variant {name} must map fields to values, got {fields!r}")
        missing, extra = sorted(needed - set(fields)), sorted(set(fields) - needed)
        if missing or extra:
            raise ConfigError(
                f"{source}: variant {name} must give the command's fields {sorted(needed)}; "
                f"missing {missing}, not in the command {extra}"
            )
        out[name] = {k: str(v) for k, v in fields.items()}
    return out


def _primary(values: Mapping[str, Any], source: str) -> dict[str, Any] | None:
    primary = values.get("primary")
    if primary is None:
        return None
    if not isinstance(primary, Mapping) or set(primary) - {"sesoi", "expect"}:
        raise ConfigError(f"{source}: primary must be {{sesoi, expect}}, got {primary!r}")
    sesoi = primary.get("sesoi")
    if not isinstance(sesoi, int | float) or isinstance(sesoi, bool) or not sesoi > 0:
        raise ConfigError(f"{source}: primary.sesoi must be a number > 0, got {sesoi!r}")
    expect = primary.get("expect", "better")
    if expect not in ("better", "worse"):
        raise ConfigError(f"{source}: primary.expect must be better or worse, got {expect!r}")
    return {"sesoi": float(sesoi), "expect": expect}


def is_command_grid(path: str | Path) -> bool:
    """Whether the grid file at ``path`` declares a ``command``."""
    values = load_yaml(Path(path), "grid file")
    return isinstance(values, Mapping) and "command" in values


def read_metric(grid: CommandGrid, out: Path) -> float | None:
    """The run's metric, or None when its file is absent; an unreadable file or a missing
    or non-numeric key is a ``ConfigError`` naming the file and the key."""
    path = out / grid.metric_file
    if not path.is_file():
        return None
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path}: not a JSON object ({error})") from error
    value = values.get(grid.metric) if isinstance(values, dict) else None
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(f"{path}: {grid.metric!r} must be a finite number, got {value!r}")
    return float(value)


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def _stop_on_sigterm() -> Any:
    """SIGTERM raises KeyboardInterrupt here (main thread only), so that :func:`_run` kills
    and reaps the running command before ablate ends: no command outlives it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(grid: CommandGrid, variant: str, seed: int, out: Path) -> str | None:
    """Run one command; the error of a failed run, else None."""
    out.mkdir(parents=True, exist_ok=True)
    (out / grid.metric_file).unlink(missing_ok=True)
    argv = grid.argv(variant, seed, out)
    with open(out / "command.log", "a") as log:
        log.write(f"$ {shlex.join(argv)}\n")
        log.flush()
        try:
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        except OSError as error:
            return f"could not start {argv[0]!r}: {error}"
        try:
            code = process.wait()
        except BaseException:  # Ctrl-C, SIGTERM: the command ends with ablate
            process.kill()
            process.wait()
            raise
    if code != 0:
        return f"exited with status {code} (its output: {out / 'command.log'})"
    try:
        if read_metric(grid, out) is None:
            return f"exited 0 but wrote no {out / grid.metric_file} with {grid.metric!r}"
    except ConfigError as error:
        return str(error)
    return None


def _report(grid: CommandGrid, values: dict[str, dict[int, float]]) -> CommandReport:
    reference = values[grid.reference]
    diffs = {
        v: paired_difference(values[v], reference) for v in grid.variants if v != grid.reference
    }
    adjusted = holm({v: (d or {}).get("p") for v, d in diffs.items()}, count_missing=True)
    rows = []
    for variant in grid.variants:
        diff = diffs.get(variant)
        decision = (
            None
            if diff is None or grid.primary is None
            else verdict(diff, adjusted[variant], grid.primary["sesoi"], grid.primary["expect"])
        )
        rows.append(
            CommandRow(
                variant,
                Summary.from_json(summarise(list(values[variant].values()))),
                dict(sorted(values[variant].items())),
                None if diff is None else PairedDifference.from_json(diff),
                None if diff is None else adjusted[variant],
                None if decision is None else Verdict.from_json(decision),
            )
        )
    return CommandReport(grid.metric, grid.reference, tuple(rows))


def format_command_report(report: CommandReport | Mapping[str, Any]) -> str:
    """The report (a :class:`~preattn.ablate.command_results.CommandReport` or
    ``report.json``'s content) as markdown: one row per variant."""
    if not isinstance(report, CommandReport):
        report = CommandReport.from_json(report)
    lines = [
        f"# {report.metric}: variants against {report.reference} (paired by seed)",
        "",
        "| variant | n | mean | 95 % interval | difference | p (Holm) | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [row.text for row in report.variants]
    return "\n".join(lines) + "\n"


def ablate_commands(
    grid: CommandGrid,
    out: str | Path,
    *,
    dry_run: bool = False,
    plots: bool = True,
    progress: Callable[[str], None] = _logger.info,
) -> dict[str, Any] | None:
    """Run the unfinished runs of ``grid`` in ``out``, one at a time, and write the report
    (``report.json``, ``report.md``) and, with ``plots``, its figures (``metric.png``,
    ``forest.png``: :mod:`preattn.ablate.command_plots`); returns report.json's content (None
    for a dry run). Raises
    :class:`CommandFailed` after the report when some runs failed."""
    out = Path(out)
    runs = [(v, s, out / v / f"seed{s}") for v in grid.variants for s in grid.seeds]
    values: dict[str, dict[int, float]] = {v: {} for v in grid.variants}
    pending = []
    for variant, seed, folder in runs:
        try:
            value = read_metric(grid, folder)
        except ConfigError as error:  # a run stopped while writing it: run it again
            progress(f"  {variant} seed {seed} runs again: {error}")
            value = None
        if value is None:
            pending.append((variant, seed, folder))
        else:
            values[variant][seed] = value
    progress(
        f"{len(runs)} runs in {out}: {len(runs) - len(pending)} finished, {len(pending)} to run"
    )
    if dry_run:
        for variant, seed, folder in pending:
            progress(
                f"  would run {variant} seed {seed}: {shlex.join(grid.argv(variant, seed, folder))}"
            )
        return None
    failed = []
    with _stop_on_sigterm():
        for variant, seed, folder in pending:
            progress(f"  running {variant} seed {seed}")
            error = _run(grid, variant, seed, folder)
            if error is None:
                values[variant][seed] = read_metric(grid, folder)  # type: ignore[assignment]
            else:
                failed.append(f"{variant} seed {seed}: {error}")
    report = _report(grid, values)
    content = report.to_json()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "report.json", json.dumps(content, indent=2) + "\n")
    atomic_write_text(out / "report.md", format_command_report(report))
    if plots:
        plot_command_report(report, out, out.name)
    if failed:
        raise CommandFailed(
            f"{len(failed)} run(s) failed: {'; '.join(failed)}; the report covers the others "
            "(run the same command again to retry them)"
        )
    return content


def run_from_cli(args: argparse.Namespace) -> int:
    """``preattn ablate GRID --out DIR`` for a command grid (``--dry-run`` allowed)."""
    unsupported = [
        flag
        for flag, used in (
            ("--jobs", args.jobs != 1),
            ("--executor", args.executor != "local"),
            ("--report-only", args.report_only),
            ("--time-limit", args.time_limit is not None),
            ("--variants", args.variants is not None),
            ("--override", bool(args.override)),
            ("--report-dir", args.report_dir is not None),
        )
        if used
    ]
    if unsupported:
        raise ValueError(
            f"{args.grid[0]} is a command grid: its runs are run here one at a time and "
            f"{', '.join(unsupported)} do not apply to it; leave them out"
        )
    grid = CommandGrid.from_yaml(args.grid[0])
    report = ablate_commands(grid, args.out, dry_run=args.dry_run)
    if report is not None:
        _logger.info("")
        _logger.info(format_command_report(report))
        _logger.info(f"report: {Path(args.out) / 'report.md'}")
    return 0

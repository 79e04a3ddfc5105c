"""An ablation grid: a base configuration, named variants of it, a reference, seeds.

``GRID.yaml``::

    base:               # any `preattn train` option (flat keys, as in config.yaml)
      dataset: fashion-mnist
      epochs: 3
    variants:           # name -> the options that override base
      none: {placement: none}
      pre: {placement: pre}
    reference: none     # the variant the others are compared with (paired, per seed)
    seeds: [0, 1, 2]
    target_acc: 0.85    # optional: epochs and seconds to reach this test accuracy
    overrides: {}       # optional: options set on every run, over base and the variants
    primary:            # optional, declared before running: what the verdicts decide
      metric: test_acc  # or val_acc (runs with holdout), or a corruption, e.g. noise:0.2
      sesoi: 0.003      # smallest effect of interest (fraction: 0.3 points)
      expect: better    # what the claim says of the variants vs the reference
                        # (better/worse, or {variant: better, ...} for some variants)
    match_cost:         # optional: size a plain variant to another's training step time
      variant: none-wide    # placement none; its width is measured (match_cost.py)
      to: pre
      cost: matched         # or at_least: the narrowest width at or above to's cost

Run ``(variant, seed)`` trains ``base ∪ variants[variant]`` with ``seed`` in
``DIR/<variant>/seed<seed>/``. Every variant uses the same seeds, so a seed fixes the data
order and augmentation for all of them and differences are paired.

A grid's runs evaluate on the test set after their last epoch only (``eval_every: 0``),
where evaluation would otherwise be much of a short run's time; with ``target_acc`` they
evaluate every epoch (the time to the target needs it). ``eval_every`` in ``base`` or a
variant says otherwise.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..train.config import ConfigError, TrainConfig, load_yaml
from .finals import TEST, VALIDATION
from .results import COST_MODES

__all__ = ["REPORT_FILES", "Grid", "GridRun", "reference_and_seeds"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}")
# what ablate writes beside the variants' folders; no variant may take these names
REPORT_FILES = (
    "report.md",
    "report.json",
    "grid.yaml",
    "accuracy.png",
    "lambda.png",
    "accuracy_vs_time.png",
    "modulation.png",
    "forest.png",
    "metric.png",
    ".submitit",
)
# options the grid sets itself for each run
_GRID_KEYS = ("seed", "out")


def reference_and_seeds(
    values: Mapping[str, Any], variants: Mapping[str, Any], source: str
) -> tuple[str, list[int]]:
    """A grid's ``reference`` (one of ``variants``; default: the first) and ``seeds``
    (distinct ints >= 0; default ``[0]``), checked; errors name ``source``."""
    reference = values.get("reference", next(iter(variants)))
    if reference not in variants:
        raise ConfigError(
            f"{source}: reference must be one of the variants {list(variants)}, got {reference!r}"
        )
    seeds = values.get("seeds", [0])
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
    ):
        raise ConfigError(f"{source}: seeds must be a list of ints >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{source}: seeds must not repeat, got {seeds}")
    return reference, seeds


@dataclass(frozen=True)
class GridRun:
    """One run of a grid: its variant, seed and full configuration."""

    variant: str
    seed: int
    config: TrainConfig

    @property
    def label(self) -> str:
        return f"{self.variant} seed {self.seed}"


@dataclass(frozen=True)
class Grid:
    """A validated grid (see the module docstring); build it with :meth:`from_dict` or
    :meth:`from_yaml`."""

    base: dict[str, Any]
    variants: dict[str, dict[str, Any]]
    reference: str
    seeds: tuple[int, ...]
    target_acc: float | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    primary: dict[str, Any] | None = None
    match_cost: dict[str, str] | None = None
    # the widths match_cost measured, by variant (set by ablate from OUT/match_cost.json)
    matched: dict[str, float] = field(default_factory=dict)
    source: str = field(default="", compare=False)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, source: str = "grid") -> Grid:
        """Check ``values`` and build the grid; errors name ``source`` and the key."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: a grid must be a mapping, got {type(values).__name__}")
        known = {
            "base",
            "variants",
            "reference",
            "seeds",
            "target_acc",
            "overrides",
            "primary",
            "match_cost",
        }
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown grid keys {unknown}; known: {sorted(known)}")
        base = _options(values.get("base") or {}, f"{source}: base")
        variants_in = values.get("variants")
        if not isinstance(variants_in, Mapping) or not variants_in:
            raise ConfigError(
                f"{source}: variants must map names to option overrides, got {variants_in!r}"
            )
        variants: dict[str, dict[str, Any]] = {}
        for name, overrides in variants_in.items():
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                raise ConfigError(
                    f"{source}: variant names must be 1-100 letters, digits, '_', '.', '+' or "
                    f"'-', starting with a letter or digit (they name folders), got {name!r}"
                )
            if name.lower() in REPORT_FILES:
                raise ConfigError(
                    f"{source}: variant name {name!r} is the name of a report file "
                    f"({', '.join(REPORT_FILES)}); choose another"
                )
            twin = next((v for v in variants if v.lower() == name.lower()), None)
            if twin is not None:
                raise ConfigError(
                    f"{source}: variant names {twin!r} and {name!r} differ only in case "
                    "(one folder on a case-insensitive file system)"
                )
            variants[name] = _options(overrides or {}, f"{source}: variant {name}")
        reference, seeds = reference_and_seeds(values, variants, source)
        target = values.get("target_acc")
        if target is not None and (
            isinstance(target, bool) or not isinstance(target, int | float) or not 0 < target <= 1
        ):
            raise ConfigError(f"{source}: target_acc must be a fraction in (0, 1], got {target!r}")
        grid = cls(
            base,
            variants,
            reference,
            tuple(seeds),
            None if target is None else float(target),
            _options(values.get("overrides") or {}, f"{source}: overrides"),
            _primary(values.get("primary"), variants, reference, source),
            _match_cost(values.get("match_cost"), variants, source),
            source=source,
        )
        grid._check_runs()
        return grid

    def _check_runs(self) -> None:
        """Check what only the runs' configurations show: each is valid, ``match_cost``
        sizes a plain network, ``target_acc`` has per-epoch test scores, and every run
        measures the primary metric; raise :class:`ConfigError` naming the grid."""
        grid, source = self, self.source
        runs = grid.runs(Path("."))  # every variant's configuration must be valid
        if grid.match_cost is not None:
            sized = grid.match_cost["variant"]
            spec = grid.config(sized, grid.seeds[0], Path("."), matched=False).spec
            if spec.has_attention:
                raise ConfigError(
                    f"{source}: match_cost: {sized!r} has attention ({spec.describe()}); "
                    "match_cost sizes a network without attention (placement: none) to cost "
                    f"what {grid.match_cost['to']!r} costs"
                )
        if grid.target_acc is not None:
            held = sorted({r.variant for r in runs if r.config.holdout})
            if held:
                raise ConfigError(
                    f"{source}: target_acc times the epochs' test accuracy, which runs with "
                    f"holdout measure after the last epoch only; {held} hold images out"
                )
        metric = grid.primary["metric"] if grid.primary else TEST
        lacking = sorted({r.variant for r in runs if metric not in _measured(r.config)})
        if lacking:
            raise ConfigError(
                f"{source}: primary metric {metric!r} is test_acc, val_acc (runs with holdout) "
                f"or a corruption every run evaluates (eval_corrupt); {lacking} do not "
                "measure it"
            )

    @classmethod
    def from_yaml(cls, path: str | Path) -> Grid:
        path = Path(path)
        return cls.from_dict(load_yaml(path, "grid file") or {}, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "base": dict(self.base),
            "variants": {k: dict(v) for k, v in self.variants.items()},
            "reference": self.reference,
            "seeds": list(self.seeds),
        }
        if self.target_acc is not None:
            out["target_acc"] = self.target_acc
        if self.overrides:
            out["overrides"] = dict(self.overrides)
        if self.primary is not None:
            out["primary"] = dict(self.primary)
        if self.match_cost is not None:
            out["match_cost"] = dict(self.match_cost)
        return out

    def with_matched(self, widths: Mapping[str, float]) -> Grid:
        """This grid with the widths ``match_cost`` measured (``{variant: width}``)."""
        return dataclasses.replace(self, matched=dict(widths))

    def expectation(self, variant: str) -> str | None:
        """What the grid's primary claim expects of ``variant`` against the reference
        (``better``/``worse``), or None (the reference, a variant it says nothing of, or
        no ``primary``)."""
        if self.primary is None or variant == self.reference:
            return None
        expect = self.primary["expect"]
        return expect if isinstance(expect, str) else expect.get(variant)

    def with_overrides(self, overrides: Mapping[str, Any]) -> Grid:
        """This grid with ``overrides`` set on every run (over base and the variants), e.g.
        ``{"epochs": 1, "limit_train": 256}`` for a quick pass through a long grid; the
        runs belong in another ``--out`` then (their configuration differs)."""
        values = self.to_dict()
        values["overrides"] = {**self.overrides, **overrides}
        return Grid.from_dict(values, source=f"{self.source} (overridden)")

    def config(
        self, variant: str, seed: int, root: str | Path, *, matched: bool = True
    ) -> TrainConfig:
        """The configuration of run ``(variant, seed)`` under ``root`` (with the width
        ``match_cost`` measured for it, unless ``matched=False``)."""
        values = {
            "eval_every": 0 if self.target_acc is None else 1,
            **self.base,
            **self.variants[variant],
            **self.overrides,
        }
        if matched and variant in self.matched:
            values["width"] = self.matched[variant]
        values.update(seed=int(seed), out=str(Path(root) / variant / f"seed{seed}"))
        try:
            return TrainConfig.from_dict(values).validate()
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{self.source}: variant {variant}: {exc}") from None

    def runs(self, root: str | Path) -> list[GridRun]:
        """Every run, seed by seed (so a partial grid has whole seeds of every variant)."""
        return [
            GridRun(variant, seed, self.config(variant, seed, root))
            for seed in self.seeds
            for variant in self.variants
        ]


def _match_cost(values: Any, variants: Mapping[str, Any], source: str) -> dict[str, str] | None:
    """The checked ``match_cost`` declaration, or None."""
    if values is None:
        return None
    where = f"{source}: match_cost"
    if (
        not isinstance(values, Mapping)
        or not {"variant", "to"} <= set(values) <= {"variant", "to", "cost"}
        or not all(values[k] in variants for k in ("variant", "to"))
        or values["variant"] == values["to"]
    ):
        raise ConfigError(
            f"{where} must name two different variants as {{variant: V, to: W}} (V gets the "
            f"width at which it costs what W does), got {values!r}"
        )
    if "width" in variants[values["variant"]]:
        raise ConfigError(f"{where}: {values['variant']!r} sets width itself; match_cost sets it")
    declared = {"variant": str(values["variant"]), "to": str(values["to"])}
    if "cost" in values:
        if values["cost"] not in COST_MODES:
            raise ConfigError(
                f"{where}.cost must be one of {', '.join(COST_MODES)}, got {values['cost']!r}"
            )
        declared["cost"] = str(values["cost"])
    return declared


def _measured(config: TrainConfig) -> tuple[str, ...]:
    """The metrics a run of ``config`` is scored on after its last epoch."""
    return (TEST, *((VALIDATION,) if config.holdout else ()), *config.eval_corrupt)


def _primary(
    values: Any, variants: Mapping[str, Any], reference: str, source: str
) -> dict[str, Any] | None:
    """The checked ``primary`` declaration (see the module docstring), or None."""
    if values is None:
        return None
    where = f"{source}: primary"
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where} must be a mapping with metric, sesoi, expect; got {values!r}")
    unknown = sorted(set(values) - {"metric", "sesoi", "expect"})
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; known: ['expect', 'metric', 'sesoi']")
    metric = values.get("metric", "test_acc")
    if not isinstance(metric, str) or not metric:
        raise ConfigError(
            f"{where}: metric must be test_acc, val_acc or a corruption name, got {metric!r}"
        )
    sesoi = values.get("sesoi")
    if isinstance(sesoi, bool) or not isinstance(sesoi, int | float) or not 0 < sesoi < 1:
        raise ConfigError(
            f"{where}: sesoi (the smallest effect of interest, a fraction of accuracy such as "
            f"0.003 for 0.3 points) must be in (0, 1), got {sesoi!r}"
        )
    expect = values.get("expect", "better")
    directions = ("better", "worse")
    if isinstance(expect, Mapping):
        bad = {k: v for k, v in expect.items() if k not in variants or k == reference}
        wrong = {k: v for k, v in expect.items() if v not in directions}
        if bad or wrong:
            raise ConfigError(
                f"{where}: expect must map variants other than the reference {reference!r} "
                f"to 'better' or 'worse', got {dict(expect)!r}"
            )
        expect = dict(expect)
    elif expect not in directions:
        raise ConfigError(f"{where}: expect must be 'better', 'worse' or a mapping, got {expect!r}")
    return {"metric": metric, "sesoi": float(sesoi), "expect": expect}


def _options(values: Any, where: str) -> dict[str, Any]:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where} must be a mapping of train options, got {values!r}")
    values = {str(k).replace("-", "_"): v for k, v in values.items()}
    fixed = sorted(set(values) & set(_GRID_KEYS))
    if fixed:
        raise ConfigError(f"{where}: {fixed} are set by the grid (seeds, the output folder)")
    unknown = sorted(set(values) - set(TrainConfig.keys()))
    if unknown:
        raise ConfigError(
            f"{where}: unknown train options {unknown}; known: {sorted(TrainConfig.keys())}"
        )
    return values

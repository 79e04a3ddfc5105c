"""The report of a grid as typed records: what ``report.json`` holds, field by field.

A :class:`GridReport` is built once from a grid's finished runs
(:func:`preattn.ablate.report.build_grid_report`); ``report.json``, ``report.md`` and the
forest plot are rendered from it, and a committed ``report.json`` reads back into it
(:meth:`GridReport.from_json`). ``to_json`` writes the format ``report.json`` has always had:
the same keys, nesting and order, so ``GridReport.from_json(d).to_json() == d``.

Units: accuracies, their differences, intervals and standard errors are fractions in
[0, 1] (a difference in [−1, 1]); ``margin``/``sesoi``: the smallest effect of interest, a
fraction; images/s over training; seconds of training and evaluation; λ and modulation as
the runs record them (:mod:`preattn.modulation`). Statistics as in
:mod:`preattn.ablate.stats` (``n`` values ``x_i``: mean, sample std, Student-t 95 %
interval ``ci95``), the test-set sampling error as in :mod:`preattn.ablate.sampling_error`.

A key that a report did not hold (one written before that key existed, or a hand-made
one) is kept in the record's ``absent``: the field takes its empty value and ``to_json``
leaves the key out again, so an older report is written back as it was read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .finals import TEST, VALIDATION

__all__ = [
    "COST_MODES",
    "CorruptResult",
    "GridReport",
    "MatchCost",
    "PairedDifference",
    "Power",
    "Primary",
    "SamplingError",
    "SeedFinals",
    "Summary",
    "TimeToTarget",
    "VariantResult",
    "Verdict",
]

_NONE: frozenset[str] = frozenset()


def _absent_keys(data: Mapping[str, Any], keys: Iterable[str]) -> frozenset[str]:
    """The keys of ``keys`` that ``data`` does not hold."""
    return frozenset(key for key in keys if key not in data)


def _written(pairs: dict[str, Any], absent: frozenset[str]) -> dict[str, Any]:
    """``pairs`` without the keys the record was read without."""
    return {key: value for key, value in pairs.items() if key not in absent}


def _pair(values: Any) -> tuple[float, float] | None:
    return None if values is None else (values[0], values[1])


def _list(values: tuple[Any, ...] | None) -> list[Any] | None:
    return None if values is None else list(values)


@dataclass(frozen=True)
class Summary:
    """Values over seeds: ``n``, ``mean``, sample ``std`` (None below 2) and the Student-t
    95 % interval ``ci95 = (low, high)`` (None below 2; accuracy intervals clipped to
    [0, 1]); :func:`preattn.ablate.stats.summarise`."""

    n: int | None
    mean: float | None
    std: float | None
    ci95: tuple[float, float] | None
    absent: frozenset[str] = field(default=_NONE, repr=False, compare=False)

    KEYS = ("n", "mean", "std", "ci95")

    @classmethod
    def from_json(cls, data: Mapping[str, Any], n: int | None = None) -> Summary:
        """The summary of ``data``; ``n``: the count where ``data`` leaves it out (a
        variant's clean accuracy, whose ``n`` is the variant's)."""
        return cls(
            data.get("n", n),
            data.get("mean"),
            data.get("std"),
            _pair(data.get("ci95")),
            _absent_keys(data, cls.KEYS),
        )

    def to_json(self, *, with_n: bool = True) -> dict[str, Any]:
        """``{"n", "mean", "std", "ci95"}``; without ``n`` for a variant's clean accuracy
        (its ``n`` is the variant's)."""
        absent = self.absent if with_n else self.absent | {"n"}
        return _written(
            {"n": self.n, "mean": self.mean, "std": self.std, "ci95": _list(self.ci95)}, absent
        )


@dataclass(frozen=True)
class PairedDifference:
    """``d_s = variant_s − reference_s`` over the ``seeds`` both finished
    (:func:`preattn.ablate.stats.paired_difference`): its ``n``, ``mean``, ``std``,
    ``ci95``, each seed's ``diffs``, the two-sided paired t-test ``p`` (None below 2 pairs)
    and ``p_holm``, Holm-adjusted over every paired test of the grid."""

    n: int | None
    mean: float | None
    std: float | None
    ci95: tuple[float, float] | None
    seeds: tuple[int, ...]
    diffs: tuple[float, ...]
    p: float | None
    p_holm: float | None
    absent: frozenset[str] = field(default=_NONE, repr=False, compare=False)

    KEYS = ("n", "mean", "std", "ci95", "seeds", "diffs", "p", "p_holm")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PairedDifference:
        return cls(
            data.get("n"),
            data.get("mean"),
            data.get("std"),
            _pair(data.get("ci95")),
            tuple(data.get("seeds", ())),
            tuple(data.get("diffs", ())),
            data.get("p"),
            data.get("p_holm"),
            _absent_keys(data, cls.KEYS),
        )

    def to_json(self) -> dict[str, Any]:
        return _written(
            {
                "n": self.n,
                "mean": self.mean,
                "std": self.std,
                "ci95": _list(self.ci95),
                "seeds": list(self.seeds),
                "diffs": list(self.diffs),
                "p": self.p,
                "p_holm": self.p_holm,
            },
            self.absent,
        )

    def with_holm(self, p_holm: float | None) -> PairedDifference:
        """This difference with its Holm-adjusted p (:func:`preattn.ablate.stats.holm`)."""
        return replace(self, p_holm=p_holm, absent=self.absent - {"p_holm"})


@dataclass(frozen=True)
class Power:
    """The chance that a true zero is called equivalent (``equivalence``) and that a true
    difference of the margin is found (``detection``), at the measured spread
    (:func:`preattn.ablate.stats.power`); fractions."""

    equivalence: float
    detection: float

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Power | None:
        return None if not data else cls(data["equivalence"], data["detection"])

    def to_json(self) -> dict[str, float]:
        return {"equivalence": self.equivalence, "detection": self.detection}

    @property
    def text(self) -> str:
        """``35 % / 51 %`` (equivalence / detection)."""
        return f"{100 * self.equivalence:.0f} % / {100 * self.detection:.0f} %"


@dataclass(frozen=True)
class Verdict:
    """The decision on a primary contrast (:func:`preattn.ablate.stats.verdict`): on
    ``metric``, what the claim ``expect``\\ s of the variant (``better``/``worse``), the Holm
    p, the equivalence p ``p_tost`` against ``±margin`` (a fraction), the ``n`` seeds, their
    ``power``, the ``word`` (``supported``, ``opposite``, ``equivalent``, ``undecided``) and,
    when undecided, ``seeds_needed`` for 80 % power (None: out of reach or unknown)."""

    metric: str | None
    expect: str | None
    p_holm: float | None
    p_tost: float | None
    margin: float
    n: int
    power: Power | None
    word: str
    seeds_needed: int | None = None
    absent: frozenset[str] = field(default=_NONE, repr=False, compare=False)

    KEYS = ("metric", "expect", "p_holm", "p_tost", "margin", "n", "power", "verdict")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Verdict:
        """The report's ``verdict`` entry, or :func:`~preattn.ablate.stats.verdict`'s result
        (without ``metric`` and ``expect``)."""
        absent = _absent_keys(data, cls.KEYS)
        if "seeds_needed" not in data:
            absent |= {"seeds_needed"}
        return cls(
            data.get("metric"),
            data.get("expect"),
            data.get("p_holm"),
            data.get("p_tost"),
            data["margin"],
            data.get("n", 2),
            Power.from_json(data.get("power")),
            data["verdict"],
            data.get("seeds_needed"),
            absent,
        )

    def to_json(self) -> dict[str, Any]:
        return _written(
            {
                "metric": self.metric,
                "expect": self.expect,
                "p_holm": self.p_holm,
                "p_tost": self.p_tost,
                "margin": self.margin,
                "n": self.n,
                "power": None if self.power is None else self.power.to_json(),
                "verdict": self.word,
                "seeds_needed": self.seeds_needed,
            },
            self.absent,
        )

    @property
    def text(self) -> str:
        """The verdict in words: ``supported``, ``opposite``, ``equivalent within ±0.30
        points`` or ``undecided: about 23 seeds for 80 % power at ±0.30 points``."""
        margin = f"±{100 * self.margin:.2f} points"
        if self.word == "equivalent":
            return f"equivalent within {margin}"
        if self.word == "undecided" and self.n < 2:
            return "undecided: a paired test needs at least 2 seeds"
        if self.word == "undecided":
            n = self.seeds_needed
            need = (
                f"about {n} seeds for 80 % power at {margin}" if n else f"{margin} is out of reach"
            )
            return f"undecided: {need}"
        return self.word

    @property
    def power_text(self) -> str:
        """``35 % / 51 %`` (:attr:`Power.text`); "—" when unknown."""
        return "—" if self.power is None else self.power.text


@dataclass(frozen=True)
class SamplingError:
    """The sampling error from the fixed test set (:mod:`preattn.ablate.sampling_error`):
    ``images`` scored, ``seeds`` whose outcomes were kept, the standard error of the
    accuracy and of the paired difference to the reference (None for the reference), over
    ``paired_seeds`` (None: no pair, and no key in the JSON)."""

    images: int
    seeds: int
    accuracy_se: float
    difference_se: float | None
    paired_seeds: int | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SamplingError:
        return cls(
            data["images"],
            data["seeds"],
            data["accuracy_se"],
            data["difference_se"],
            data.get("paired_seeds"),
        )

    def to_json(self) -> dict[str, Any]:
        out = {
            "images": self.images,
            "seeds": self.seeds,
            "accuracy_se": self.accuracy_se,
            "difference_se": self.difference_se,
        }
        if self.paired_seeds is not None:
            out["paired_seeds"] = self.paired_seeds
        return out

    @property
    def difference_text(self) -> str:
        """``±0.12 (10,000 images)``, in points; "—" without a difference."""
        if self.difference_se is None:
            return "—"
        return f"±{100 * self.difference_se:.2f} ({self.images:,} images)"


@dataclass(frozen=True)
class SeedFinals:
    """One seed's own final values: test accuracy, accuracy per corrupted test set, λ and
    modulation per block (last epoch), images/s (mean over its epochs), seconds of training
    and evaluation, whether its training overlapped another run of the grid (None: its
    records cannot tell), and its validation accuracy (None: the run held no images out)."""

    test_acc: float
    test_acc_corrupt: dict[str, float]
    lam: dict[str, float]
    modulation: dict[str, float]
    images_per_s: float | None
    elapsed_s: float | None
    timing_shared: bool | None
    val_acc: float | None = None
    absent: frozenset[str] = field(default=_NONE, repr=False, compare=False)

    KEYS = (
        "test_acc",
        "test_acc_corrupt",
        "lambda",
        "modulation",
        "images_per_s",
        "elapsed_s",
        "timing_shared",
    )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SeedFinals:
        return cls(
            data.get("test_acc"),  # type: ignore[arg-type]
            dict(data.get("test_acc_corrupt", {})),
            dict(data.get("lambda", {})),
            dict(data.get("modulation", {})),
            data.get("images_per_s"),
            data.get("elapsed_s"),
            data.get("timing_shared"),
            data.get(VALIDATION),
            _absent_keys(data, cls.KEYS),
        )

    def to_json(self) -> dict[str, Any]:
        return _written(
            {
                "test_acc": self.test_acc,
                **({} if self.val_acc is None else {VALIDATION: self.val_acc}),
                "test_acc_corrupt": dict(self.test_acc_corrupt),
                "lambda": dict(self.lam),
                "modulation": dict(self.modulation),
                "images_per_s": self.images_per_s,
                "elapsed_s": self.elapsed_s,
                "timing_shared": self.timing_shared,
            },
            self.absent,
        )

    def value(self, metric: str) -> float | None:
        """The final accuracy on ``metric`` (``test_acc``, ``val_acc`` or a corruption's
        name)."""
        if metric == VALIDATION:
            return self.val_acc
        return self.test_acc if metric == TEST else self.test_acc_corrupt.get(metric)


@dataclass(frozen=True)
class CorruptResult:
    """A variant on one corrupted test set: its accuracy over seeds and the paired
    difference to the reference (None for the reference or without a common seed)."""

    test_acc: Summary
    paired_diff: PairedDifference | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CorruptResult:
        diff = data.get("paired_diff")
        return cls(
            Summary.from_json(data.get("test_acc", {})),
            None if diff is None else PairedDifference.from_json(diff),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "test_acc": self.test_acc.to_json(),
            "paired_diff": None if self.paired_diff is None else self.paired_diff.to_json(),
        }


@dataclass(frozen=True)
class TimeToTarget:
    """How fast a variant reached the grid's ``target_acc``: ``reached`` of ``of`` seeds;
    mean ``epochs``, ``seconds`` (training and evaluation) and optimiser ``steps`` over the
    seeds that reached it (None: none did, or a run recorded no steps)."""

    reached: int
    of: int
    epochs: float | None
    seconds: float | None
    steps: float | None
    absent: frozenset[str] = field(default=_NONE, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TimeToTarget:
        return cls(
            data["reached"],
            data["of"],
            data.get("epochs"),
            data.get("seconds"),
            data.get("steps"),
            _absent_keys(data, ("steps",)),
        )

    def to_json(self) -> dict[str, Any]:
        return _written(
            {
                "reached": self.reached,
                "of": self.of,
                "epochs": self.epochs,
                "seconds": self.seconds,
                "steps": self.steps,
            },
            self.absent,
        )


@dataclass(frozen=True)
class VariantResult:
    """One variant of the grid over its finished seeds.

    ``overrides``: its settings over the grid's base; ``n`` finished ``seeds`` and the
    ``missing_seeds`` (not finished); ``diverged``: seed -> message of each run whose training
    loss turned non-finite (neither finished nor missing: an outcome, left out of the
    statistics, which cover the finished seeds); ``test_acc``: final test accuracy over seeds;
    ``paired_diff``: its difference to the reference (None for the reference); ``corrupt``: the
    same per corrupted test set; ``images_per_s``: mean over seeds (each seed's mean over its
    epochs) with its ``images_per_s_range`` (min, max); ``timing_shared``: some run overlapped
    another in time (None: the records cannot tell); ``seconds``: mean final elapsed seconds;
    ``params``: parameters of its network (None: not counted); ``chance``: ``1 / classes``
    (None: unrecorded), ``near_chance``: the mean accuracy lies near it;
    ``lambda_final``/``modulation_final``: per block, mean over seeds of the last epoch's value;
    ``per_seed``: each seed's :class:`SeedFinals`; ``time_to_target`` (None without a target);
    ``test_set``: the test-set sampling error per metric; ``verdict``: the decision on the
    primary contrast (None: the claim says nothing of it); ``val_acc`` and ``val_diff``: the
    final validation accuracy and its paired difference, as ``test_acc`` and ``paired_diff``
    (None: the runs held no images out)."""

    name: str
    overrides: dict[str, Any]
    n: int
    seeds: tuple[int, ...]
    missing_seeds: tuple[int, ...]
    test_acc: Summary
    paired_diff: PairedDifference | None
    corrupt: dict[str, CorruptResult]
    images_per_s: float | None
    images_per_s_range: tuple[float, float] | None
    timing_shared: bool | None
    seconds: float | None
    params: int | None
    chance: float | None
    near_chance: bool
    lambda_final: dict[str, float]
    modulation_final: dict[str, float]
    per_seed: dict[int, SeedFinals]
    time_to_target: TimeToTarget | None
    test_set: dict[str, SamplingError]
    verdict: Verdict | None = None
    val_acc: Summary | None = None
    val_diff: PairedDifference | None = None
    diverged: dict[int, str] = field(default_factory=dict)
    absent: frozenset[str] = field(default=_NONE, repr=False, compare=False)

    KEYS = (
        "overrides",
        "n",
        "seeds",
        "missing_seeds",
        "diverged",
        "test_acc",
        "paired_diff",
        "corrupt",
        "images_per_s",
        "images_per_s_range",
        "timing_shared",
        "seconds",
        "params",
        "chance",
        "near_chance",
        "lambda_final",
        "modulation_final",
        "per_seed",
        "test_set",
    )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VariantResult:
        diff, timing, decision, val, val_diff = (
            data.get(k) for k in ("paired_diff", "time_to_target", "verdict", "val_acc", "val_diff")
        )
        return cls(
            name=data["name"],
            overrides=dict(data.get("overrides", {})),
            n=data.get("n", 0),
            seeds=tuple(data.get("seeds", ())),
            missing_seeds=tuple(data.get("missing_seeds", ())),
            test_acc=Summary.from_json(data.get("test_acc", {}), data.get("n")),
            paired_diff=None if diff is None else PairedDifference.from_json(diff),
            corrupt={k: CorruptResult.from_json(v) for k, v in data.get("corrupt", {}).items()},
            images_per_s=data.get("images_per_s"),
            images_per_s_range=_pair(data.get("images_per_s_range")),
            timing_shared=data.get("timing_shared"),
            seconds=data.get("seconds"),
            params=data.get("params"),
            chance=data.get("chance"),
            near_chance=bool(data.get("near_chance", False)),
            lambda_final=dict(data.get("lambda_final", {})),
            modulation_final=dict(data.get("modulation_final", {})),
            per_seed={int(s): SeedFinals.from_json(v) for s, v in data.get("per_seed", {}).items()},
            time_to_target=None if timing is None else TimeToTarget.from_json(timing),
            test_set={k: SamplingError.from_json(v) for k, v in data.get("test_set", {}).items()},
            verdict=None if decision is None else Verdict.from_json(decision),
            val_acc=None if val is None else Summary.from_json(val, data.get("n")),
            val_diff=None if val_diff is None else PairedDifference.from_json(val_diff),
            diverged={int(s): str(m) for s, m in data.get("diverged", {}).items()},
            absent=_absent_keys(data, cls.KEYS),
        )

    def to_json(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "overrides": self.overrides,
            "n": self.n,
            "seeds": list(self.seeds),
            "missing_seeds": list(self.missing_seeds),
            "diverged": {str(seed): message for seed, message in self.diverged.items()},
            "test_acc": self.test_acc.to_json(with_n=False),
            "paired_diff": None if self.paired_diff is None else self.paired_diff.to_json(),
        }
        if self.val_acc is not None:
            out[VALIDATION] = self.val_acc.to_json(with_n=False)
            out["val_diff"] = None if self.val_diff is None else self.val_diff.to_json()
        out |= {
            "corrupt": {name: result.to_json() for name, result in self.corrupt.items()},
            "images_per_s": self.images_per_s,
            "images_per_s_range": _list(self.images_per_s_range),
            "timing_shared": self.timing_shared,
            "seconds": self.seconds,
            "params": self.params,
            "chance": self.chance,
            "near_chance": self.near_chance,
            "lambda_final": self.lambda_final,
            "modulation_final": self.modulation_final,
            "per_seed": {str(seed): finals.to_json() for seed, finals in self.per_seed.items()},
        }
        if self.time_to_target is not None:
            out["time_to_target"] = self.time_to_target.to_json()
        out["test_set"] = {metric: error.to_json() for metric, error in self.test_set.items()}
        if self.verdict is not None:
            out["verdict"] = self.verdict.to_json()
        return _written(out, self.absent)

    def difference(self, metric: str) -> PairedDifference | None:
        """The paired difference on ``metric`` (``test_acc``, ``val_acc`` or a corruption's
        name)."""
        if metric == TEST:
            return self.paired_diff
        if metric == VALIDATION:
            return self.val_diff
        corrupt = self.corrupt.get(metric)
        return None if corrupt is None else corrupt.paired_diff


@dataclass(frozen=True)
class Primary:
    """The grid's declared primary claim: the ``metric`` the verdicts decide, the smallest
    effect of interest ``sesoi`` (a fraction) and what it ``expect``\\ s of the variants
    (``better``/``worse`` for every one, or by variant)."""

    metric: str
    sesoi: float
    expect: str | dict[str, str]

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Primary | None:
        if data is None:
            return None
        expect = data["expect"]
        return cls(
            data["metric"], data["sesoi"], expect if isinstance(expect, str) else dict(expect)
        )

    def to_json(self) -> dict[str, Any]:
        expect = self.expect if isinstance(self.expect, str) else dict(self.expect)
        return {"metric": self.metric, "sesoi": self.sesoi, "expect": expect}


# what a grid's match_cost keeps: the width closest to the target's cost, or the narrowest
# width measured at no less than 1 − tolerance times it
COST_MODES = ("matched", "at_least")


@dataclass(frozen=True)
class MatchCost:
    """What ``match_cost`` declared and measured (:mod:`preattn.ablate.match_cost`): the
    plain ``variant`` sized to cost what ``to`` costs, and the measurement's ``record`` as
    saved (width, step-time ratio and its min–max over repeats, seconds per network)."""

    record: dict[str, Any]

    @property
    def variant(self) -> str:
        return self.record["variant"]

    @property
    def to(self) -> str:
        return self.record["to"]

    @property
    def width(self) -> float | None:
        """The plain variant's width multiplier (None: not measured yet)."""
        return self.record.get("width")

    @property
    def ratio(self) -> float:
        """Its training step's time over one of ``to``."""
        return self.record["ratio"]

    @property
    def ratio_range(self) -> tuple[float, float] | None:
        """(min, max) of the ratio over the repeats (None: older measurements)."""
        if "ratio_min" not in self.record:
            return None
        return self.record["ratio_min"], self.record["ratio_max"]

    @property
    def repeats(self) -> int | None:
        return self.record.get("repeats")

    @property
    def cost(self) -> str:
        """``matched`` (closest to ``to``'s cost) or ``at_least`` (narrowest at or above)."""
        return self.record.get("cost", "matched")

    @property
    def tolerance(self) -> float:
        """How far (relative) the kept width's cost may be from ``to``'s."""
        return self.record.get("tolerance", 0.05)

    @property
    def below(self) -> tuple[float, float] | None:
        """``(width, ratio)`` of the widest width timed below ``1 − tolerance``, narrower
        than the kept one, of an ``at_least`` search: the plain network just cheaper than
        ``to`` (None: none was timed, or the cost was ``matched``)."""
        if self.cost != "at_least" or self.width is None:
            return None
        floor = 1 - self.tolerance
        cheaper = [
            (float(w), c["ratio"])
            for w, c in self.record.get("candidates", {}).items()
            if c["ratio"] < floor and float(w) < self.width
        ]
        return max(cheaper, default=None)


@dataclass(frozen=True)
class GridReport:
    """The report of a grid's finished runs: the ``reference`` variant, the grid's
    ``seeds``, ``target_acc`` (a fraction; None: none), its ``base`` settings, the declared
    ``primary`` claim and ``match_cost`` (None: none), the number of tests in the Holm
    family ``holm_tests``, the ``corruptions`` evaluated, and one :class:`VariantResult`
    per variant in the grid's order."""

    reference: str
    seeds: tuple[int, ...]
    target_acc: float | None
    base: dict[str, Any]
    primary: Primary | None
    match_cost: MatchCost | None
    holm_tests: int
    corruptions: tuple[str, ...]
    variants: tuple[VariantResult, ...]
    absent: frozenset[str] = field(default=_NONE, repr=False, compare=False)

    KEYS = (
        "seeds",
        "target_acc",
        "base",
        "primary",
        "match_cost",
        "holm_tests",
        "corruptions",
        "variants",
    )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GridReport:
        """The report of ``report.json``'s content."""
        cost = data.get("match_cost")
        return cls(
            reference=data["reference"],
            seeds=tuple(data.get("seeds", ())),
            target_acc=data.get("target_acc"),
            base=dict(data.get("base", {})),
            primary=Primary.from_json(data.get("primary")),
            match_cost=None if cost is None else MatchCost(dict(cost)),
            holm_tests=data.get("holm_tests", 0),
            corruptions=tuple(data.get("corruptions", ())),
            variants=tuple(VariantResult.from_json(v) for v in data.get("variants", ())),
            absent=_absent_keys(data, cls.KEYS),
        )

    def to_json(self) -> dict[str, Any]:
        """``report.json``'s content."""
        return _written(
            {
                "reference": self.reference,
                "seeds": list(self.seeds),
                "target_acc": self.target_acc,
                "base": self.base,
                "primary": None if self.primary is None else self.primary.to_json(),
                "match_cost": None if self.match_cost is None else dict(self.match_cost.record),
                "holm_tests": self.holm_tests,
                "corruptions": list(self.corruptions),
                "variants": [v.to_json() for v in self.variants],
            },
            self.absent,
        )

    @property
    def decided(self) -> list[VariantResult]:
        """The variants with a verdict on the primary contrast, in the grid's order."""
        return [v for v in self.variants if v.verdict is not None]

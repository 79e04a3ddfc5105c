"""The report of a command grid (:mod:`preattn.ablate.commands`) as typed records.

A :class:`CommandReport` holds, for the grid's ``metric`` (in the units the commands write
it), one :class:`CommandRow` per variant: the metric over seeds (:class:`Summary`), each
seed's value, and for a variant other than the reference its paired difference, the
Holm-adjusted p over the grid's differences and, with a ``primary``, the verdict
(:mod:`preattn.ablate.stats`). ``report.json``, ``report.md`` and the figures
(:mod:`preattn.ablate.command_plots`) are rendered from it; ``to_json`` writes the format
``report.json`` has always had, and ``CommandReport.from_json(d).to_json() == d``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .results import PairedDifference, Summary, Verdict

__all__ = ["CommandReport", "CommandRow"]


@dataclass(frozen=True)
class CommandRow:
    """One variant: ``summary`` of its metric over seeds, ``per_seed`` values (by seed),
    and against the reference (None for the reference itself) the paired ``difference``,
    its Holm-adjusted ``p_holm`` and the ``decision`` (None without a primary claim)."""

    variant: str
    summary: Summary
    per_seed: dict[int, float]
    difference: PairedDifference | None = None
    p_holm: float | None = None
    decision: Verdict | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CommandRow:
        diff, decision = data.get("difference"), data.get("decision")
        return cls(
            data["variant"],
            Summary.from_json(data["summary"]),
            {int(seed): value for seed, value in data.get("per_seed", {}).items()},
            None if diff is None else PairedDifference.from_json(diff),
            data.get("p_holm"),
            None if decision is None else Verdict.from_json(decision),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "variant": self.variant,
            "summary": self.summary.to_json(),
            "per_seed": {str(seed): value for seed, value in self.per_seed.items()},
        }
        if self.difference is not None:
            out["difference"] = self.difference.to_json()
            out["p_holm"] = self.p_holm
        if self.decision is not None:
            out["decision"] = self.decision.to_json()
        return out

    @property
    def text(self) -> str:
        """The row of ``report.md``: variant, n, mean, interval, difference, Holm p, verdict."""
        s, d = self.summary, self.difference
        ci = "—" if s.ci95 is None else f"[{s.ci95[0]:.4g}, {s.ci95[1]:.4g}]"
        diff = "reference" if d is None else f"{d.mean:+.4g}"
        p = "—" if self.p_holm is None else f"{self.p_holm:.3g}"
        decision = "—" if self.decision is None else self.decision.word
        mean = "—" if s.mean is None else f"{s.mean:.4g}"
        return f"| {self.variant} | {s.n} | {mean} | {ci} | {diff} | {p} | {decision} |"


@dataclass(frozen=True)
class CommandReport:
    """A command grid's report: the ``metric``, the ``reference`` variant and one
    :class:`CommandRow` per variant, in the grid's order."""

    metric: str
    reference: str
    variants: tuple[CommandRow, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CommandReport:
        rows = tuple(CommandRow.from_json(row) for row in data["variants"])
        return cls(data["metric"], data["reference"], rows)

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "reference": self.reference,
            "variants": [row.to_json() for row in self.variants],
        }

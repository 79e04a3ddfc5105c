"""Paired comparison of placements: the same run for each placement and seed.

Every placement is trained with the same seeds, so each seed fixes the data order and the
augmentation for all placements and the differences between placements are paired. (The
initial weights of the layers they share are not identical: attention parameters draw
from the same random stream while the model is built.) The report gives, per placement,
the final test accuracy as mean ± sample standard deviation over seeds, and the mean
paired difference to the first placement (the reference, ``none`` by default).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import _validate
from .._io import atomic_write
from ..spec import PLACEMENTS
from .config import TrainConfig
from .loop import train
from .rundir import default_run_dir

__all__ = ["compare", "format_comparison"]


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def format_comparison(rows: Sequence[dict[str, Any]], placements: Sequence[str]) -> str:
    """Markdown table of final test accuracy per placement (mean ± std over seeds)."""
    reference = placements[0]
    by_seed = {(r["placement"], r["seed"]): r["test_acc"] for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    lines = [
        f"| placement | seeds | test accuracy (mean ± std) | min | max | "
        f"paired difference to {reference} |",
        "|---|---|---|---|---|---|",
    ]
    for placement in placements:
        accs = [by_seed[(placement, s)] for s in seeds]
        mean, std = _mean_std(accs)
        diffs = [by_seed[(placement, s)] - by_seed[(reference, s)] for s in seeds]
        d_mean, d_std = _mean_std(diffs)
        diff = "—" if placement == reference else f"{100 * d_mean:+.2f} ± {100 * d_std:.2f} pts"
        lines.append(
            f"| {placement} | {len(accs)} | {100 * mean:.2f} ± {100 * std:.2f} % | "
            f"{100 * min(accs):.2f} | {100 * max(accs):.2f} | {diff} |"
        )
    return "\n".join(lines)


def compare(
    base: TrainConfig, placements: Sequence[str], seeds: Sequence[int]
) -> list[dict[str, Any]]:
    """Train ``base`` once per (placement, seed) in ``base.out/<placement>-seed<seed>``.

    Writes ``comparison.md`` and ``comparison.json`` into ``base.out`` and returns the
    rows (placement, seed, final metrics record).
    """
    if not placements:
        raise ValueError("placements must name at least one placement, got []")
    for placement in placements:
        _validate.choice("placements", placement, PLACEMENTS)
    if not seeds:
        raise ValueError("seeds must name at least one seed, got []")
    for name, values in (("placements", placements), ("seeds", seeds)):
        repeated = sorted({v for v in values if list(values).count(v) > 1})
        if repeated:
            raise ValueError(f"{name} must not repeat, got {list(values)} ({repeated} twice)")
    root = Path(base.out) if base.out else default_run_dir("compare")
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        for placement in placements:
            config = base.replace(
                placement=placement, seed=int(seed), out=str(root / f"{placement}-seed{seed}")
            )
            record = train(config.validate())
            rows.append({"placement": placement, "seed": int(seed), **record})
    root.mkdir(parents=True, exist_ok=True)
    table = format_comparison(rows, placements)
    header = (
        f"{base.model} on {base.dataset}, {base.epochs} epochs, "
        f"attention {base.spec.attention}, λ {base.spec.lam} ({base.spec.lam_param}), "
        f"seeds {list(seeds)}\n\n"
    )
    atomic_write(root / "comparison.md", lambda p: p.write_text(header + table + "\n"))
    atomic_write(root / "comparison.json", lambda p: p.write_text(json.dumps(rows, indent=1)))
    return rows

"""Deciding a claim: Holm's adjustment, the equivalence test, the seeds that would resolve
a margin, and the verdict words, against values computed by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

from _helpers import tiny_grid, tiny_options
from preattn.ablate import Grid
from preattn.ablate.report import verdict_text
from preattn.ablate.stats import (
    equivalence_p,
    holm,
    paired_difference,
    power,
    seeds_for_power,
    seeds_to_resolve,
    verdict,
)
from preattn.train.config import ConfigError, TrainConfig


def _t2_cdf(t: float) -> float:
    """Student t with 2 degrees of freedom: F(t) = 1/2 + t / (2 sqrt(2 + t²))."""
    return 0.5 + t / (2 * math.sqrt(2 + t * t))


def test_holm_by_hand():
    # sorted: a 0.01 (x3 = 0.03), c 0.03 (x2 = 0.06), b 0.04 (x1 = 0.04 -> kept monotone 0.06)
    got = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": None})
    assert got == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06, "d": None})
    assert holm({"x": 0.7, "y": 0.9}) == {"x": 1.0, "y": 1.0}  # capped at 1


def test_holm_counts_a_test_without_its_p_in_the_declared_family_when_asked():
    # m = 4 with d counted at p = 1: a 0.01 x4 = 0.04, c 0.03 x3 = 0.09, b 0.04 x2 = 0.08 -> 0.09
    got = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": None}, count_missing=True)
    assert got == pytest.approx({"a": 0.04, "b": 0.09, "c": 0.09, "d": None})
    # whatever p d turns out to have, no other adjusted p rises above the interim one
    for p_d in (0.001, 0.02, 0.035, 0.5, 1.0):
        final = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": p_d})
        assert all(final[k] <= got[k] + 1e-12 for k in "abc")


def test_equivalence_p_is_the_larger_one_sided_p():
    diffs, margin = [0.001, 0.002, 0.003], 0.01
    se = 0.001 / math.sqrt(3)  # mean 0.002, std 0.001
    above = 1 - _t2_cdf((0.002 + margin) / se)  # H0: mean <= -margin
    below = _t2_cdf((0.002 - margin) / se)  # H0: mean >= +margin
    assert equivalence_p(diffs, margin) == pytest.approx(max(above, below), rel=1e-6)
    wide = [-0.02, 0.0, 0.03]  # spread far beyond the margin: not equivalent
    assert equivalence_p(wide, margin) > 0.05
    assert equivalence_p([0.001], margin) is None


def test_seeds_to_resolve_uses_the_t_quantile():
    # t_{0.975,16} = 2.119905, t_{0.975,17} = 2.109816 (printed tables): with s = 0.01 and
    # margin 0.005, n = 17 gives 2.1199·0.01/√17 = 0.00514 > 0.005, n = 18 gives 0.00497
    assert seeds_to_resolve(0.01, 0.005) == 18
    # (a/b)² without the quantile would say 4
    assert seeds_to_resolve(None, 0.005) is None


def _simulated_power(
    std: float, margin: float, n: int, trials: int = 40_000
) -> tuple[float, float]:
    """Monte Carlo of the two powers: TOST on differences of true mean 0, the two-sided
    paired t-test on differences of true mean ``margin``."""
    rng = np.random.default_rng(0)
    t_one, t_two = scipy_stats.t.ppf(0.95, n - 1), scipy_stats.t.ppf(0.975, n - 1)
    zero = rng.normal(0.0, std, (trials, n))
    se = zero.std(axis=1, ddof=1) / np.sqrt(n)
    mean = zero.mean(axis=1)
    equivalent = np.mean((mean - t_one * se > -margin) & (mean + t_one * se < margin))
    shifted = rng.normal(margin, std, (trials, n))
    t = shifted.mean(axis=1) / (shifted.std(axis=1, ddof=1) / np.sqrt(n))
    return float(equivalent), float(np.mean(np.abs(t) > t_two))


@pytest.mark.parametrize(("std", "n"), [(0.004, 9), (0.002, 5), (0.003, 3)])
def test_power_matches_a_simulation_of_the_two_tests(std, n):
    got = power(std, 0.003, n)
    equivalent, detected = _simulated_power(std, 0.003, n)
    assert got["equivalence"] == pytest.approx(equivalent, abs=0.01)
    assert got["detection"] == pytest.approx(detected, abs=0.01)


def test_seeds_for_power_are_more_than_the_seeds_that_place_the_interval():
    # at the n whose interval half-width equals the margin, a true zero is called equivalent
    # less than half the time; 80 % power needs more seeds
    placed = seeds_to_resolve(0.004, 0.003)
    assert power(0.004, 0.003, placed)["equivalence"] < 0.5
    n = seeds_for_power(0.004, 0.003)
    assert n > placed
    assert min(power(0.004, 0.003, n).values()) >= 0.8 > min(power(0.004, 0.003, n - 1).values())
    assert power(0.0, 0.003, 3) == {"equivalence": 1.0, "detection": 1.0}
    assert power(None, 0.003, 5) is None and seeds_for_power(None, 0.003) is None


def test_detection_power_stays_right_where_scipys_noncentral_t_gives_nan():
    """A spread far below the margin makes the noncentrality large, where scipy's
    ``nct.cdf`` (the lower tail) returns nan: here n = 2, nc = √2 · 0.75 / 0.0957 ≈ 11.1.
    The power is still the simulated one, so 2 seeds (about 62 % detection) are not taken
    for enough; and for a small spread the power rises with n towards 1, never nan."""
    got = power(0.0957, 0.75, 2)
    _, detected = _simulated_power(0.0957, 0.75, 2)
    assert got["detection"] == pytest.approx(detected, abs=0.01)
    assert got["detection"] < 0.8 <= got["equivalence"]
    assert seeds_for_power(0.0957, 0.75) == 3
    values = [power(0.148, 0.75, n)["detection"] for n in range(2, 30)]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert np.all(np.diff(values) >= -1e-12)
    assert values[2] > 0.9999 and values[-1] == pytest.approx(1.0, abs=1e-12)  # n = 4, 29


def _diff(values: list[float]) -> dict:
    return paired_difference(dict(enumerate(values)), dict.fromkeys(range(len(values)), 0.0))


def test_verdict_words():
    margin = 0.003
    up = _diff([0.010, 0.012, 0.011, 0.013, 0.009])
    assert verdict(up, 0.001, margin)["verdict"] == "supported"
    assert verdict(up, 0.001, margin, expect="worse")["verdict"] == "opposite"
    flat = _diff([0.0002, -0.0001, 0.0001, 0.0, -0.0002])
    decided = verdict(flat, 0.9, margin)
    assert decided["verdict"] == "equivalent" and decided["p_tost"] < 0.05
    assert verdict_text(decided) == "equivalent within ±0.30 points"
    noisy = _diff([0.02, -0.03, 0.01, -0.01, 0.04])
    decided = verdict(noisy, 0.8, margin)
    assert decided["verdict"] == "undecided"
    assert decided["seeds_needed"] == seeds_for_power(noisy["std"], margin)
    n = decided["seeds_needed"]
    assert verdict_text(decided) == f"undecided: about {n} seeds for 80 % power at ±0.30 points"
    assert decided["power"] == power(noisy["std"], margin, 5)
    one = verdict(_diff([0.01]), None, margin)
    assert verdict_text(one) == "undecided: a paired test needs at least 2 seeds"
    with pytest.raises(ValueError, match="expect must be 'better' or 'worse'"):
        verdict(up, 0.001, margin, expect="same")


BASE = tiny_options()
PRIMARY = {"metric": "test_acc", "sesoi": 0.003, "expect": "better"}


def _grid(**changes) -> Grid:
    """The tiny grid with a declared primary contrast (``primary=None`` for none)."""
    return tiny_grid(**{"primary": PRIMARY, "reference": "none", **changes})


@pytest.mark.parametrize(
    "primary,message",
    [
        ({"sesoi": 0}, r"sesoi \(the smallest effect of interest"),
        ({"sesoi": 0.3, "expect": "bigger"}, "expect must be 'better', 'worse' or a mapping"),
        ({"sesoi": 0.3, "expect": {"none": "better"}}, "other than the reference 'none'"),
        ({"sesoi": 0.3, "metric": "noise:0.2"}, r"primary metric 'noise:0.2' .*\['none', 'pre'\]"),
        ({"sesoi": 0.3, "alpha": 0.1}, r"unknown keys \['alpha'\]"),
    ],
)
def test_a_bad_primary_declaration_is_refused(primary, message):
    with pytest.raises(ConfigError, match=message):
        _grid(primary=primary)


def test_the_report_gives_holm_p_and_the_verdict_of_the_primary_metric(tmp_path):
    from preattn.ablate import ablate
    from preattn.ablate.report import format_report

    grid = _grid(
        base={**BASE, "eval_corrupt": ["noise:0.2"]},
        variants={"none": {"placement": "none"}, "pre": {}, "branch": {"placement": "branch"}},
        primary={"metric": "noise:0.2", "sesoi": 0.003, "expect": {"pre": "better"}},
    )
    report = ablate(grid, tmp_path, plots=False, progress=lambda line: None)
    assert report["holm_tests"] == 4  # pre and branch, clean and noisy
    by_name = {v["name"]: v for v in report["variants"]}
    ps = {}
    for n in ("pre", "branch"):
        ps[f"{n}|clean"] = by_name[n]["paired_diff"]
        ps[f"{n}|noise:0.2"] = by_name[n]["corrupt"]["noise:0.2"]["paired_diff"]
    expected = holm({k: d["p"] for k, d in ps.items()})
    assert {k: d["p_holm"] for k, d in ps.items()} == pytest.approx(expected)
    decided = by_name["pre"]["verdict"]
    assert decided["metric"] == "noise:0.2" and decided["expect"] == "better"
    assert decided["p_holm"] == ps["pre|noise:0.2"]["p_holm"]
    assert "verdict" not in by_name["branch"]  # the claim says nothing of it
    text = format_report(report)
    assert "Verdicts on the primary metric `noise:0.2`" in text
    assert verdict_text(decided) in text
    # the sampling error of the fixed test set, from each image's kept outcome
    error = by_name["pre"]["test_set"]["noise:0.2"]
    assert error["images"] == BASE["limit_test"] and error["seeds"] == 2
    assert f"±{100 * error['difference_se']:.2f} ({BASE['limit_test']} images)" in text
    assert by_name["none"]["test_set"]["test_acc"]["difference_se"] is None  # the reference
    # the two jobs ran one after the other: no run's time overlapped another's
    assert all(v["timing_shared"] is False for v in report["variants"])


def test_a_grid_on_held_out_images_decides_on_the_validation_accuracy(tmp_path):
    """A recipe chosen on held-out training images (``holdout``): the report gives each
    variant's final validation accuracy over seeds and its paired difference (from the
    runs' own last records), the verdict decides on it, and its tests join the Holm family
    with the test set's."""
    from preattn.ablate import ablate
    from preattn.ablate.report import format_report

    grid = _grid(
        base={**BASE, "holdout": 8, "epochs": 2},
        primary={"metric": "val_acc", "sesoi": 0.003, "expect": "better"},
    )
    report = ablate(grid, tmp_path, plots=False, progress=lambda line: None)
    assert report["holm_tests"] == 2  # pre against none, on the test and validation sets
    by_name = {v["name"]: v for v in report["variants"]}
    finals = {}
    for name in ("none", "pre"):
        finals[name] = {}
        for seed in (0, 1):
            metrics = tmp_path / grid.config(name, seed, tmp_path).out / "metrics.jsonl"
            rows = [json.loads(line) for line in metrics.read_text().splitlines()]
            finals[name][seed] = rows[-1]["val_acc"]
            assert by_name[name]["per_seed"][str(seed)]["val_acc"] == rows[-1]["val_acc"]
        mean = np.mean(list(finals[name].values()))
        assert by_name[name]["val_acc"]["mean"] == pytest.approx(mean)
    diffs = [finals["pre"][s] - finals["none"][s] for s in (0, 1)]
    pre = by_name["pre"]
    assert pre["val_diff"]["diffs"] == pytest.approx(diffs)
    expected = holm({"test": pre["paired_diff"]["p"], "val": pre["val_diff"]["p"]})
    assert pre["val_diff"]["p_holm"] == pytest.approx(expected["val"])
    assert pre["verdict"]["metric"] == "val_acc"
    assert pre["verdict"]["p_holm"] == pre["val_diff"]["p_holm"]
    assert by_name["none"]["val_diff"] is None  # the reference
    text = format_report(report)
    assert "Validation accuracy (%), and the paired difference to `none`:" in text
    assert "Per seed: validation accuracy (%)" in text
    # a grid without holdout writes no validation keys (older reports read back unchanged)
    plain = ablate(_grid(), tmp_path / "plain", plots=False, progress=lambda line: None)
    assert all("val_acc" not in v and "val_diff" not in v for v in plain["variants"])
    assert "Validation accuracy" not in format_report(plain)


def test_a_primary_on_the_validation_accuracy_needs_runs_that_hold_images_out():
    with pytest.raises(ConfigError, match=r"primary metric 'val_acc' .*\['none', 'pre'\]"):
        _grid(primary={"metric": "val_acc", "sesoi": 0.003, "expect": "better"})
    _grid(
        base={**BASE, "holdout": 8},
        primary={"metric": "val_acc", "sesoi": 0.003, "expect": "better"},
    )


# --- match_cost -----------------------------------------------------------------------------


def test_match_cost_sizes_the_plain_variant_and_keeps_its_width(tmp_path, monkeypatch, capsys):
    """Step time modelled as t(w) = 1 + 2·w² and pre costing t(1.2): the plain variant gets
    width 1.2, measured once, saved, and reused by later calls and the report."""
    import importlib

    from preattn.ablate import ablate

    match_cost = importlib.import_module("preattn.ablate.match_cost")
    calls, threads = [], []

    def fake(steps, repeats):
        calls.append(sorted(steps))
        threads.append(torch.get_num_threads())
        out = {}
        for name, step in steps.items():
            width = 1.2 if name.startswith("target") else float(step.split("@")[1])
            out[name] = [1 + 2 * width**2] * repeats  # seconds per repeat
        return out

    monkeypatch.setattr(match_cost, "_interleaved", fake)
    monkeypatch.setattr(match_cost, "_step", lambda config: f"step@{config.width}")
    grid = _grid(
        variants={"none": {"placement": "none"}, "pre": {}, "wide": {"placement": "none"}},
        match_cost={"variant": "wide", "to": "pre"},
        seeds=[0],
        primary=None,
    )
    with pytest.raises(ConfigError, match="has not been measured"):
        ablate(grid, tmp_path, report_only=True)
    ablate(grid, tmp_path, dry_run=True, progress=print)
    assert "would measure match_cost" in capsys.readouterr().out and not calls
    report = ablate(grid, tmp_path, plots=False)
    assert len(calls) == 2  # the fit and its check
    saved = json.loads((tmp_path / "match_cost.json").read_text())["wide"]
    assert saved["width"] == pytest.approx(1.2) and saved["ratio"] == pytest.approx(1.0)
    assert report["match_cost"]["width"] == pytest.approx(1.2)
    assert TrainConfig.from_yaml(tmp_path / "wide" / "seed0" / "config.yaml").width == 1.2
    ablate(grid, tmp_path, plots=False)  # finished and measured: nothing more
    assert len(calls) == 2
    # timed with the threads each run will have: the cores shared among --jobs runs
    execute = importlib.import_module("preattn.ablate.execute")
    before = torch.get_num_threads()
    match_cost.matched_widths(grid, tmp_path / "again", measure=True, threads=1)
    assert threads[-2:] == [1, 1] and torch.get_num_threads() == before
    saved = json.loads((tmp_path / "again" / "match_cost.json").read_text())["wide"]
    assert saved["threads"] == 1
    assert threads[0] == execute.run_threads("local", 1)  # one job: every core
    with pytest.raises(ConfigError, match="match_cost must name two different variants"):
        _grid(match_cost={"variant": "pre", "to": "pre"})
    with pytest.raises(ConfigError, match="sets width itself"):
        _grid(variants={"none": {}, "w": {"width": 2.0}}, match_cost={"variant": "w", "to": "none"})


def test_match_cost_keeps_the_measured_closest_width_when_cost_is_not_smooth(monkeypatch):
    """t(w) = 1 + 2·w² except off the eighths grid, where kernels are 30 % slower; pre costs
    t(1.2) = 3.88: the fit says 1.2 (timed 5.04, ratio 1.30), 1.125 times 3.53 (0.91) and
    1.25 times 4.125 (1.06): 1.25 is kept, with its measured ratio."""
    import importlib

    match_cost = importlib.import_module("preattn.ablate.match_cost")

    def cost(width):
        on_grid = abs(width * 8 - round(width * 8)) < 1e-9
        return (1 + 2 * width**2) * (1.0 if on_grid else 1.3)

    def fake(steps, repeats):
        return {
            name: [(1 + 2 * 1.2**2) if name == "target" else cost(float(step.split("@")[1]))]
            * repeats
            for name, step in steps.items()
        }

    monkeypatch.setattr(match_cost, "_interleaved", fake)
    monkeypatch.setattr(match_cost, "_step", lambda config: f"step@{config.width}")
    config = TrainConfig(placement="none")
    result = match_cost.match_width(config.replace(placement="pre"), config)
    assert result["fitted"] == pytest.approx(1.2, abs=2e-3)
    assert result["width"] == 1.25
    assert result["ratio"] == pytest.approx((1 + 2 * 1.25**2) / (1 + 2 * 1.2**2))
    assert set(result["seconds"]) >= {"plain@1.125", "plain@1.25", "target (check)"}


def test_runs_that_trained_at_the_same_time_are_marked_shared():
    from preattn.ablate.collect import _shared_time

    def rows(start: float, end: float) -> list[dict]:  # two epochs spanning start..end
        return [
            {"wall_start": start, "wall_end": start + 1},
            {"wall_start": end - 1, "wall_end": end},
        ]

    runs = {
        "a": {0: rows(0, 10), 1: rows(20, 30)},
        "b": {0: rows(9, 15), 1: rows(31, 40)},
        "c": {0: [{"epoch": 1}]},  # records from before the times were kept
    }
    assert _shared_time(runs) == {
        ("a", 0): True,  # 0-10 overlaps b's 9-15
        ("a", 1): False,
        ("b", 0): True,
        ("b", 1): False,  # 31-40 starts after a's 20-30 ended
        ("c", 0): None,
    }


def test_the_per_seed_table_shows_the_primary_metric_and_marks_missing_seeds():
    from preattn.ablate.report import _per_seed_lines
    from preattn.ablate.results import GridReport

    def seed(clean, noisy):
        return {"test_acc": clean, "test_acc_corrupt": {"noise:0.2": noisy}}

    report = {
        "reference": "none",
        "primary": {"metric": "noise:0.2", "sesoi": 0.003, "expect": {"pre": "better"}},
        "variants": [
            {"name": "none", "per_seed": {"0": seed(0.9, 0.80), "1": seed(0.9, 0.81)}},
            {"name": "pre", "per_seed": {"0": seed(0.9, 0.8125)}},
        ],
    }
    lines = _per_seed_lines(GridReport.from_json(report))
    assert "under `noise:0.2`" in lines[1]
    assert lines[3:] == [
        "| seed | none | pre | Δ pre |",
        "|---|---|---|---|",
        "| 0 | 80.00 | 81.25 | +1.25 |",
        "| 1 | 81.00 | — | — |",
    ]

"""match_cost's timing: repeated until the ratio is placed within ±5 %, reported with its
spread, checked again before training; a fake clock stands in for the machine."""

from __future__ import annotations

import importlib
import json

import pytest

from _helpers import tiny_grid
from preattn.train.config import ConfigError, TrainConfig

match_cost = importlib.import_module("preattn.ablate.match_cost")


class FakeMachine:
    """A clock that only the fake steps advance: a step of width ``w`` takes
    ``cost(w)`` seconds, the target's ``target`` seconds times ``slow(call)`` for its
    ``call``-th call (warm-ups included, from 0)."""

    def __init__(self, cost, target: float, slow=lambda call: 1.0) -> None:
        self.now, self.cost, self.target, self.slow, self.calls = 0.0, cost, target, slow, 0

    def clock(self) -> float:
        return self.now

    def step(self, config: TrainConfig):
        def run() -> None:
            if config.spec.placement == "none":
                self.now += self.cost(config.width)
            else:
                self.now += self.target * self.slow(self.calls)
                self.calls += 1

        return run

    def install(self, monkeypatch) -> None:
        monkeypatch.setattr(match_cost, "_clock", self.clock)
        monkeypatch.setattr(match_cost, "_step", self.step)


def _steps(machine: FakeMachine) -> tuple:
    """The target's step and ``{1.0: the plain network's}``."""
    plain = machine.step(TrainConfig(placement="none"))
    return machine.step(TrainConfig(placement="pre")), {1.0: plain}


def test_the_median_interval_is_the_binomial_order_statistics():
    """n = 6 or 7: only (min, max) covers 95 % (1 − 2/2⁶ = 0.969); n = 10: the 2nd and 9th
    values (1 − 2·11/1024 = 0.979; the 3rd and 8th cover only 0.891)."""
    assert match_cost.median_interval([5, 1, 4, 2, 6, 3]) == (1, 6)
    assert match_cost.median_interval(list(range(7))) == (0, 6)
    assert match_cost.median_interval(list(range(10, 0, -1))) == (2, 9)


def test_timing_repeats_until_an_occasional_slow_step_no_longer_decides(monkeypatch):
    """Plain 1 s, target 1.25 s, but the target's 4th and 13th calls (one timed repeat in
    each round of 7) take 30 % longer: 7 ratios span 0.62–0.80, not within ±5 % of their
    median; 14 put both slow ones below the interval (3rd to 12th value): 0.80 exactly."""
    machine = FakeMachine(lambda w: 1.0, 1.25, slow=lambda call: 1.3 if call in (3, 12) else 1.0)
    machine.install(monkeypatch)
    summaries, times = match_cost.timed_ratios(
        machine.step(TrainConfig(placement="pre")),
        {1.0: machine.step(TrainConfig(placement="none"))},
    )
    result = summaries[1.0]
    assert result["repeats"] == 14 and len(times["target"]) == 14
    assert result["placed"] is True
    assert result["ratio"] == pytest.approx(0.8)
    assert result["ratio_interval"] == pytest.approx([0.8, 0.8])
    assert result["ratio_min"] == pytest.approx(1 / 1.625) and result["ratio_max"] == pytest.approx(
        0.8
    )


def test_timing_that_cannot_place_the_ratio_says_so(monkeypatch):
    """Every other target step 30 % slower: the interval never narrows below the two
    levels, so after 42 repeats the ratio is reported as not placed."""
    machine = FakeMachine(lambda w: 1.0, 1.0, slow=lambda call: 1.3 if call % 2 else 1.0)
    machine.install(monkeypatch)
    summaries, _ = match_cost.timed_ratios(
        machine.step(TrainConfig(placement="pre")),
        {1.0: machine.step(TrainConfig(placement="none"))},
    )
    assert summaries[1.0]["repeats"] == match_cost.MAX_REPEATS == 42
    assert summaries[1.0]["placed"] is False
    assert "min–max 0.77–1.00" in match_cost.describe(summaries[1.0])


def _grid(**cost: str):
    """``pre`` and a plain ``wide`` sized to it (``cost=...``: the declared cost)."""
    return tiny_grid(
        variants={"pre": {}, "wide": {"placement": "none"}},
        match_cost={"variant": "wide", "to": "pre", **cost},
        seeds=[0],
        reference="pre",
        primary=None,
    )


def test_a_width_that_no_longer_matches_is_refused_before_training(tmp_path, monkeypatch):
    """A saved width 1.2 (t = 1 + 2·w² = 3.88, as pre) timed again where pre now takes
    3.0 s: 1.29x, refused in one line, and ablate trains nothing; timed at 3.88 it passes."""
    from preattn.ablate import ablate

    saved = {"wide": {"width": 1.2, "ratio": 1.0, "to": "pre", "threads": 1}}
    (tmp_path / match_cost.MATCH_FILE).write_text(json.dumps(saved))
    machine = FakeMachine(lambda w: 1 + 2 * w**2, 3.0)
    machine.install(monkeypatch)
    with pytest.raises(ConfigError) as refused:
        ablate(_grid(), tmp_path, plots=False, progress=lambda line: None)
    message = str(refused.value)
    assert "\n" not in message and "wide at width 1.200 now measures 1.29x" in message
    assert "off by more than ±5%" in message
    assert not (tmp_path / "wide").exists() and not (tmp_path / "pre").exists()
    machine.target = 1 + 2 * 1.2**2
    found = match_cost.matched_widths(_grid(), tmp_path, measure=False, check=True)
    assert found["wide"]["width"] == 1.2


def test_a_fresh_width_that_matches_no_candidate_is_refused_and_not_saved(tmp_path, monkeypatch):
    """Off the eighths grid kernels are 30 % slower and pre costs t(1.2) = 3.88: the fit's
    1.2 measures 1.30x, 1.125 0.91x and 1.25 1.06x; halving the bracket (1.125, 1.2) on the
    1/128 grid finds only widths off the eighths (149/128 1.24x, 146/128 1.21x, 145/128
    1.20x) until nothing lies between: the closest, 1.25, is still off by 6 %."""

    def cost(width):
        on_grid = abs(width * 8 - round(width * 8)) < 1e-9
        return (1 + 2 * width**2) * (1.0 if on_grid else 1.3)

    machine = FakeMachine(cost, 1 + 2 * 1.2**2)
    machine.install(monkeypatch)
    with pytest.raises(ConfigError, match=r"wide at width 1.250 measured 1.06x"):
        match_cost.matched_widths(_grid(), tmp_path, measure=True, progress=lambda line: None)
    assert not (tmp_path / match_cost.MATCH_FILE).exists()


def test_the_search_steps_up_by_eighths_then_halves_the_bracket():
    """Ratios (plain / target) by width → the next width to time, by hand."""
    following = match_cost._next_width
    assert following({1.0: 0.80}, 0.05) == 1.125  # all cheaper: the next eighth
    assert following({1.0: 0.80, 1.125: 0.90}, 0.05) == 1.25
    assert following({1.0: 0.80, 1.125: 1.20}, 0.05) == 136 / 128  # midpoint, 1/128 grid
    assert following({1.0: 0.80, 33 / 32: 1.20}, 0.05) == 130 / 128
    assert following({1.0: 0.97, 1.125: 1.20}, 0.05) is None  # within ±5 %: done
    assert following({1.0: 1.10}, 0.05) is None  # width 1 already dearer: the floor
    assert following({1.0: 0.80, 129 / 128: 1.20}, 0.05) is None  # nothing in between
    assert following({4.0: 0.50}, 0.05) is None  # the widest the search times


def test_a_first_round_that_misjudges_the_target_is_corrected_by_the_search(tmp_path, monkeypatch):
    """t(w) = 1 + 2·w², pre costs t(1.2) = 3.88 s, but in the fit's round (its warm-up and
    7 repeats) pre ran at 0.7 × that, below the plain width 1 (3 s): the fit says 1.0.
    Measured again: 1.0 → 0.77x, so 1.125 (0.91x), 1.25 (1.06x), then the bracket's
    midpoint 1.1875 = 38/32: t = 3.8203, 0.985x, within ±5 %: kept and saved."""
    machine = FakeMachine(
        lambda w: 1 + 2 * w**2, 1 + 2 * 1.2**2, slow=lambda c: 0.7 if c < 8 else 1
    )
    machine.install(monkeypatch)
    found = match_cost.matched_widths(_grid(), tmp_path, measure=True, progress=lambda line: None)
    result = found["wide"]
    assert result["fitted"] == 1.0
    assert sorted(result["candidates"]) == ["1.0", "1.125", "1.1875", "1.25"]
    assert result["width"] == 1.1875
    assert result["ratio"] == pytest.approx((1 + 2 * 1.1875**2) / (1 + 2 * 1.2**2))
    assert result["candidates"]["1.25"]["ratio"] == pytest.approx(4.125 / 3.88)
    saved = json.loads((tmp_path / match_cost.MATCH_FILE).read_text())["wide"]
    assert saved["width"] == 1.1875


def _jumping(width: float) -> float:
    """Step time that jumps past width 1, as bf16 SimpleCNN's did on 34 × 34 canvases: the
    plain network at width 1 takes 0.87 s, any wider one 1.12 s plus 0.5 s per unit."""
    return 0.87 if width <= 1 else 1.12 + 0.5 * (width - 1)


def test_a_cost_that_jumps_past_the_tolerance_is_refused_when_matched(tmp_path, monkeypatch):
    """pre costs 1 s. The fit (1 s between 0.87 at width 1 and 1.37 at 1.5: b = 0.4,
    a = 0.47, w = √1.325 = 1.151) and its eighths all measure dearer (1.18–1.25x), so width 1
    is timed (0.87x), then the bracket is halved on the 1/128 grid: 136/128 (1.151x),
    132/128 (1.136x), 130/128 (1.128x), 129/128 (1.124x), and no width lies between 1 and
    129/128. Matched: the closest, 129/128, is off by 12.4 %: refused."""
    FakeMachine(_jumping, 1.0).install(monkeypatch)
    with pytest.raises(ConfigError, match=r"wide at width 1.008 measured 1.12x .* ±5%"):
        match_cost.matched_widths(_grid(), tmp_path, measure=True, progress=lambda line: None)
    assert not (tmp_path / match_cost.MATCH_FILE).exists()


def test_at_least_keeps_the_narrowest_width_at_or_above_the_cost(tmp_path, monkeypatch):
    """The same machine with ``cost: at_least``: 129/128 (1.124x) is kept and saved, the
    report names width 1 (0.87x) below it; timed again where pre has become 1.25 s
    (0.90x, below 0.95) it is refused before training, and a grid declaring the other cost
    does not reuse it."""
    from preattn.ablate.report import format_report
    from preattn.ablate.results import MatchCost

    grid = _grid(cost="at_least")
    machine = FakeMachine(_jumping, 1.0)
    machine.install(monkeypatch)
    lines: list[str] = []
    result = match_cost.matched_widths(grid, tmp_path, measure=True, progress=lines.append)["wide"]
    assert result["width"] == 129 / 128 and result["cost"] == "at_least"
    assert result["ratio"] == pytest.approx(1.12 + 0.5 / 128)
    timed = sorted(map(float, result["candidates"]))
    assert timed == [1.0, 1.0078125, 1.015625, 1.03125, 1.0625, 1.125, 1.151, 1.25]
    assert "width 1.000 measured 0.87x" in lines[-1]
    cost = MatchCost({**grid.match_cost, **result})
    assert cost.below == (1.0, pytest.approx(0.87))
    text = format_report({"reference": "pre", "seeds": [0], "match_cost": cost.record})
    assert "width 1.008, the narrowest the search timed at no less than 0.95x the cost" in text
    assert "the widest timed below it, width 1.000, measured 0.87x" in text
    machine.target = 1.25
    with pytest.raises(ConfigError, match=r"now measures 0.90x .*below 0.95x; not training a"):
        match_cost.matched_widths(grid, tmp_path, measure=False, check=True)
    with pytest.raises(ConfigError, match=r"sized with cost: at_least .* declares cost: matched"):
        match_cost.matched_widths(_grid(), tmp_path, measure=True)


def test_an_unknown_cost_mode_is_refused_in_one_line():
    with pytest.raises(ConfigError) as refused:
        tiny_grid(
            variants={"pre": {}, "wide": {"placement": "none"}},
            match_cost={"variant": "wide", "to": "pre", "cost": "cheapest"},
            seeds=[0],
            reference="pre",
        )
    message = str(refused.value)
    assert "\n" not in message
    assert "match_cost.cost must be one of matched, at_least, got 'cheapest'" in message


def test_at_least_refuses_when_no_width_up_to_the_widest_reaches_the_cost(tmp_path, monkeypatch):
    """A plain step of 0.5 s at every width against pre's 1 s: the search climbs by eighths
    to 4.0 (0.50x everywhere) and, under ``at_least``, refuses the widest as cheaper."""
    grid = _grid(cost="at_least")
    FakeMachine(lambda w: 0.5, 1.0).install(monkeypatch)
    with pytest.raises(ConfigError, match=r"wide at width 4.000 measured 0.50x .*below 0.95x"):
        match_cost.matched_widths(grid, tmp_path, measure=True, progress=lambda line: None)
    assert not (tmp_path / match_cost.MATCH_FILE).exists()


def test_a_record_from_before_the_cost_option_is_reported_as_matched(tmp_path):
    """A saved width without ``cost`` (sized by the closest ratio) keeps that meaning in the
    report of a grid that now declares ``at_least``."""
    from preattn.ablate.collect import _match_cost

    grid = _grid(cost="at_least")
    saved = {"wide": {"width": 1.097, "ratio": 1.14, "to": "pre"}}
    (tmp_path / match_cost.MATCH_FILE).write_text(json.dumps(saved))
    cost = _match_cost(grid, tmp_path)
    assert cost.cost == "matched" and cost.below is None and cost.width == 1.097

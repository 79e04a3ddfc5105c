"""The test set's own sampling error (preattn.ablate.sampling_error), by hand on outcomes
written as runs write them."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import numpy as np
import pytest

from preattn.ablate.sampling_error import sampling_error
from preattn.train.evaluate import read_test_correct, write_test_correct


class _Run:
    """What write_test_correct needs of a run directory: its path and its file record."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.recorded: list[Path] = []
        path.mkdir(parents=True, exist_ok=True)

    def record(self, *paths: Path) -> None:
        self.recorded.extend(paths)


def _runs(root: Path, name: str, outcomes: dict[int, dict[str, list[int]]]) -> dict[int, Path]:
    folders = {}
    for seed, by_metric in outcomes.items():
        run = _Run(root / name / f"seed{seed}")
        write_test_correct(run, {k: np.array(v) for k, v in by_metric.items()})
        assert run.recorded == [run.path / "test_correct.npz"]
        folders[seed] = run.path
    return folders


def test_outcomes_round_trip_under_any_metric_name(tmp_path):
    run = _Run(tmp_path / "run")
    write_test_correct(run, {"test_acc": np.array([1, 0, 1]), "noise:0.2": np.array([0, 0, 1])})
    back = read_test_correct(run.path)
    assert list(back) == ["test_acc", "noise:0.2"]
    np.testing.assert_array_equal(back["noise:0.2"], [0, 0, 1])
    assert back["test_acc"].dtype == np.uint8
    assert read_test_correct(tmp_path / "elsewhere") == {}
    write_test_correct(_Run(tmp_path / "empty"), {})
    assert not (tmp_path / "empty" / "test_correct.npz").exists()


def test_errors_are_the_spread_of_per_image_means_over_root_n(tmp_path):
    variant = _runs(
        tmp_path, "pre", {0: {"test_acc": [1, 1, 0, 1, 0]}, 1: {"test_acc": [1, 0, 0, 1, 1]}}
    )
    reference = _runs(
        tmp_path, "none", {0: {"test_acc": [1, 0, 0, 1, 0]}, 1: {"test_acc": [1, 0, 1, 1, 0]}}
    )
    got = sampling_error(variant, reference)
    # per image, averaged over the two seeds, by hand
    accuracy = [1.0, 0.5, 0.0, 1.0, 0.5]
    difference = [0.0, 0.5, -0.5, 0.0, 0.5]
    assert got["images"] == 5 and got["seeds"] == 2 and got["paired_seeds"] == 2
    assert got["accuracy_se"] == pytest.approx(statistics.stdev(accuracy) / math.sqrt(5))
    assert got["difference_se"] == pytest.approx(statistics.stdev(difference) / math.sqrt(5))
    # one seed: the binomial error sqrt(p(1 - p)/N) up to N/(N - 1)
    one = sampling_error({0: variant[0]}, None)
    p = 3 / 5
    assert one["accuracy_se"] == pytest.approx(math.sqrt(p * (1 - p) / 5 * 5 / 4))
    assert one["difference_se"] is None


def test_runs_without_outcomes_or_of_other_sizes_give_no_error(tmp_path):
    a = _runs(tmp_path, "a", {0: {"test_acc": [1, 0, 1]}, 1: {"test_acc": [1, 0]}})
    assert sampling_error(a, None) is None  # two test-set sizes: not one test set
    b = _runs(tmp_path, "b", {0: {"noise:0.1": [1, 0, 1]}})
    assert sampling_error(b, None, "test_acc") is None
    assert sampling_error(b, None, "noise:0.1")["images"] == 3

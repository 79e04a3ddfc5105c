"""The forest plot of primary contrasts, read from reports and checked through matplotlib's
objects: one row per decided variant, its interval in points, the ±margin band, the verdict."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.collections import PolyCollection

from preattn.ablate.forest import forest_figure, primary_contrasts, read_reports, write_forest


def _variant(name, mean, low, high, word, metric="test_acc", margin=0.003):
    diff = {"mean": mean, "ci95": [low, high], "std": 0.002}
    variant = {"name": name, "paired_diff": diff, "corrupt": {}}
    if metric != "test_acc":
        variant["paired_diff"] = {"mean": 0.5, "ci95": [0.4, 0.6]}  # the clean metric: unused
        variant["corrupt"] = {metric: {"paired_diff": diff}}
    variant["verdict"] = {"metric": metric, "margin": margin, "verdict": word, "n": 5}
    return variant


REPORT_A = {
    "reference": "none",
    "variants": [
        {"name": "none", "paired_diff": None, "corrupt": {}},  # the reference: not a row
        _variant("cbam", 0.012, 0.008, 0.016, "supported"),
        _variant("pre", 0.001, -0.002, 0.0035, "undecided"),
    ],
}
REPORT_B = {
    "reference": "pre",
    "variants": [_variant("pre-free", -0.0072, -0.0104, -0.0039, "opposite", "noise:0.2", 0.005)],
}


def test_rows_are_the_decided_variants_with_the_primary_metric():
    rows = primary_contrasts([("positive", REPORT_A), ("lambda", REPORT_B)])
    assert [(r.grid, r.variant, r.reference) for r in rows] == [
        ("positive", "cbam", "none"),
        ("positive", "pre", "none"),
        ("lambda", "pre-free", "pre"),
    ]
    assert rows[2].metric == "noise:0.2" and rows[2].mean == -0.0072  # the corrupted metric
    assert rows[2].label == "lambda: pre-free − pre, noise:0.2 (n=5)"


def test_the_figure_draws_each_interval_in_points_inside_its_margin_band():
    rows = primary_contrasts([("positive", REPORT_A), ("lambda", REPORT_B)])
    fig = forest_figure(rows, "three contrasts")
    ax = fig.axes[0]
    assert ax.get_title() == "three contrasts"
    # the top row is the first contrast: y = rows - 1
    lines = {tuple(line.get_ydata()): line for line in ax.get_lines() if len(line.get_xdata()) == 2}
    np.testing.assert_allclose(lines[(2, 2)].get_xdata(), [0.8, 1.6])  # cbam, points
    np.testing.assert_allclose(lines[(0, 0)].get_xdata(), [-1.04, -0.39])  # pre-free
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    widths = sorted(round(float(np.ptp(b.get_paths()[0].vertices[:, 0])), 6) for b in bands)
    assert widths == [0.6, 0.6, 1.0]  # ±0.3, ±0.3 and ±0.5 points
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[-1] == "positive: cbam − none (n=5)"
    verdicts = [t.get_text() for t in fig.axes[1].get_yticklabels()]
    assert verdicts == ["opposite", "undecided", "supported"]  # bottom to top


def test_forest_is_written_from_committed_report_files(tmp_path):
    for name, report in (("positive", REPORT_A), ("lambda", REPORT_B)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text(json.dumps(report))
    named = read_reports([tmp_path / "positive", tmp_path / "lambda" / "report.json"])
    assert [n for n, _ in named] == ["positive", "lambda"]
    assert write_forest(named, tmp_path / "forest.png")
    assert (tmp_path / "forest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    undecided_only = {"reference": "none", "variants": [{"name": "none"}]}
    assert not write_forest([("none", undecided_only)], tmp_path / "empty.png")
    assert not (tmp_path / "empty.png").exists()
    with pytest.raises(ValueError, match="at least one decided contrast"):
        forest_figure([])
    with pytest.raises(FileNotFoundError, match=r"no report\.json there"):
        read_reports([tmp_path / "missing"])


def test_a_long_title_breaks_into_lines_that_stay_inside_the_figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    rows = primary_contrasts([("positive", REPORT_A), ("lambda", REPORT_B)])
    title = "Cluttered Fashion-MNIST: the positive control, placement, λ-control, cost and warm-up"
    fig = forest_figure(rows, title)
    lines = fig.axes[0].get_title().split("\n")
    assert len(lines) == 2 and " ".join(lines) == title  # every word kept, none cut
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    box = fig.axes[0].title.get_window_extent(canvas.get_renderer())
    assert box.x0 >= 0 and box.x1 <= fig.bbox.x1 and box.y1 <= fig.bbox.y1

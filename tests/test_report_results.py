"""The grid report as typed records: every committed report.json reads into a GridReport and
writes back byte for byte; a report built from runs reads back into the same records, whose
Markdown is the one written; the records hold the paired statistics of their own seeds."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from _helpers import tiny_grid, tiny_options
from preattn.ablate.forest import primary_contrasts
from preattn.ablate.report import format_report
from preattn.ablate.results import GridReport, VariantResult
from preattn.ablate.stats import holm

EVIDENCE = Path(__file__).resolve().parents[1] / "docs" / "evidence"
COMMITTED = sorted(EVIDENCE.glob("**/report.json"))
# report.md files written by the current Markdown format (the others predate a sentence of
# it, e.g. the test-set SE column): each must come back from its report.json unchanged
CURRENT_MARKDOWN = ["clutter/control", "clutter/placement", "pilot/clutter-items"]


def _name(path: Path) -> str:
    return str(path.parent.relative_to(EVIDENCE))


def test_the_evidence_holds_reports_to_read_back():
    assert len(COMMITTED) >= 10
    assert {f"{n}/report.json" for n in CURRENT_MARKDOWN} <= {
        str(p.relative_to(EVIDENCE)) for p in COMMITTED
    }


@pytest.mark.parametrize("path", COMMITTED, ids=_name)
def test_a_committed_report_json_reads_back_and_writes_the_same_file(path):
    text = path.read_text(encoding="utf-8")
    parsed = json.loads(text)
    report = GridReport.from_json(parsed)
    assert report.to_json() == parsed
    assert json.dumps(report.to_json(), indent=1) + "\n" == text  # keys, order, numbers
    # typed, not a dict inside: each variant's numbers sit in fields
    assert all(isinstance(v, VariantResult) for v in report.variants)
    assert [v.name for v in report.variants] == [v["name"] for v in parsed["variants"]]


@pytest.mark.parametrize("name", CURRENT_MARKDOWN)
def test_a_committed_report_md_is_rendered_again_from_its_report_json(name):
    folder = EVIDENCE / name
    report = GridReport.from_json(json.loads((folder / "report.json").read_text()))
    assert format_report(report) == (folder / "report.md").read_text(encoding="utf-8")


def test_a_report_without_the_keys_of_later_versions_is_written_back_without_them():
    """A hand-made or older report: what it lacks stays absent, not null."""
    older = {
        "reference": "none",
        "variants": [
            {"name": "none", "paired_diff": None, "corrupt": {}},
            {
                "name": "pre",
                "paired_diff": {"mean": 0.01, "ci95": [0.0, 0.02], "std": 0.002},
                "corrupt": {},
                "verdict": {"metric": "test_acc", "margin": 0.003, "verdict": "supported", "n": 5},
            },
        ],
    }
    report = GridReport.from_json(older)
    assert report.to_json() == older
    pre = report.variants[1]
    assert pre.verdict is not None and pre.verdict.power is None and pre.verdict.p_holm is None
    assert pre.chance is None and not pre.near_chance and pre.test_set == {}
    (row,) = primary_contrasts([("g", report)])
    assert (row.variant, row.mean, row.low, row.high, row.n) == ("pre", 0.01, 0.0, 0.02, 5)


def test_a_report_built_from_runs_reads_back_into_the_same_records(tmp_path):
    from preattn.ablate import ablate
    from preattn.ablate.collect import build_grid_report

    grid = tiny_grid(
        base=tiny_options(eval_corrupt=["noise:0.2"]),
        variants={"none": {"placement": "none"}, "pre": {}, "branch": {"placement": "branch"}},
        primary={"metric": "noise:0.2", "sesoi": 0.003, "expect": {"pre": "better"}},
        target_acc=0.05,
    )
    out = tmp_path / "grid"
    content = ablate(grid, out, plots=False, progress=lambda line: None)
    built = build_grid_report(grid, out)
    assert built.to_json() == content
    text = (out / "report.json").read_text()
    read = GridReport.from_json(json.loads(text))
    assert read == built  # every field, nested records included
    assert json.dumps(read.to_json(), indent=1) + "\n" == text
    assert format_report(read) == (out / "report.md").read_text()

    # the records hold their own seeds' statistics: each difference is the seeds' own
    reference = {v.name: v for v in read.variants}["none"]
    family = {}
    for variant in read.variants:
        assert variant.time_to_target is not None and variant.time_to_target.of == variant.n
        for metric in ("test_acc", "noise:0.2"):
            diff = variant.difference(metric)
            if variant.name == "none":
                assert diff is None
                continue
            assert diff is not None
            expected = [
                variant.per_seed[s].value(metric) - reference.per_seed[s].value(metric)  # type: ignore[operator]
                for s in diff.seeds
            ]
            assert list(diff.diffs) == pytest.approx(expected)
            assert diff.mean == pytest.approx(statistics.fmean(expected))
            family[f"{variant.name}|{metric}"] = (diff.p, diff.p_holm)
    adjusted = holm({k: p for k, (p, _) in family.items()}, count_missing=True)
    assert {k: h for k, (_, h) in family.items()} == pytest.approx(adjusted)
    assert read.holm_tests == len(family)
    decided = [v.name for v in read.decided]
    assert decided == ["pre"]  # the claim names pre alone
    verdict = read.variants[1].verdict
    assert verdict is not None and verdict.metric == "noise:0.2" and verdict.expect == "better"
    assert verdict.p_holm == read.variants[1].difference("noise:0.2").p_holm  # type: ignore[union-attr]


def test_an_unfinished_grid_adjusts_over_its_declared_family_counting_a_missing_test_at_p_1(
    tmp_path,
):
    from preattn.ablate import ablate
    from preattn.ablate.collect import build_grid_report

    grid = tiny_grid(
        variants={"none": {"placement": "none"}, "pre": {}, "branch": {"placement": "branch"}},
        primary={"metric": "test_acc", "sesoi": 0.003, "expect": {"pre": "better"}},
    )
    out = tmp_path / "grid"
    ablate(grid, out, variants=["none", "pre"], plots=False, progress=lambda line: None)
    interim = build_grid_report(grid, out)
    pre = {v.name: v for v in interim.variants}["pre"]
    assert pre.paired_diff is not None and pre.paired_diff.p is not None
    # two declared tests (pre, branch against none); branch has no pair yet: p = 1
    assert interim.holm_tests == 2
    assert pre.paired_diff.p_holm == pytest.approx(min(1.0, 2 * pre.paired_diff.p))
    assert "over the grid's 2 tests, 1 not finished yet and counted at p = 1" in format_report(
        interim
    )

    ablate(grid, out, plots=False, progress=lambda line: None)
    final = build_grid_report(grid, out)
    done = {v.name: v for v in final.variants}["pre"]
    assert final.holm_tests == 2 and "not finished yet and counted" not in format_report(final)
    assert done.paired_diff is not None and done.paired_diff.p_holm is not None
    assert done.paired_diff.p_holm <= pre.paired_diff.p_holm + 1e-12

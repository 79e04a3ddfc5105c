"""``preattn ablate``: grids, statistics, resumability, executors, and the report."""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from _helpers import TINY_CONFIG, one_line_error, tiny_grid, tiny_options
from _helpers import TINY_TRAIN_FLAGS as TINY
from preattn.ablate import Grid, ablate, plan
from preattn.ablate.stats import paired_difference, summarise
from preattn.cli import main
from preattn.train.config import ConfigError
from preattn.train.rundir import RunDir, RunError

# Student-t 0.975 quantiles from a printed table (df = 1, 2, 3, 4)
T975 = {1: 12.706205, 2: 4.302653, 3: 3.182446, 4: 2.776445}

BASE = tiny_options()


_grid = tiny_grid


def _final(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])


# --- statistics ---------------------------------------------------------------------------


def test_summary_matches_the_formulas_by_hand():
    values = [0.80, 0.83, 0.86, 0.81]
    mean = sum(values) / 4
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / 3)
    half = T975[3] * std / math.sqrt(4)
    out = summarise(values)
    assert out["n"] == 4
    assert out["mean"] == pytest.approx(mean)
    assert out["std"] == pytest.approx(std)
    assert out["ci95"] == pytest.approx([mean - half, mean + half], rel=1e-6)
    assert summarise([0.5]) == {"n": 1, "mean": 0.5, "std": None, "ci95": None}


def test_accuracy_intervals_never_leave_zero_to_one():
    # two seeds far apart: the t interval (12.7 standard errors) spans far beyond [0, 1]
    values = [0.20, 0.95]
    mean, std = 0.575, math.sqrt(2 * 0.375**2)
    half = T975[1] * std / math.sqrt(2)
    assert summarise(values)["ci95"] == pytest.approx([mean - half, mean + half])
    assert summarise(values, (0.0, 1.0))["ci95"] == [0.0, 1.0]
    assert summarise([0.90, 0.92], (0.0, 1.0))["ci95"][1] == 1.0  # only the side that leaves


def test_paired_difference_matches_the_t_test_by_hand():
    # df = 2: the t distribution's CDF is 1/2 + t / (2 sqrt(2 + t^2)), so the two-sided
    # p-value of |t| is 1 - |t| / sqrt(2 + t^2)
    values = {0: 0.90, 1: 0.85, 2: 0.88, 7: 0.5}
    reference = {0: 0.87, 1: 0.84, 2: 0.84, 9: 0.1}
    diffs = [0.03, 0.01, 0.04]  # the shared seeds 0, 1, 2 only
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    t = mean / (sd / math.sqrt(3))
    out = paired_difference(values, reference)
    assert out["seeds"] == [0, 1, 2]
    assert out["mean"] == pytest.approx(mean)
    assert out["ci95"] == pytest.approx(
        [mean - T975[2] * sd / math.sqrt(3), mean + T975[2] * sd / math.sqrt(3)], rel=1e-6
    )
    assert out["p"] == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-6)
    assert paired_difference({0: 0.5}, {1: 0.5}) is None
    assert paired_difference({0: 0.5, 1: 0.6}, {0: 0.5, 1: 0.6})["p"] == 1.0
    assert paired_difference({0: 0.6, 1: 0.7}, {0: 0.5, 1: 0.6})["p"] == 0.0
    assert paired_difference({0: 0.5}, {0: 0.4})["p"] is None


# --- the grid file ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"reference": "post"}, "reference must be one of the variants"),
        ({"seeds": [0, 0]}, "seeds must not repeat"),
        ({"seeds": [-1]}, "seeds must be a list of ints >= 0"),
        ({"variants": {}}, "variants must map names"),
        ({"variants": {"a/b": {}}}, "variant names must be"),
        ({"variants": {"x": {"placement": "middle"}}}, "variant x: placement must be one of"),
        ({"variants": {"x": {"colour": 1}}}, "variant x: unknown train options ['colour']"),
        ({"base": {**BASE, "seed": 3}}, "['seed'] are set by the grid"),
        ({"target_acc": 1.5}, "target_acc must be a fraction"),
        ({"repeats": 3}, "unknown grid keys ['repeats']"),
        ({"variants": {"x": {"lr": "0.1"}}}, "lr must be float"),
    ],
)
def test_bad_grids_are_refused_naming_the_key(changes, message):
    with pytest.raises(ConfigError) as info:
        _grid(**changes)
    assert message in str(info.value)


def test_grid_yaml_round_trip_and_run_folders(tmp_path):
    path = tmp_path / "g.yaml"
    grid = _grid(target_acc=0.5)
    path.write_text(yaml.safe_dump(grid.to_dict(), sort_keys=False))
    again = Grid.from_yaml(path)
    assert again == grid
    runs = again.runs(tmp_path / "out")
    assert [(r.variant, r.seed) for r in runs] == [
        ("none", 0),
        ("pre", 0),
        ("none", 1),
        ("pre", 1),
    ]
    assert runs[1].config.out == str(tmp_path / "out" / "pre" / "seed0")
    assert runs[1].config.spec.placement == "pre" and runs[0].config.spec.placement == "none"
    assert runs[3].config.seed == 1 and runs[3].config.lr == TINY_CONFIG["lr"]
    (tmp_path / "bad.yaml").write_text("base: [1,\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: invalid YAML"):
        Grid.from_yaml(tmp_path / "bad.yaml")


# --- running and the report ---------------------------------------------------------------


def test_ablate_with_two_jobs_reports_every_run(tmp_path):
    out = tmp_path / "grid"
    lines: list[str] = []
    report = ablate(_grid(target_acc=0.01), out, jobs=2, progress=lines.append)
    assert lines[0].startswith("4 runs (2 variants x 2 seeds)")
    assert sorted(line.split("]")[0] for line in lines[1:]) == [f"[{i}/4" for i in range(1, 5)]
    acc = {
        (v, s): _final(out / v / f"seed{s}")["test_acc"] for v in ("none", "pre") for s in (0, 1)
    }
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    by_name = {v["name"]: v for v in on_disk["variants"]}
    assert on_disk["reference"] == "none"
    assert by_name["none"]["paired_diff"] is None
    pre = by_name["pre"]
    assert pre["n"] == 2 and pre["seeds"] == [0, 1]
    assert pre["test_acc"]["mean"] == pytest.approx((acc["pre", 0] + acc["pre", 1]) / 2)
    diffs = [acc["pre", s] - acc["none", s] for s in (0, 1)]
    assert pre["paired_diff"]["mean"] == pytest.approx(sum(diffs) / 2)
    assert 0 <= pre["test_acc"]["ci95"][0] <= pre["test_acc"]["mean"] <= 1
    assert (
        set(pre["lambda_final"]) == {"block1", "block2"} and by_name["none"]["lambda_final"] == {}
    )
    assert pre["params"] > by_name["none"]["params"]
    expected = {  # the mean over seeds of each run's last record
        b: sum(_final(out / "pre" / f"seed{s}")["modulation"][b] for s in (0, 1)) / 2
        for b in ("block1", "block2")
    }
    assert pre["modulation_final"] == pytest.approx(expected)
    assert by_name["none"]["modulation_final"] == {}
    assert pre["time_to_target"] == {
        "reached": 2,
        "of": 2,
        "epochs": 1.0,
        "steps": 2.0,  # 32 images in batches of 16
        "seconds": pytest.approx(
            sum(_final(out / "pre" / f"seed{s}")["elapsed_s"] for s in (0, 1)) / 2
        ),
    }
    for name in ("report.md", "accuracy.png", "lambda.png", "accuracy_vs_time.png", "grid.yaml"):
        assert (out / name).is_file(), name
    assert (out / "modulation.png").is_file()
    assert "modulation % (per block)" in (out / "report.md").read_text()
    assert "Only 2 seed(s) per variant" in (out / "report.md").read_text()
    assert "| pre | 2 |" in (out / "report.md").read_text()


def test_rerun_trains_only_what_is_new_and_extends_epochs(tmp_path):
    out = tmp_path / "grid"
    ablate(_grid(seeds=[0]), out, plots=False, progress=lambda _: None)
    first = _final(out / "pre" / "seed0")
    lines: list[str] = []
    grid = _grid(
        seeds=[0, 1],
        variants={"none": {"placement": "none"}, "pre": {}, "branch": {"placement": "branch"}},
    )
    ablate(grid, out, plots=False, progress=lines.append)
    assert (
        "6 runs (3 variants x 2 seeds)" in lines[0] and "2 finished, 0 to resume, 4 new" in lines[0]
    )
    assert _final(out / "pre" / "seed0") == first  # not retrained
    # more epochs in the base: every run resumes after its epoch 1
    longer = Grid.from_dict({**grid.to_dict(), "base": {**BASE, "epochs": 2}})
    assert {p.action for p in plan(longer, out)} == {"resume"}
    ablate(longer, out, plots=False, progress=lambda _: None)
    assert _final(out / "branch" / "seed1")["epoch"] == 2
    assert {p.action for p in plan(longer, out)} == {"done"}


def test_a_changed_base_is_an_error_naming_the_option(tmp_path):
    out = tmp_path / "grid"
    ablate(_grid(seeds=[0]), out, plots=False, progress=lambda _: None)
    changed = Grid.from_dict({**_grid(seeds=[0]).to_dict(), "base": {**BASE, "lr": 0.2}})
    with pytest.raises(
        ConfigError, match=r"another configuration than the grid's \(lr \(0.05 -> 0.2\)"
    ):
        plan(changed, out)


def _lock_released(path: Path, within: float) -> bool:
    """Whether the ``flock`` on ``path`` can be taken within ``within`` seconds."""
    import fcntl

    deadline = time.monotonic() + within
    with open(path, "a") as handle:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.1)
                continue
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            return True


PARENT = """
import concurrent.futures, multiprocessing, os, sys, time
from preattn.ablate.execute import die_with_parent

def work(path):
    with open(path, "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(120)

if __name__ == "__main__":
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        1, mp_context=context, initializer=die_with_parent, initargs=(os.getpid(),)
    ) as pool:
        pool.submit(work, sys.argv[1]).result()
"""


def test_pool_workers_end_when_the_ablate_process_is_killed(tmp_path):
    script, marker = tmp_path / "parent.py", tmp_path / "worker.pid"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script), str(marker)])
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() or not marker.read_text():
            assert time.monotonic() < deadline and parent.poll() is None
            time.sleep(0.05)
        worker = int(marker.read_text())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{worker}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        alive = Path(f"/proc/{worker}").exists()
        if alive:
            os.kill(worker, signal.SIGKILL)
        assert not alive, "the pool worker outlived its parent"
    finally:
        parent.kill()


def test_a_report_on_a_damaged_run_names_the_run_and_the_record(tmp_path, capsys):
    out = tmp_path / "grid"
    ablate(_grid(seeds=[0]), out, plots=False, progress=lambda _: None)
    metrics = out / "pre" / "seed0" / "metrics.jsonl"
    record = json.loads(metrics.read_text())
    for damage in ({"test_acc": None}, {"lambda": "broken"}, {"test_acc": "0.5"}):
        metrics.write_text(json.dumps({**record, **damage}) + "\n")
        with pytest.raises(RunError) as info:
            ablate(_grid(seeds=[0]), out, report_only=True, plots=False, progress=print)
        assert f"{metrics}: record 1" in str(info.value)
    metrics.write_text(json.dumps({k: v for k, v in record.items() if k != "test_acc"}) + "\n")
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump(_grid(seeds=[0]).to_dict()))
    capsys.readouterr()
    assert main(["ablate", str(grid), "--out", str(out), "--report-only"]) == 2
    assert f"{metrics}: record 1 has no 'test_acc'" in capsys.readouterr().err


@pytest.mark.slow  # three processes and two 4-epoch runs: ~40 s
def test_interrupted_grid_resumes_and_ends_as_an_uninterrupted_one(tmp_path):
    epochs = 4
    grid = {
        "base": {**BASE, "epochs": epochs, "limit_train": 256, "batch_size": 16},
        "variants": {"pre": {}},
        "seeds": [0],
    }
    (tmp_path / "g.yaml").write_text(yaml.safe_dump(grid))
    out = tmp_path / "cut"
    proc = subprocess.Popen(
        [sys.executable, "-m", "preattn", "ablate", str(tmp_path / "g.yaml"), "--out", str(out)],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    run = RunDir(out / "pre" / "seed0")
    deadline = time.monotonic() + 120
    while run.committed_epoch() < 1 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    # Freeze ablate and its worker where they are (an epoch takes a fraction of a second,
    # less than the worker's watchdog interval), kill ablate only, then let the worker go
    # on: it must notice that its parent is gone and stop by itself.
    os.killpg(proc.pid, signal.SIGSTOP)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with contextlib.suppress(ProcessLookupError):  # nothing left of the group to continue
        os.killpg(proc.pid, signal.SIGCONT)
    assert _lock_released(run.path / ".lock", within=10.0), "the worker outlived ablate"
    assert 1 <= run.committed_epoch() < epochs, "the run was not caught in the middle"
    lines: list[str] = []
    assert main(["ablate", str(tmp_path / "g.yaml"), "--out", str(out)]) == 0
    assert run.committed_epoch() == epochs
    whole = tmp_path / "whole"
    ablate(Grid.from_dict(grid), whole, plots=False, progress=lines.append)
    cut_rows = run.read_metrics()
    whole_rows = RunDir(whole / "pre" / "seed0").read_metrics()
    for key in ("train_loss", "test_acc", "test_loss", "lambda"):
        assert [r.get(key) for r in cut_rows] == [r.get(key) for r in whole_rows], key


def test_submitit_local_executor_runs_the_grid(tmp_path):
    import submitit  # noqa: F401  (in the dev extras: a missing one fails here, not skips)

    out = tmp_path / "grid"
    lines: list[str] = []
    report = ablate(
        _grid(seeds=[0]),
        out,
        jobs=2,
        executor="submitit-local",
        plots=False,
        progress=lines.append,
    )
    assert [v["n"] for v in report["variants"]] == [1, 1]
    assert any("pre seed 0: test acc" in line for line in lines)
    assert (out / ".submitit").is_dir()
    assert _final(out / "pre" / "seed0")["epoch"] == 1


def test_cli_dry_run_report_only_and_failures(tmp_path, capsys):
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(_grid(seeds=[0]).to_dict()))
    out = tmp_path / "out"
    assert main(["ablate", str(path), "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "would new: pre seed 0" in text and not out.exists()
    assert main(["ablate", str(path), "--out", str(out), "--report-only"]) == 0
    assert json.loads((out / "report.json").read_text())["variants"][0]["n"] == 0
    elsewhere = tmp_path / "reports" / "one"
    argv = ["ablate", str(path), "--out", str(out), "--report-only", "--report-dir", str(elsewhere)]
    assert main(argv) == 0
    assert {p.name for p in elsewhere.iterdir()} == {"grid.yaml", "report.json", "report.md"}
    assert Grid.from_yaml(elsewhere / "grid.yaml") == Grid.from_yaml(path)
    assert main(["ablate", str(path), "--out", str(out), "--jobs", "0"]) == 2
    assert "jobs must be an int >= 1" in capsys.readouterr().err
    # a run that fails is reported with its log; the others finish and count; exit 1
    grid = _grid(seeds=[0], variants={"none": {"placement": "none"}, "bad": {"batch_size": 64}})
    path.write_text(yaml.safe_dump(grid.to_dict(), sort_keys=False))
    assert main(["ablate", str(path), "--out", str(tmp_path / "fail")]) == 1
    captured = capsys.readouterr()
    assert "bad seed 0: FAILED (ValueError: batch_size=64" in captured.out
    assert "1 run(s) failed: bad seed 0" in captured.err
    report = json.loads((tmp_path / "fail" / "report.json").read_text())
    assert [(v["n"], v["missing_seeds"]) for v in report["variants"]] == [(1, []), (0, [0])]
    assert "exceeds" in (tmp_path / "fail" / "bad" / "seed0" / "train.log").read_text()


def test_a_diverged_run_is_an_outcome_the_report_lists_and_no_rerun_retries(tmp_path, capsys):
    grid = _grid(seeds=[0], variants={"none": {"placement": "none"}, "bad": {"lr": 1e30}})
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(grid.to_dict(), sort_keys=False))
    out = tmp_path / "out"
    argv = ["ablate", str(path), "--out", str(out)]
    assert main(argv) == 0
    assert "bad seed 0: DIVERGED (training loss became" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    none, bad = report["variants"]
    assert (none["n"], none["diverged"]) == (1, {})
    assert (bad["n"], bad["missing_seeds"], list(bad["diverged"])) == (0, [], ["0"])
    assert bad["diverged"]["0"].startswith("training loss became")
    text = (out / "report.md").read_text()
    assert "**Diverged: 1 run(s)**" in text and "`bad` seed 0: training loss became" in text
    assert "Not finished yet" not in text
    log = (out / "bad" / "seed0" / "train.log").read_text()
    assert main(argv) == 0  # kept as it is: nothing trains again
    assert "1 finished, 1 diverged (kept), 0 to resume, 0 new" in capsys.readouterr().out
    assert (out / "bad" / "seed0" / "train.log").read_text() == log


def test_a_run_that_diverged_after_the_grids_epochs_counts_as_finished(tmp_path):
    grid = _grid(seeds=[0])
    out = tmp_path / "out"
    ablate(grid, out, plots=False, progress=lambda line: None)
    # a longer training of the same run diverged later, after the grid's one epoch
    RunDir(out / "pre" / "seed0").mark_diverged("training loss became nan at epoch 2, batch 1")
    assert [p.action for p in plan(grid, out)] == ["done", "done"]
    report = ablate(grid, out, plots=False, report_only=True, progress=lambda line: None)
    assert [(v["n"], v["diverged"]) for v in report["variants"]] == [(1, {}), (1, {})]


def test_the_shipped_grids_are_valid():
    folder = Path(__file__).resolve().parents[1] / "experiments"
    grids = sorted(folder.rglob("*.yaml"))
    assert len(grids) >= 8
    # a recipe search declared exploratory may start with one seed; every other grid gives
    # intervals over at least three
    one_seed_searches = {"recipe/search-10-minutes.yaml"}
    for path in grids:
        grid = Grid.from_yaml(path)
        if path.relative_to(folder).as_posix() in one_seed_searches:
            assert grid.primary is None and len(grid.seeds) >= 1, path
        else:
            assert len(grid.seeds) >= 3, path


def test_grids_sharing_an_out_train_each_run_once_and_report_apart(tmp_path, capsys):
    first = tmp_path / "first.yaml"
    second = tmp_path / "second.yaml"
    first.write_text(yaml.safe_dump(_grid(seeds=[0]).to_dict(), sort_keys=False))
    other = _grid(seeds=[0], variants={"pre": {"placement": "pre"}, "skip": {"placement": "skip"}})
    second.write_text(yaml.safe_dump(other.to_dict(), sort_keys=False))
    out, reports = tmp_path / "runs", tmp_path / "reports"
    argv = ["ablate", str(first), str(second), "--out", str(out), "--report-dir", str(reports)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "3 runs (2 grids)" in text and "0 finished, 0 to resume, 3 new" in text
    assert text.count("pre seed 0: test acc") == 1  # shared by both grids, trained once
    one = json.loads((reports / "first" / "report.json").read_text())
    two = json.loads((reports / "second" / "report.json").read_text())
    assert [v["name"] for v in one["variants"]] == ["none", "pre"]
    assert [v["name"] for v in two["variants"]] == ["pre", "skip"]
    assert one["variants"][1]["test_acc"] == two["variants"][0]["test_acc"]
    # the same variant name with other options in another grid is refused
    clash = _grid(seeds=[0], variants={"pre": {"placement": "pre", "lam": None}})
    second.write_text(yaml.safe_dump(clash.to_dict(), sort_keys=False))
    argv[argv.index(str(out))] = str(tmp_path / "fresh")
    assert main(argv) == 2
    assert "different configurations (they differ in ['lam'])" in capsys.readouterr().err


def test_compare_refuses_repeated_placements_and_seeds(tmp_path, capsys):
    out = str(tmp_path / "c")
    assert main(["compare", *TINY, "--placements", "none,pre,none", "--out", out]) == 2
    assert "placements must not repeat" in one_line_error(capsys)
    assert main(["compare", *TINY, "--seeds", "1,1", "--out", out]) == 2
    assert "seeds must not repeat" in one_line_error(capsys)


def test_report_gives_the_spread_of_images_per_second_and_says_it_is_no_benchmark(tmp_path):
    out = tmp_path / "grid"
    report = ablate(_grid(seeds=[0, 1]), out, plots=False, progress=lambda _: None)
    entry = report["variants"][0]
    speeds = [
        json.loads((out / entry["name"] / f"seed{s}" / "metrics.jsonl").read_text())["images_per_s"]
        for s in (0, 1)
    ]
    assert entry["images_per_s_range"] == [min(speeds), max(speeds)]
    text = (out / "report.md").read_text()
    assert f"{entry['images_per_s']:.0f} ({min(speeds):.0f}–{max(speeds):.0f})" in text
    assert "not a benchmark" in text
    # the runs trained one after another: unmarked, and the note does not let "unmarked" read
    # as "alone on the machine", which the records cannot know
    assert entry["timing_shared"] is False
    assert f"{entry['images_per_s']:.0f} ({min(speeds):.0f}–{max(speeds):.0f}) |" in text
    assert "an unmarked speed may still have shared it with work outside the grid" in text


def test_a_variant_at_chance_is_flagged_as_having_learned_nothing(tmp_path):
    """Six synthetic classes: chance is 1/6; a variant whose final accuracies sit there is
    flagged "near chance: nothing learned" in report.json and report.md, the other not."""
    from preattn.ablate.report import write_report

    out = tmp_path / "grid"
    grid = _grid(seeds=[0, 1])
    ablate(grid, out, plots=False, progress=lambda _: None)
    finals = {"none": [0.90, 0.92], "pre": [1 / 6, 0.17]}  # set by hand: the trained ones vary
    for variant, accs in finals.items():
        for seed, acc in enumerate(accs):
            metrics = out / variant / f"seed{seed}" / "metrics.jsonl"
            rows = [json.loads(line) for line in metrics.read_text().splitlines()]
            rows[-1]["test_acc"] = acc
            metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = write_report(grid, out, plots=False)
    by_name = {v["name"]: v for v in report["variants"]}
    assert by_name["pre"]["chance"] == pytest.approx(1 / 6)
    assert by_name["pre"]["near_chance"] and not by_name["none"]["near_chance"]
    md = (out / "report.md").read_text()
    rows = {line.split(" | ")[0]: line for line in md.splitlines() if line.startswith("| ")}
    assert rows["| pre"].split(" | ")[2].endswith(" **near chance: nothing learned**")
    assert "near chance" not in rows["| none"]
    assert "chance (1 / classes = 16.7 %)" in md


def test_report_keeps_each_seeds_values_and_the_paired_statistics_recompute_from_them(tmp_path):
    from scipy import stats

    out = tmp_path / "grid"
    report = ablate(_grid(seeds=[0, 1, 2]), out, plots=False, progress=lambda _: None)
    saved = json.loads((out / "report.json").read_text())
    by_name = {v["name"]: v for v in saved["variants"]}
    for name, entry in by_name.items():
        for seed in (0, 1, 2):
            last = json.loads(
                (out / name / f"seed{seed}" / "metrics.jsonl").read_text().splitlines()[-1]
            )
            assert entry["per_seed"][str(seed)]["test_acc"] == last["test_acc"]
            assert entry["per_seed"][str(seed)]["lambda"] == last["lambda"]
    pre = [by_name["pre"]["per_seed"][str(s)]["test_acc"] for s in (0, 1, 2)]
    none = [by_name["none"]["per_seed"][str(s)]["test_acc"] for s in (0, 1, 2)]
    diff = by_name["pre"]["paired_diff"]
    assert diff["mean"] == pytest.approx(sum(p - n for p, n in zip(pre, none, strict=True)) / 3)
    if len({p - n for p, n in zip(pre, none, strict=True)}) > 1:  # a t-test is defined
        assert diff["p"] == pytest.approx(stats.ttest_rel(pre, none).pvalue)
    assert report["variants"][0]["per_seed"].keys() == {"0", "1", "2"}
    # report.md lists them: seed, none %, pre %, pre - none in points
    md = (out / "report.md").read_text().splitlines()
    assert "| seed | none | pre | Δ pre |" in md
    rows = [line for line in md if line[:4] in ("| 0 ", "| 1 ", "| 2 ")]
    assert rows == [
        f"| {s} | {100 * n:.2f} | {100 * p:.2f} | {100 * (p - n):+.2f} |"
        for s, (p, n) in enumerate(zip(pre, none, strict=True))
    ]


# --- time limit, overrides, GPUs, evaluation -----------------------------------------------


class _Clock:
    """time.time for run_task: ``start`` at the start check, then ``later``."""

    def __init__(self, start: float, later: float) -> None:
        self.values = [start]
        self.later = later

    def time(self) -> float:
        return self.values.pop(0) if self.values else self.later

    @staticmethod
    def perf_counter() -> float:
        return time.perf_counter()


def test_a_run_another_ablate_trained_since_planning_is_kept_or_resumed(tmp_path, monkeypatch):
    """Two ``ablate`` processes sharing a folder: a run planned as new that the other has
    finished by the time it starts is kept (same accuracy, nothing retrained, its log
    untouched); one the other has started is resumed, not refused."""
    execute = importlib.import_module("preattn.ablate.execute")
    grid = _grid(base={**BASE, "epochs": 2}, seeds=[0])
    planned = {p.run.variant: p for p in plan(grid, tmp_path)}
    assert {p.action for p in planned.values()} == {"new"}
    tasks = {
        v: {"config": p.run.config.to_dict(), "resume": False, "threads": None, "deadline": None}
        for v, p in planned.items()
    }
    # "the other ablate": none trained to the end, pre stopped after its first epoch
    finished = execute.run_task(dict(tasks["none"]))
    monkeypatch.setattr(execute, "time", _Clock(start=0.0, later=100.0))
    assert execute.run_task({**tasks["pre"], "deadline": 50.0})["stopped_after"] == 1
    monkeypatch.undo()
    none_dir = RunDir(planned["none"].run.config.out)
    log = (none_dir.path / "train.log").read_text()
    metrics = (none_dir.path / "metrics.jsonl").read_text()
    # this ablate now runs its plan
    kept = execute.run_task(dict(tasks["none"]))
    assert kept == {"test_acc": finished["test_acc"], "seconds": 0.0}
    assert (none_dir.path / "train.log").read_text() == log
    assert (none_dir.path / "metrics.jsonl").read_text() == metrics
    resumed = execute.run_task(dict(tasks["pre"]))
    pre_dir = RunDir(planned["pre"].run.config.out)
    assert pre_dir.committed_epoch() == 2
    assert resumed["test_acc"] == pre_dir.read_metrics()[-1]["test_acc"]
    assert [r["epoch"] for r in pre_dir.read_metrics()] == [1, 2]
    # a run trained since with another configuration is refused, naming the option
    other = {**tasks["none"], "config": {**tasks["none"]["config"], "lr": 0.5}}
    with pytest.raises(ConfigError, match=r"lr \(0\.\d+ -> 0\.5\)"):
        execute.run_task(other)


def test_a_time_limit_stops_runs_after_their_epoch_and_the_grid_resumes_them(tmp_path, monkeypatch):
    execute = importlib.import_module("preattn.ablate.execute")  # the module, not the function
    grid = _grid(base={**BASE, "epochs": 3}, seeds=[0])
    run = grid.runs(tmp_path)[0]
    task = {"config": run.config.to_dict(), "resume": False, "threads": None, "deadline": 50.0}
    monkeypatch.setattr(execute, "time", _Clock(start=0.0, later=100.0))
    assert execute.run_task(task)["stopped_after"] == 1  # started in time, stopped after 1
    assert RunDir(run.config.out).committed_epoch() == 1
    assert execute.run_task(task)["stopped_after"] is None  # the limit has passed: no start
    assert RunDir(run.config.out).committed_epoch() == 1
    monkeypatch.undo()
    report = ablate(grid, tmp_path)  # no limit: resumes it and finishes the others
    assert RunDir(run.config.out).committed_epoch() == 3
    assert {v["name"]: v["n"] for v in report["variants"]} == {"none": 1, "pre": 1}


def test_a_passed_time_limit_reports_runs_as_not_started(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="preattn")
    grid = _grid(seeds=[0])
    with pytest.raises(ValueError, match="time_limit must be a number of seconds > 0, got 0"):
        ablate(grid, tmp_path, time_limit=0)
    report = ablate(grid, tmp_path, time_limit=1e-9)
    out = caplog.text
    assert out.count("not started: time limit reached (the same command resumes it)") == 2
    assert [v["n"] for v in report["variants"]] == [0, 0]


def test_overrides_set_every_run_and_are_kept_with_the_grid(tmp_path, capsys):
    grid = _grid().with_overrides({"epochs": 2, "limit_train": 16})
    configs = [r.config for r in grid.runs(tmp_path)]
    assert {(c.epochs, c.limit_train) for c in configs} == {(2, 16)}
    assert Grid.from_dict(grid.to_dict()) == grid
    args = ["ablate", "--out", str(tmp_path / "o"), "--dry-run", "--override", "stages=[2]"]
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(_grid(seeds=[0]).to_dict()))
    assert main([*args, str(path)]) == 0
    assert main([*args, "--override", "epochs", str(path)]) == 2
    assert "--override takes KEY=VALUE, got 'epochs'" in one_line_error(capsys)


def test_each_local_worker_trains_on_its_own_gpu(monkeypatch):
    import queue

    execute = importlib.import_module("preattn.ablate.execute")
    monkeypatch.setattr(execute, "die_with_parent", lambda parent: None)
    monkeypatch.setattr(execute, "_WORKER_GPU", None)
    gpus: queue.Queue = queue.Queue()
    for index in (1, 0):
        gpus.put(index)
    execute.start_worker(os.getpid(), gpus)  # the first worker takes the first index
    assert execute._WORKER_GPU == 1
    configs = [{"device": d} for d in ("auto", "cuda", "cpu", "cuda:0")]
    moved = [execute._on_worker_gpu(c)["device"] for c in configs]
    assert moved == ["cuda:1", "cuda:1", "cpu", "cuda:0"]
    monkeypatch.setattr(execute, "_WORKER_GPU", None)
    assert execute._on_worker_gpu({"device": "auto"}) == {"device": "auto"}


def test_submitted_runs_spread_over_the_visible_gpus(monkeypatch):
    execute = importlib.import_module("preattn.ablate.execute")
    grid = _grid(
        variants={
            "a": {"device": "auto"},
            "b": {"device": "cuda"},
            "c": {"device": "cpu"},
            "d": {"device": "cuda:1"},
            "e": {"device": "auto"},
        }
    )
    pending = [execute.PlannedRun(r, "new") for r in grid.runs(Path("/tmp/x"))]
    tasks = execute._tasks(pending, 1, None, gpus=2)
    assert [t["config"]["device"] for t in tasks[:5]] == [
        "cuda:0",
        "cuda:1",
        "cpu",
        "cuda:1",
        "cuda:0",
    ]
    assert {t["config"]["device"] for t in execute._tasks(pending, 1, None)} == {
        "auto",
        "cuda",
        "cpu",
        "cuda:1",
    }


def test_grid_runs_evaluate_after_the_last_epoch_unless_told(tmp_path):
    grid = _grid(base={**BASE, "epochs": 3}, seeds=[0])
    assert {r.config.eval_every for r in grid.runs(tmp_path)} == {0}
    assert {r.config.eval_every for r in _grid(target_acc=0.5).runs(tmp_path)} == {1}
    asked = _grid(base={**BASE, "epochs": 3, "eval_every": 2}, seeds=[0])
    assert {r.config.eval_every for r in asked.runs(tmp_path)} == {2}
    by_name = {v["name"]: v for v in ablate(grid, tmp_path)["variants"]}
    for variant in ("none", "pre"):
        rows = [
            json.loads(line)
            for line in (tmp_path / variant / "seed0" / "metrics.jsonl").read_text().splitlines()
        ]
        assert ["test_acc" in r for r in rows] == [False, False, True]
        assert by_name[variant]["per_seed"]["0"]["test_acc"] == rows[-1]["test_acc"]


def test_variants_trains_those_first_and_the_rest_later(tmp_path, capsys):
    grid = _grid(seeds=[0])
    with pytest.raises(ValueError, match=r"variants must name variants of the grid\(s\) "):
        ablate(grid, tmp_path, variants=["wide"])
    report = ablate(grid, tmp_path, variants=["pre"], progress=print)
    assert "only pre now: 1 other run(s) wait" in capsys.readouterr().out
    assert {v["name"]: v["n"] for v in report["variants"]} == {"none": 0, "pre": 1}
    assert not RunDir(tmp_path / "none" / "seed0").holds_run()
    row = next(r for r in (tmp_path / "report.md").read_text().splitlines() if r[:9] == "| pre | 1")
    assert row.split(" | ")[3:5] == ["—", "—"]  # no pair yet: no difference, not "reference"
    report = ablate(grid, tmp_path)
    assert {v["name"]: v["n"] for v in report["variants"]} == {"none": 1, "pre": 1}
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(_grid(seeds=[0, 1]).to_dict()))
    args = ["ablate", "--out", str(tmp_path), "--dry-run", "--variants", "none", str(path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "would new: none seed 1" in out and "pre seed 1" not in out


def test_runs_share_the_cores_unless_told():
    execute = importlib.import_module("preattn.ablate.execute")
    cores = execute.available_cores()
    assert execute.run_threads("local", 1) == cores
    assert execute.run_threads("local", 2 * cores) == 1
    assert execute.run_threads("slurm", 4) is None
    assert execute.run_threads("slurm", 4, execute.SlurmOptions(cpus_per_task=3)) == 3

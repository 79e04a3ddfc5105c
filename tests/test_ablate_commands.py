"""ablate over a user's own command: each (variant, seed) runs a tiny script that writes its
metric; finished runs are kept, missing ones run again, a missing metric is a named error,
and the paired statistics match hand-computed values."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from _helpers import one_line_error
from preattn.ablate.commands import CommandFailed, CommandGrid, ablate_commands
from preattn.cli import main
from preattn.train.config import ConfigError

# the user's script: metric = 0.5 + 0.01·seed (+0.02 for "pre"); "quiet" writes none;
# each call appends a line to calls.txt in its folder
SCRIPT = """
import json, pathlib, sys
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
out = pathlib.Path(args["--out"])
with open(out / "calls.txt", "a") as calls:
    calls.write(args["--attention"] + "\\n")
if args["--attention"] != "quiet":
    value = 0.5 + 0.01 * int(args["--seed"]) + (0.02 if args["--attention"] == "pre" else 0.0)
    (out / "metric.json").write_text(json.dumps({"acc": value, "other": 1}))
"""


def _grid(tmp_path: Path, **changes) -> dict:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    values = {
        "command": f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} "
        "--seed {seed} --out {out} --attention {attention}",
        "variants": {"none": {"attention": "none"}, "pre": {"attention": "pre"}},
        "reference": "none",
        "seeds": [0, 1, 2],
        "metric": "acc",
        "primary": {"sesoi": 0.005, "expect": "better"},
    }
    return {**values, **changes}


def _calls(root: Path) -> dict[str, int]:
    return {
        str(p.parent.relative_to(root)): len(p.read_text().splitlines())
        for p in sorted(root.rglob("calls.txt"))
    }


def test_a_command_grid_runs_each_seed_once_and_decides_by_paired_seeds(tmp_path):
    grid = CommandGrid.from_dict(_grid(tmp_path))
    report = ablate_commands(grid, tmp_path / "out", progress=lambda _: None)
    assert _calls(tmp_path / "out") == {
        f"{v}/seed{s}": 1 for v in ("none", "pre") for s in range(3)
    }
    none, pre = report["variants"]
    assert none["summary"]["mean"] == pytest.approx(0.51)  # 0.5 + 0.01·mean(0, 1, 2)
    assert pre["difference"]["diffs"] == pytest.approx([0.02, 0.02, 0.02])
    assert pre["p_holm"] == 0.0  # the same difference on every seed
    assert pre["decision"]["verdict"] == "supported"
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["variants"][1]["per_seed"] == pytest.approx({"0": 0.52, "1": 0.53, "2": 0.54})
    assert "| pre | 3 | 0.53 |" in (tmp_path / "out" / "report.md").read_text()


def test_a_command_report_reads_back_into_its_records_and_writes_the_same_files(tmp_path):
    from preattn.ablate.command_results import CommandReport
    from preattn.ablate.commands import format_command_report

    grid = CommandGrid.from_dict(_grid(tmp_path))
    content = ablate_commands(grid, tmp_path / "out", plots=False, progress=lambda _: None)
    text = (tmp_path / "out" / "report.json").read_text()
    read = CommandReport.from_json(json.loads(text))
    assert read.to_json() == content
    assert json.dumps(read.to_json(), indent=2) + "\n" == text
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert format_command_report(read) == markdown
    none, pre = read.variants
    assert none.difference is None and none.decision is None and none.p_holm is None
    assert pre.per_seed == pytest.approx({0: 0.52, 1: 0.53, 2: 0.54})
    assert pre.decision is not None and pre.decision.word == "supported"
    # 0.50, 0.51, 0.52: mean 0.51, std 0.01, t_{0.975,2} = 4.302653 -> ±0.024841
    assert "| none | 3 | 0.51 | [0.4852, 0.5348] | reference | — | — |" in markdown
    assert "| pre | 3 | 0.53 | [0.5052, 0.5548] | +0.02 | 0 | supported |" in markdown


def test_finished_runs_are_kept_and_only_the_missing_one_runs_again(tmp_path):
    grid = CommandGrid.from_dict(_grid(tmp_path))
    ablate_commands(grid, tmp_path / "out", progress=lambda _: None)
    (tmp_path / "out" / "pre" / "seed1" / "metric.json").unlink()  # interrupted before its end
    (tmp_path / "out" / "none" / "seed2" / "metric.json").write_text('{"acc": 0.')  # mid-write
    said: list[str] = []
    report = ablate_commands(grid, tmp_path / "out", progress=said.append)
    assert said[0].startswith("  none seed 2 runs again: ") and "not a JSON object" in said[0]
    assert said[1].endswith("4 finished, 2 to run")
    calls = _calls(tmp_path / "out")
    assert calls.pop("pre/seed1") == calls.pop("none/seed2") == 2  # same folder: can resume
    assert set(calls.values()) == {1}
    assert report["variants"][1]["summary"]["n"] == 3


def test_a_run_without_its_metric_fails_naming_the_file_and_key(tmp_path):
    values = _grid(tmp_path)
    values["variants"]["quiet"] = {"attention": "quiet"}
    grid = CommandGrid.from_dict(values)
    with pytest.raises(CommandFailed, match=r"quiet seed 0: exited 0 but wrote no .*quiet/seed0/"):
        ablate_commands(grid, tmp_path / "out", progress=lambda _: None)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [row["summary"]["n"] for row in report["variants"]] == [3, 3, 0]
    broken = _grid(tmp_path, metric="loss")
    with pytest.raises(CommandFailed, match=r"metric.json: 'loss' must be a finite number"):
        ablate_commands(CommandGrid.from_dict(broken), tmp_path / "other", progress=print)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"command": "python train.py --seed {seed}"}, r"command must contain \{out\}"),
        (
            {"variants": {"none": {}}},
            r"variant none must give the command's fields \['attention'\]",
        ),
        ({"reference": "se"}, r"reference must be one of the variants \['none', 'pre'\]"),
        ({"seeds": [0, 0]}, r"seeds must not repeat, got \[0, 0\]"),
        ({"metric": ""}, r"metric must name a key"),
        ({"primary": {"sesoi": 0}}, r"primary.sesoi must be a number > 0"),
        ({"base": {}}, r"unknown command-grid keys \['base'\]"),
    ],
)
def test_a_command_grid_is_validated_before_anything_runs(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        CommandGrid.from_dict(_grid(tmp_path, **change))


def test_the_ablate_command_runs_a_command_grid(tmp_path, capsys):
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(_grid(tmp_path, seeds=[0, 1])))
    out = tmp_path / "out"
    assert main(["ablate", str(path), "--out", str(out), "--dry-run"]) == 0
    assert "would run pre seed 1" in capsys.readouterr().out and not out.exists()
    assert main(["ablate", str(path), "--out", str(out), "--jobs", "2"]) == 2
    assert "--jobs do not apply to it" in one_line_error(capsys)
    assert main(["ablate", str(path), "--out", str(out)]) == 0
    assert "| pre | 2 |" in capsys.readouterr().out
    assert (out / "report.md").is_file()


@pytest.mark.slow
def test_the_fashion_segmentation_example_writes_its_metric(tmp_path):
    """examples/fashion_segmentation/train.py, shortened: it trains, retrofits, writes JSON."""
    import subprocess

    script = Path(__file__).parents[1] / "examples" / "fashion_segmentation" / "train.py"
    argv = [sys.executable, str(script), "--seed", "0", "--out", str(tmp_path)]
    argv += ["--attention", "pre", "--steps", "2", "--batch-size", "4", "--train-items", "50"]
    subprocess.run(argv, check=True, capture_output=True)
    result = json.loads((tmp_path / "metric.json").read_text())
    assert 0.0 <= result["miou"] <= 1.0 and len(result["lambdas"]) == 15


def test_sigterm_to_ablate_ends_the_running_command_too(tmp_path):
    """No command outlives ablate: SIGTERM ends the running one, which reruns next time."""
    import os
    import signal
    import subprocess
    import time

    script = tmp_path / "sleeper.py"
    script.write_text(
        "import os, pathlib, sys, time\n"
        "pathlib.Path(sys.argv[1], 'pid').write_text(str(os.getpid()))\n"
        "time.sleep(60)\n"
    )
    values = _grid(tmp_path, seeds=[0])
    values["command"] = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} {{out}}"
    values["variants"] = {"none": {}, "pre": {}}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(values))
    out = tmp_path / "out"
    ablate = subprocess.Popen(
        [sys.executable, "-m", "preattn", "ablate", str(path), "--out", str(out)]
    )
    pid_file = out / "none" / "seed0" / "pid"
    for _ in range(600):
        if pid_file.is_file() and pid_file.read_text():
            break
        time.sleep(0.1)
    child = int(pid_file.read_text())
    ablate.send_signal(signal.SIGTERM)
    assert ablate.wait(timeout=30) != 0
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


def test_a_command_grid_draws_each_seed_joined_and_the_forest_of_its_contrast(tmp_path):
    from matplotlib.collections import PolyCollection

    from preattn.ablate.command_plots import command_contrasts, metric_figure
    from preattn.ablate.forest import forest_figure

    grid = CommandGrid.from_dict(_grid(tmp_path))
    report = ablate_commands(grid, tmp_path / "out", progress=lambda _: None)
    for name in ("metric.png", "forest.png"):
        assert (tmp_path / "out" / name).read_bytes()[:4] == b"\x89PNG"
    ax = metric_figure(report, "out").axes[0]
    joined = sorted(
        tuple(line.get_ydata()) for line in ax.get_lines() if len(line.get_xdata()) == 2
    )
    # seed s: none 0.5 + 0.01 s, pre 0.52 + 0.01 s, joined across the two variants
    np.testing.assert_allclose(joined, [(0.50, 0.52), (0.51, 0.53), (0.52, 0.54)])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["none", "pre"]
    (contrast,) = command_contrasts(report, "out")
    assert (contrast.variant, contrast.mean, contrast.verdict) == (
        "pre",
        pytest.approx(0.02),
        "supported",
    )
    forest = forest_figure([contrast], scale=1.0, unit="acc").axes[0]
    (band,) = [c for c in forest.collections if isinstance(c, PolyCollection)]
    assert float(np.ptp(band.get_paths()[0].vertices[:, 0])) == pytest.approx(0.01)  # ±sesoi
    assert forest.get_xlabel().startswith("difference, acc")

"""experiments/clutter/run.sh: every piece names a grid file and variants that grid declares,
and arguments select whole grids, in the script's order, or stop it before anything runs."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from preattn.ablate import Grid

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "clutter" / "run.sh"


def _run(*grids: str) -> subprocess.CompletedProcess[str]:
    """The script with `echo` in place of preattn: each line is one piece's ablate command."""
    env = {**os.environ, "PREATTN": "echo"}
    return subprocess.run(
        ["sh", str(SCRIPT), *grids], env=env, capture_output=True, text=True, check=False
    )


def _pieces(stdout: str) -> list[tuple[str, list[str]]]:
    """(grid file, variants) of each echoed `ablate GRID --out ... --variants A,B ...`."""
    pieces = []
    for line in stdout.splitlines():
        words = shlex.split(line)
        assert words[0] == "ablate", line
        pieces.append((words[1], words[words.index("--variants") + 1].split(",")))
    return pieces


def test_every_piece_names_variants_its_grid_declares():
    result = _run()
    assert result.returncode == 0, result.stderr
    pieces = _pieces(result.stdout)
    assert len(pieces) == 16
    for path, variants in pieces:
        grid = Grid.from_yaml(ROOT / path)
        assert set(variants) <= set(grid.variants), (path, variants)


def test_named_grids_run_alone_in_the_scripts_order():
    result = _run("mobilenet", "early")
    assert result.returncode == 0, result.stderr
    assert _pieces(result.stdout) == [
        ("experiments/clutter/early.yaml", ["pre-block2-free", "pre-block1-free"]),
        ("experiments/clutter/mobilenet.yaml", ["none", "pre-depth"]),
        ("experiments/clutter/mobilenet.yaml", ["se-dw"]),
    ]


def test_an_unknown_grid_stops_the_script_before_any_piece_runs():
    result = _run("early", "earlly")
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert "grid must be one of" in line and " early " in line and "got 'earlly'" in line

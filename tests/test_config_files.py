"""Configuration and grid files, and flags: every bad value is one line naming it; YAML
that could exhaust memory or the stack, repeat a key or hide a float as a string is
refused or read as written."""

from __future__ import annotations

import re

import pytest

from _helpers import TINY_TRAIN_FLAGS as TINY
from _helpers import one_line_error
from preattn.ablate import Grid
from preattn.cli import main
from preattn.train import TrainConfig
from preattn.train.config import ConfigError


@pytest.mark.parametrize(
    "text,message",
    [
        ('amp: "no"\n', r"amp must be one of \['off', 'bf16', 'fp16', 'auto'\], got 'no'"),
        ('lam_learnable: "false"\n', "lam_learnable must be bool, got 'false'"),
        ('lr: "0.1"\n', "lr must be float, got '0.1'"),
        ("seed: -5\n", r"seed must be an int >= 0, got -5"),
        ("lr: .nan\n", "lr must be a finite number"),
        ("momentum: 5\n", r"momentum must be in \[0, 1\), got 5"),
        ("epochs: 2\nlr: [0.1\n", r"bad.yaml:2: invalid YAML"),
    ],
)
def test_config_values_are_type_and_range_checked(tmp_path, capsys, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "r")]) == 2
    assert re.search(message, one_line_error(capsys))


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--lr", "nan"], "lr must be a finite number"),
        (["--lr", "inf"], "lr must be a finite number"),
        (["--lr", "0"], "lr must be a finite number > 0, got 0.0"),
        (["--momentum", "5"], "momentum must be in [0, 1), got 5.0"),
        (["--device", "foo"], "device must be auto, cpu, cuda, cuda:N"),
    ],
)
def test_bad_flags_give_one_line(tmp_path, capsys, flags, message):
    assert main(["train", *TINY, *flags, "--out", str(tmp_path / "r")]) == 2
    assert message in one_line_error(capsys)
    assert not (tmp_path / "r").exists()


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="lr must be a finite number"):
        main(["--debug", "train", *TINY, "--lr", "nan", "--out", str(tmp_path / "r")])
    monkeypatch.setenv("PREATTN_DEBUG", "1")
    with pytest.raises(ValueError):
        main(["train", *TINY, "--lr", "nan", "--out", str(tmp_path / "r")])


# --- YAML itself ---------------------------------------------------------------------------

ALIAS_BOMB = """base:
  a: &a [x, x, x, x, x, x, x, x, x]
  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
  d: [*c, *c, *c, *c, *c, *c, *c, *c, *c]
variants: {none: {placement: none}}
"""


def test_a_yaml_alias_bomb_is_refused_naming_the_line(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(ALIAS_BOMB)
    with pytest.raises(ConfigError, match=r"bomb.yaml:2: invalid YAML \(anchors"):
        Grid.from_yaml(path)


def test_deep_nesting_is_refused_without_recursion_error(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("base: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match=r"deep.yaml:1: invalid YAML \(nested deeper than 32"):
        Grid.from_yaml(path)


def test_a_key_given_twice_is_an_error_naming_both_lines(tmp_path, capsys):
    path = tmp_path / "twice.yaml"
    path.write_text("epochs: 1\nlr: 0.1\nepochs: 5\n")
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "r")]) == 2
    err = one_line_error(capsys)
    assert "twice.yaml:3: invalid YAML (key 'epochs' is given twice (first at line 1))" in err


@pytest.mark.parametrize("text,value", [("1e-3", 1e-3), ("5E-4", 5e-4), ("2.5e+1", 25.0)])
def test_exponent_floats_are_floats(tmp_path, text, value):
    path = tmp_path / "c.yaml"
    path.write_text(f"lr: {text}\nweight_decay: {text}\n")
    config = TrainConfig.from_yaml(path)
    assert config.lr == value and config.weight_decay == value


def test_non_utf8_config_names_the_file_and_line(tmp_path, capsys):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("epochs: 1\n# caf\xe9\n".encode("latin-1"))
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "r")]) == 2
    assert re.search(r"latin1.yaml:2: not UTF-8 text \(byte 0xe9\)", one_line_error(capsys))


@pytest.mark.parametrize(
    "name,message",
    [
        ("report.md", "is the name of a report file"),
        ("grid.yaml", "is the name of a report file"),
        ("pre\n", "variant names must be"),
        ("../up", "variant names must be"),
        ("x" * 101, "variant names must be"),
    ],
)
def test_variant_names_that_collide_or_escape_are_refused(name, message):
    with pytest.raises(ConfigError, match=message):
        Grid.from_dict({"variants": {name: {"placement": "none"}}})


def test_variant_names_differing_only_in_case_are_refused():
    with pytest.raises(ConfigError, match="differ only in case"):
        Grid.from_dict({"variants": {"pre": {}, "PRE": {"placement": "none"}}})


def test_jobs_zero_writes_nothing(tmp_path, capsys):
    grid = tmp_path / "g.yaml"
    grid.write_text("variants: {none: {placement: none}}\n")
    out = tmp_path / "out"
    assert main(["ablate", str(grid), "--out", str(out), "--jobs", "0"]) == 2
    assert "jobs must be an int >= 1, got 0" in one_line_error(capsys)
    assert not out.exists()

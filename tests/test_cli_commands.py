"""The commands are thin: one module per command with its parser beside its ``run``; what a
command computes (the demo's recipe, a run's image batch) is reachable from Python."""

from __future__ import annotations

import argparse
import fnmatch
import importlib
import re
from pathlib import Path

import pytest
import torch

from _helpers import TINY_CONFIG
from preattn.cli import COMMANDS, build_parser, main
from preattn.train import TrainConfig, load_recipe, recipe_path, train
from preattn.train.recipes import RECIPES

ROOT = Path(__file__).resolve().parents[1]

# the commands of `preattn --help` (docs/cli.md), and the module of each
COMMAND_MODULES = {
    "train": "train",
    "compare": "compare",
    "ablate": "ablate",
    "eval": "evaluate",
    "demo": "demo",
    "summary": "summary",
    "viz": "viz",
    "predict": "predict",
    "check": "check",
    "export": "export",
}

# what `preattn demo` trained before its recipe was a file, written out here: the recipe
# must keep training exactly this
DEMO = TrainConfig(
    dataset="fashion-mnist",
    epochs=3,
    limit_train=8_000,
    batch_size=128,
    lr=0.05,
    warmup_epochs=0.2,
    amp="auto",
    channels_last=True,
    device_data=True,
    seed=0,
)
DEMO_SYNTHETIC = TrainConfig(
    dataset="synthetic",
    image_size=20,
    limit_train=4800,
    limit_test=1200,
    epochs=4,
    batch_size=64,
    lr=0.05,
    warmup_epochs=0.25,
    seed=0,
)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_is_a_module_with_its_parser_and_its_run():
    assert set(_subcommands(build_parser())) == set(COMMAND_MODULES)
    for command, name in COMMAND_MODULES.items():
        module = importlib.import_module(f"preattn.cli.{name}")
        assert module in COMMANDS
        parser = argparse.ArgumentParser()
        sub = parser.add_subparsers(dest="command")
        built = module.add_parser(sub)
        assert _subcommands(parser) == {command: built}
        assert built.get_default("func") is module.run


def test_a_command_runs_the_run_of_its_module(monkeypatch):
    import preattn.cli.export as export

    seen = []
    monkeypatch.setattr(export, "run", lambda args: seen.append(args.onnx) or 7)
    assert main(["export", "--checkpoint", "r", "--onnx", "m.onnx"]) == 7
    assert seen == ["m.onnx"]


def test_the_shipped_recipes_are_what_the_demo_trained():
    assert load_recipe("demo").to_dict() == DEMO.to_dict()
    assert load_recipe("demo-synthetic").to_dict() == DEMO_SYNTHETIC.to_dict()
    names = r"\['demo', 'demo-synthetic', 'fashion-mnist-10min'\]"
    with pytest.raises(ValueError, match=rf"recipe must be one of {names}"):
        load_recipe("tiny")


def _trained_configs(monkeypatch) -> list[TrainConfig]:
    """Make training record the config it is given, and stop there."""
    import preattn.train.loop as loop

    configs: list[TrainConfig] = []

    def record_config(config, **_):
        configs.append(config)
        raise KeyboardInterrupt  # nothing is trained: only the config is compared

    monkeypatch.setattr(loop, "train", record_config)
    return configs


def test_demo_and_train_with_the_recipe_file_train_the_same_run(tmp_path, monkeypatch, capsys):
    import preattn.cli.demo as demo

    configs = _trained_configs(monkeypatch)
    data, out = str(tmp_path / "fm"), str(tmp_path / "run")
    # Fashion-MNIST "found" in data: the demo takes its recipe
    monkeypatch.setattr(demo, "find_idx_files", lambda *a: {"train_images": tmp_path / "x"})
    assert main(["demo", "--data-dir", data, "--out", out]) == 130
    said = capsys.readouterr().out  # the recipe, as the demo announces it
    assert "8,000 images x 3 epochs, lr 0.05 with a 0.2-epoch warm-up" in said
    recipe = str(recipe_path("demo"))
    assert main(["train", "--config", recipe, "--data-dir", data, "--out", out]) == 130
    expected = DEMO.replace(data_dir=data, out=out).to_dict()
    assert [c.to_dict() for c in configs] == [expected, expected]


def test_config_names_a_shipped_recipe_where_no_file_of_that_name_exists(tmp_path, monkeypatch):
    configs = _trained_configs(monkeypatch)
    out = str(tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--config", "demo-synthetic", "--out", out]) == 130
    assert configs[-1].to_dict() == DEMO_SYNTHETIC.replace(out=out).to_dict()
    # a file of that name in the working folder is read instead
    (tmp_path / "demo-synthetic").write_text("dataset: synthetic\nepochs: 1\n")
    assert main(["train", "--config", "demo-synthetic", "--out", out]) == 130
    assert configs[-1].epochs == 1 != DEMO_SYNTHETIC.epochs


def test_demo_without_fashion_mnist_trains_the_synthetic_recipe(tmp_path, monkeypatch):
    configs = _trained_configs(monkeypatch)
    out = str(tmp_path / "run")
    assert main(["demo", "--data-dir", str(tmp_path / "none"), "--out", out]) == 130
    synthetic = str(recipe_path("demo-synthetic"))
    assert main(["train", "--config", synthetic, "--out", out]) == 130
    expected = DEMO_SYNTHETIC.replace(out=out).to_dict()
    assert [c.to_dict() for c in configs] == [expected, expected]


def test_the_demo_help_names_the_recipe_file(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert str(recipe_path("demo")) in " ".join(capsys.readouterr().out.split())


def test_the_recipes_are_package_data_of_the_wheel():
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[tool.setuptools.package-data]\n", 1)[1].split("\n[", 1)[0]
    line = next(x for x in section.splitlines() if x.startswith("preattn = "))
    globs = re.findall(r'"([^"]+)"', line)
    package = ROOT / "src" / "preattn"
    for name in RECIPES:
        path = recipe_path(name).relative_to(package).as_posix()
        assert any(fnmatch.fnmatch(path, glob) for glob in globs), (path, globs)


def test_the_ten_minute_grid_times_the_shipped_ten_minute_recipe():
    """experiments/recipe/ten-minutes.yaml measures the recipe's accuracy and time: its
    ``pre`` runs are the recipe but for the seed, the per-epoch scoring the figure needs and
    the precision it names (bf16, what ``amp: auto`` picks on the machine it ran on), and
    where it writes (its run folder, no figures)."""
    from preattn.ablate import Grid

    grid = Grid.from_yaml(ROOT / "experiments/recipe/ten-minutes.yaml")
    recipe = load_recipe("fashion-mnist-10min").to_dict()
    timed = grid.config("pre", 1, Path("runs")).to_dict()
    differ = {k for k in recipe if recipe[k] != timed[k]}
    assert differ == {"seed", "eval_every", "amp", "out", "plots"}
    assert (recipe["amp"], timed["amp"]) == ("auto", "bf16")
    assert recipe["test_flip"] and recipe["placement"] == "pre" and recipe["eval_every"] == 0


def test_a_runs_image_batch_is_the_same_on_every_call_and_leaves_the_random_state(tmp_path):
    from preattn.viz import run_batch

    run = tmp_path / "r"
    train(TrainConfig(**TINY_CONFIG, epochs=1, out=str(run)))
    torch.manual_seed(123)
    state = torch.get_rng_state()
    loaded, first = run_batch(run, "train", 5)
    assert torch.equal(torch.get_rng_state(), state)
    _, again = run_batch(run, "train", 5)
    assert torch.equal(first.images, again.images) and first.labels == again.labels
    assert first.images.shape == (5, loaded.in_chans, 8, 8)
    assert tuple(first.classes) == loaded.classes and len(first.labels) == 5
    with pytest.raises(ValueError, match="split must be 'test' or 'train', got 'val'"):
        run_batch(run, "val", 5)

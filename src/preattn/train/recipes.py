"""Training recipes shipped with preattn: YAML config files in the package's ``recipes/``
folder, each a :class:`~preattn.train.TrainConfig` in its flat form.

- ``demo``: what ``preattn demo`` trains (the specification's SimpleCNN on 8,000
  Fashion-MNIST images for 3 epochs);
- ``demo-synthetic``: the demo without Fashion-MNIST (the generated shapes task);
- ``fashion-mnist-10min``: SimpleCNN on all of Fashion-MNIST in about ten minutes of a
  2-core CPU (3 epochs, lr 0.2, label smoothing 0.1, test-time flips; chosen on held-out
  training images).

``preattn train --config NAME`` (or the file, :func:`recipe_path`) trains a recipe from the
command line;
:func:`load_recipe` reads one for a Python caller.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .config import TrainConfig

__all__ = ["RECIPES", "load_recipe", "recipe_path"]

RECIPES = ("demo", "demo-synthetic", "fashion-mnist-10min")


def recipe_path(name: str) -> Path:
    """The file of the recipe ``name`` (one of :data:`RECIPES`), inside the installed
    package."""
    if name not in RECIPES:
        raise ValueError(f"recipe must be one of {list(RECIPES)}, got {name!r}")
    return Path(str(resources.files("preattn") / "recipes" / f"{name}.yaml"))


def load_recipe(name: str) -> TrainConfig:
    """The :class:`TrainConfig` of the recipe ``name``, validated (options it does not set
    keep their defaults; ``out`` is None: a new run directory)."""
    return TrainConfig.from_yaml(recipe_path(name)).validate()

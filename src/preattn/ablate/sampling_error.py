"""The sampling error that comes from the one fixed test set.

The seeds' interval of a paired difference (:mod:`preattn.ablate.stats`) measures how
training varies; every run is scored on the same N test images, so it says nothing of how
far the accuracy on *those* images lies from the accuracy on the population they were drawn
from. Each run keeps its images' outcomes at its last epoch (``test_correct.npz``:
``c_{s,i} ∈ {0, 1}`` for seed ``s`` and image ``i``), from which, over the ``k`` seeds both
variant ``v`` and reference ``r`` finished::

    a_i = Σ_s c^v_{s,i} / k                      (image i's accuracy, averaged over seeds)
    d_i = Σ_s (c^v_{s,i} − c^r_{s,i}) / k        (its paired difference)
    SE(accuracy)   = sd_i(a_i) / √N
    SE(difference) = sd_i(d_i) / √N

``sd`` with N − 1 degrees of freedom. For one seed ``SE(accuracy)`` is the binomial
``sqrt(p(1 − p)/N)`` up to the N/(N − 1) factor; pairing on the same images makes
``SE(difference)`` far smaller than two independent accuracies' errors whenever the two
networks get mostly the same images right.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..train.evaluate import read_test_correct

__all__ = ["sampling_error"]


def _outcomes(folders: Mapping[int, Path], metric: str, seeds: list[int]) -> dict[int, np.ndarray]:
    out = {}
    for seed in seeds:
        arrays = read_test_correct(folders[seed])
        if metric in arrays:
            out[seed] = arrays[metric].astype(np.float64)
    return out


def sampling_error(
    variant: Mapping[int, Path],
    reference: Mapping[int, Path] | None,
    metric: str = "test_acc",
) -> dict[str, Any] | None:
    """``{"images", "seeds", "accuracy_se", "difference_se"}`` (fractions) for the run folders
    of ``variant`` and ``reference`` by seed (``reference`` None: the reference itself, no
    difference); None when no finished run kept its outcomes on ``metric``, or the runs
    scored different numbers of images."""
    seeds = sorted(variant)
    own = _outcomes(variant, metric, seeds)
    if not own or len({len(v) for v in own.values()}) != 1:
        return None
    images = len(next(iter(own.values())))
    if images < 2:
        return None
    accuracy = np.mean(np.stack(list(own.values())), axis=0)
    out: dict[str, Any] = {
        "images": images,
        "seeds": len(own),
        "accuracy_se": float(np.std(accuracy, ddof=1) / math.sqrt(images)),
        "difference_se": None,
    }
    if reference is not None:
        theirs = _outcomes(reference, metric, sorted(set(reference) & set(own)))
        paired = [s for s in sorted(theirs) if len(theirs[s]) == images]
        if paired:
            diff = np.mean(np.stack([own[s] - theirs[s] for s in paired]), axis=0)
            out["difference_se"] = float(np.std(diff, ddof=1) / math.sqrt(images))
            out["paired_seeds"] = len(paired)
    return out

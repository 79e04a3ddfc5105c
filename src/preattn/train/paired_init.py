"""Paired initialisation: for a seed, every variant of a network starts its shared layers
from the same weights.

A grid compares variants that differ only in their attention (``none``, ``pre``,
``branch``, SE or CBAM, with or without λ). If their weights were drawn from one random
stream in construction order, every attention module would shift the draws of all layers
built after it, and ``pre`` and ``none`` of one seed would start from different networks.

:func:`initialise_paired` draws two streams instead:

* the **shared layers** (every tensor whose name and shape the plain network has: stem,
  convolutions, BatchNorm, skips, head) come from the plain network (``placement="none"``,
  the same model, width and options otherwise) built under ``torch.manual_seed(seed)``;
* everything else (the attention modules and λ) keeps its values from building the
  network under a generator of its own, seeded from ``seed`` and :data:`ATTENTION_STREAM`,
  so it follows the network's own initialisation, and its draws never move the shared
  layers'.

``none`` of seed ``s`` is then exactly the plain network of seed ``s``, and every other
variant of ``s`` equals it in every layer they share.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["ATTENTION_STREAM", "initialise_paired"]

# offset of the attention stream's seed from the run's seed (any fixed number works)
ATTENTION_STREAM = 0x5EED_A77E


def initialise_paired(
    build: Callable[[], nn.Module], build_plain: Callable[[], nn.Module], seed: int
) -> nn.Module:
    """The network ``build()`` makes, initialised as the module docstring says;
    ``build_plain()`` makes the same network without attention. The global random state is
    left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + ATTENTION_STREAM)
        model = build()
        torch.manual_seed(seed)
        plain = build_plain()
    own = model.state_dict()
    shared = {
        name: value
        for name, value in plain.state_dict().items()
        if name in own and own[name].shape == value.shape
    }
    model.load_state_dict(shared, strict=False)
    return model

"""Loading weights saved from the reference classes of the specification (docs/pattern3.md).

The specification's reference code defines ``CBAM``, ``Pattern3_PreResidualCBAM``,
``Pattern3_PreResidualCBAM_Controlled`` and ``SimpleCNN_With_Pattern3``. Their state dicts
map key by key onto the library's modules:

=====================================  =======================================
reference                              library
=====================================  =======================================
``CBAM(C)``                            ``CBAM(C)``
``Pattern3_PreResidualCBAM(i, o, s)``  ``ResidualBlock(i, o, s, lam=None)``
``..._Controlled(i, o, s, lam_init)``  ``ResidualBlock(i, o, s, lam=lam_init)``
``SimpleCNN_With_Pattern3(n, lam)``    ``models.SimpleCNN(n, lam=lam)``
=====================================  =======================================

Renamed pieces: ``ca.mlp.0 -> channel.fc1``, ``ca.mlp.2 -> channel.fc2``,
``sa.conv -> spatial.conv``, ``attn -> attention``, ``F -> transform``,
``lam_logit -> mix.logit``, ``p3_1 -> block1``, ``p3_2 -> block2``, ``head.2 -> fc``.
The math is identical (the library runs the shared MLP once on the stacked descriptors and
uses ``amax`` where the reference uses ``torch.max``), so a strict load reproduces the
reference module's outputs.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

__all__ = ["convert_seed_state_dict"]

_RENAMES: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("ca", "mlp", "0"), ("channel", "fc1")),
    (("ca", "mlp", "2"), ("channel", "fc2")),
    (("sa", "conv"), ("spatial", "conv")),
    (("attn",), ("attention",)),
    (("F",), ("transform",)),
    (("lam_logit",), ("mix", "logit")),
    (("p3_1",), ("block1",)),
    (("p3_2",), ("block2",)),
    (("head", "2"), ("fc",)),
)
_TOP_LEVEL = {
    "ca",
    "sa",
    "attn",
    "F",
    "skip",
    "lam_logit",
    "stem",
    "conv1",
    "conv2",
    "p3_1",
    "p3_2",
    "head",
}


def _rename(key: str) -> str:
    parts = key.split(".")
    out: list[str] = []
    i = 0
    while i < len(parts):
        for old, new in _RENAMES:
            if tuple(parts[i : i + len(old)]) == old:
                out.extend(new)
                i += len(old)
                break
        else:
            out.append(parts[i])
            i += 1
    return ".".join(out)


def convert_seed_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a state dict of one of the reference classes to the library's names.

    Args:
        state_dict: ``module.state_dict()`` of a reference ``CBAM``, ``Pattern3_*`` block or
            ``SimpleCNN_With_Pattern3`` (an optional ``module.`` prefix from DataParallel
            is removed).

    Returns:
        A new dict for ``load_state_dict(..., strict=True)`` on the matching library module
        (see the table in this module's docstring). Tensors are shared, not copied.
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
    converted: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        head = key.split(".", 1)[0]
        if head not in _TOP_LEVEL:
            raise ValueError(
                f"state_dict key {key!r} does not belong to a reference class; expected keys "
                f"starting with one of {sorted(_TOP_LEVEL)}"
            )
        converted[_rename(key)] = value
    return converted

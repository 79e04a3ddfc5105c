"""Where modules sit in a model: through the usual wrappers, at every place they are held.

``model.named_modules()`` lists a module held at two places (``m.layer1[1] = m.layer1[0]``)
under its first name only, and a wrapped model's names start with the wrapper's attribute
(``module.`` for ``nn.DataParallel``, ``_orig_mod.`` for ``torch.compile``). The functions
here give the model under the wrappers and every ``(name, module)`` pair, shared ones
included, so a conversion can act at each place a block sits.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["places", "strip_wrapper_prefix", "unwrap"]


def _is_compiled(model: nn.Module) -> bool:
    return type(model).__name__ == "OptimizedModule" and hasattr(model, "_orig_mod")


def unwrap(model: nn.Module, purpose: str) -> nn.Module:
    """The model under ``nn.DataParallel`` and ``torch.compile`` wrappers (any nesting).

    ``DistributedDataParallel`` is refused: it fixed the list of parameters it averages
    across processes when it was built, so parameters added inside it afterwards would train
    apart on each process. ``purpose`` says what is done (``"retrofit"``), for the message.
    """
    while True:
        if isinstance(model, DistributedDataParallel):
            raise ValueError(
                f"{purpose} cannot change a model inside DistributedDataParallel: DDP fixed "
                "the parameters it synchronises when it was built, and the new ones would "
                f"train apart on each process; call {purpose} on the model first, then wrap "
                "it (DistributedDataParallel(retrofit(model), ...))"
            )
        if isinstance(model, nn.DataParallel):
            model = model.module
        elif _is_compiled(model):
            model = model._orig_mod
        else:
            return model


def strip_wrapper_prefix(names: Iterable[str], wrapped: nn.Module) -> list[str]:
    """``names`` relative to the unwrapped model: the ``module.``/``_orig_mod.`` prefixes of
    the wrappers around ``wrapped`` removed, so names copied from either view work."""
    prefixes: list[str] = []
    while isinstance(wrapped, nn.DataParallel | DistributedDataParallel) or _is_compiled(wrapped):
        attr = "module" if hasattr(wrapped, "module") and not _is_compiled(wrapped) else "_orig_mod"
        prefixes.append(attr)
        wrapped = getattr(wrapped, attr)
    out = []
    for name in names:
        for attr in prefixes:
            if name == attr:
                name = ""
            elif name.startswith(attr + "."):
                name = name[len(attr) + 1 :]
        out.append(name)
    return out


def places(model: nn.Module) -> dict[int, list[str]]:
    """Every name under which each module of ``model`` is held, keyed by ``id(module)``, in
    the order of ``model.named_modules()`` (a shared module has several names)."""
    found: dict[int, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        found.setdefault(id(module), []).append(name)
    return found

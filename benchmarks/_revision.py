"""The attention code of another git revision, in this process: before/after timings
that share one machine state (interleaved), not two runs at two moments of its load.

:func:`attention_at` loads ``src/preattn/lean_autograd.py`` and ``src/preattn/attention.py``
as they were at ``revision`` (``git show``) as private modules of the installed package;
:func:`use_revision` switches every attention module of a network to that revision's
classes of the same name (their parameters and buffers are the same, only the code
differs) for a ``with`` block. Only what those two files compute changes; blocks, λ and
the rest of the network are today's.
"""

from __future__ import annotations

import contextlib
import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from torch import nn

import preattn
import preattn.attention

_ROOT = Path(__file__).resolve().parents[1]


def _source(revision: str, path: str) -> str:
    return subprocess.run(
        ["git", "show", f"{revision}:{path}"], cwd=_ROOT, check=True, capture_output=True, text=True
    ).stdout


def _load(name: str, source: str) -> ModuleType:
    spec = importlib.util.spec_from_loader(f"preattn.{name}", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "preattn"
    sys.modules[spec.name] = module
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    return module


def attention_at(revision: str) -> ModuleType:
    """``preattn.attention`` as of git ``revision`` (with that revision's lean autograd)."""
    tag = "".join(ch if ch.isalnum() else "_" for ch in revision)
    lean = _load(f"_lean_autograd_{tag}", _source(revision, "src/preattn/lean_autograd.py"))
    source = _source(revision, "src/preattn/attention.py").replace(
        "from .lean_autograd import", f"from .{lean.__name__.rpartition('.')[2]} import"
    )
    return _load(f"_attention_{tag}", source)


@contextlib.contextmanager
def use_revision(model: nn.Module, attention: ModuleType | None) -> Iterator[None]:
    """Run ``model``'s attention modules with ``attention``'s classes (None: today's)."""
    if attention is None:
        yield
        return
    swapped = []
    for module in model.modules():
        cls = type(module)
        if cls.__module__ == preattn.attention.__name__ and hasattr(attention, cls.__name__):
            swapped.append((module, cls))
            module.__class__ = getattr(attention, cls.__name__)
    try:
        yield
    finally:
        for module, cls in swapped:
            module.__class__ = cls

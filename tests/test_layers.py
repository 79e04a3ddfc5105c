"""Imports point down: the modules of preattn form no cycle, whether an import sits at the
top of a file, inside a function, or under ``TYPE_CHECKING``.

Package ``__init__`` files only gather their modules' names for users, so they are left
out of the graph (no module of the package imports its own package's ``__init__``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import preattn

ROOT = Path(preattn.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:])
    return (ROOT / relative).with_suffix(".py").is_file() or (ROOT / relative).is_dir()


def _imports(path: Path) -> set[str]:
    """The preattn modules ``path`` imports (``from .x import y``: module ``x.y`` when that
    is a module, else ``x``)."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path.parent)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if not target.startswith("preattn"):
                continue
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.add(candidate if _is_module(candidate) else target)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("preattn")}
    return found


def _graph() -> dict[str, set[str]]:
    files = [p for p in ROOT.rglob("*.py") if p.name != "__init__.py"]
    names = {_module_name(p) for p in files}
    return {_module_name(p): _imports(p) & names for p in files}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_module_graph_has_no_cycle():
    graph = _graph()
    assert "preattn.train.loop" in graph["preattn.ablate.execute"]  # the graph sees imports
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_lower_layers_never_import_higher_ones():
    graph = _graph()
    layers = [  # each may import only from its own layer and the ones above it in this list
        {
            "_validate",
            "_options",
            "_yaml",
            "_io",
            "_files",
            "_failures",
            "_console",
            "_figure",
            "_module_places",
            "lean_autograd",
            "mixing",
            "attention",
        },
        {"spec", "inverted_residual", "blocks", "models", "data", "compat", "block_layouts"},
        {"modulation", "retrofit", "deploy", "maps", "summary", "check"},
        {"train"},
        {"predict", "viz", "timm", "ablate"},
        {"cli", "__main__"},
    ]

    def layer(module: str) -> int:
        top = module.split(".")[1]
        return next(i for i, names in enumerate(layers) if top in names)

    upward = sorted(
        f"{a} -> {b}" for a, targets in graph.items() for b in targets if layer(b) > layer(a)
    )
    assert upward == []

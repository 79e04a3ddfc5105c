"""Reading the YAML files a user gives (configs, grids): plain data, checked as it is read.

:func:`load_yaml` reads with a :class:`yaml.SafeLoader` that also

- refuses anchors and aliases (``&a`` / ``*a``): a few lines of aliases can expand into
  gigabytes once a config is copied or written out (the "billion laughs");
- refuses nesting deeper than :data:`MAX_DEPTH` (PyYAML recurses per level);
- refuses a key given twice in one mapping (PyYAML silently keeps the last one);
- reads ``1e-3`` and ``5E4`` as floats, as YAML 1.2 does (YAML 1.1, PyYAML's default,
  wants a dot: ``1.0e-3``);
- reads regular files only (a FIFO would block forever);
- names the file (and the line) in every error: not found, not UTF-8, too large, syntax.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from ._files import irregular_kind

__all__ = ["MAX_DEPTH", "MAX_FILE_BYTES", "YamlError", "load_yaml", "parse_yaml_value"]

MAX_DEPTH = 32
MAX_FILE_BYTES = 1 << 20


class YamlError(ValueError):
    """A YAML file or value cannot be used; the message names the file and line."""


def _where(node: yaml.Node | yaml.Event | Any) -> str:
    mark = getattr(node, "start_mark", None)
    return f"line {mark.line + 1}" if mark is not None else "?"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader without aliases, with a depth limit, unique keys and YAML 1.2 floats."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.constructor.ConstructorError(
                None, None, "aliases (*name) are not supported", event.start_mark
            )
        if self.check_event(yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent):
            event = self.peek_event()
            if getattr(event, "anchor", None) is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, "anchors (&name) are not supported", event.start_mark
                )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.constructor.ConstructorError(
                    None, None, f"nested deeper than {MAX_DEPTH} levels", mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue  # the base class reports an unhashable key itself
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} is given twice (first at {_where(seen[key])})",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


# YAML 1.2 floats: an exponent without a dot (1e-3) is a float, not a string
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$""",
        re.X,
    ),
    list("-+0123456789"),
)


def _message(exc: yaml.YAMLError) -> tuple[str, str]:
    """(where, problem) of a YAML error: where the broken construct starts, else where the
    parser noticed it."""
    mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
    where = f":{mark.line + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return where, problem


def parse_yaml_value(text: str) -> Any:
    """One YAML value given on the command line (``reduction=8``), read as files are."""
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise YamlError(f"invalid YAML value {text!r} ({_message(exc)[1]})") from None


def load_yaml(path: str | Path, what: str) -> Any:
    """The YAML document in ``path`` (see the module docstring); ``what`` names the kind of
    file in errors ("config file", "grid file")."""
    path = Path(path)
    kind = irregular_kind(path)
    if kind is not None:  # a FIFO would block in open() forever
        raise YamlError(f"{what} {path} is {kind}, not a regular file")
    if not path.is_file():
        raise YamlError(f"{what} {path} not found")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise YamlError(f"{path}: {size} bytes, more than a {what} may hold ({MAX_FILE_BYTES})")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise YamlError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); is it a {what}?"
        ) from None
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        where, problem = _message(exc)
        raise YamlError(f"{path}{where}: invalid YAML ({problem})") from None
    except RecursionError:
        raise YamlError(f"{path}: nested too deeply") from None

"""Declared options: a dataclass field carries its help text, command-line parser and
choices, so the command line, YAML files and type checks are generated from one place.

``option(default, help, parse=..., choices=...)`` declares a field;
:func:`check_type` checks a value against the field's annotation (``int``, ``float``,
``bool``, ``str``, ``list[int]``, ``list[str]``, ``X | None``), so a YAML ``"0.1"`` for a float or a
``"false"`` for a bool is refused with the field's name instead of being misread.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, field, fields
from typing import Any, ClassVar

from . import _validate
from ._yaml import parse_yaml_value

__all__ = [
    "OptionSection",
    "check_type",
    "option",
    "parse_bool",
    "parse_int_list",
    "parse_kwargs",
    "parse_optional_float",
    "parse_optional_int",
    "parse_optional_str",
]


def option(
    default: Any,
    help: str,
    parse: Callable[[str], Any] = str,
    *,
    choices: Any = None,
    const: Any = None,
    resumable: bool = False,
) -> Any:
    """A dataclass field with ``help``, ``parse`` (command line) and ``choices`` metadata;
    ``const`` is the value of its flag given alone (``--amp``), where it may be;
    ``resumable``: a resumed run may change it (how it runs, not what it computes)."""
    metadata = {
        "help": help,
        "parse": parse,
        "choices": choices,
        "const": const,
        "resumable": resumable,
    }
    if isinstance(default, dict | list):
        factory = dict if isinstance(default, dict) else list
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def parse_bool(text: str) -> bool:
    """``true/false``, ``yes/no``, ``on/off``, ``1/0`` (any case) -> bool."""
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true/false, got {text!r}")


def _is_none(text: str) -> bool:
    return str(text).strip().lower() in ("none", "off", "null")


def parse_optional_float(text: str) -> float | None:
    """``none``/``off`` -> None, else a float."""
    return None if _is_none(text) else float(text)


def parse_optional_str(text: str) -> str | None:
    """``none``/``off``/``null`` -> None, else the text."""
    return None if _is_none(text) else str(text)


def parse_optional_int(text: str) -> int | None:
    """``none``/``off`` -> None, else an int."""
    return None if _is_none(text) else int(text)


def parse_int_list(text: str) -> list[int] | None:
    """``"2,3,4"`` (or ``"2 3 4"``) -> ``[2, 3, 4]``; ``none``/``default`` -> None."""
    if _is_none(text) or text.strip().lower() == "default":
        return None
    try:
        return [int(s) for s in text.replace(",", " ").split()]
    except ValueError:
        raise ValueError(f"expected numbers like 2,3,4, got {text!r}") from None


def parse_kwargs(text: str) -> dict[str, Any]:
    """``"reduction=8,spatial_kernel=3"`` -> ``{"reduction": 8, "spatial_kernel": 3}``.

    Values are read as YAML scalars (ints, floats, booleans, strings); a JSON object is
    accepted too.
    """
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError(f"expected key=value pairs or a JSON object, got {text!r}")
        return value
    out: dict[str, Any] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected key=value pairs such as reduction=8, got {text!r}")
        out[key.strip()] = parse_yaml_value(value.strip())
    return out


def _matches(value: Any, kind: str) -> bool:
    if kind == "None":
        return value is None
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind in ("list[int]", "list[str]"):
        item = kind[5:-1]
        return isinstance(value, list | tuple) and all(_matches(v, item) for v in value)
    if kind.startswith(("dict", "Mapping")):
        return isinstance(value, Mapping)
    return True  # a type this checker does not know (a callable, say): left to the owner


def check_type(name: str, value: Any, annotation: str) -> Any:
    """Return ``value`` if it matches the field annotation ``annotation``, else raise
    ``TypeError`` naming ``name``, the expected type and the value given. Floats must be
    finite."""
    kinds = [k.strip() for k in annotation.split("|")]
    if not any(_matches(value, k) for k in kinds):
        expected = " or ".join(kinds)
        raise TypeError(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return value


def field_help(f: Field) -> str:
    return str(f.metadata.get("help", ""))


class OptionSection:
    """A dataclass whose fields are declared options (:func:`option`), read and written in
    the flat form that YAML files and flags use: one key per field.

    A section of a configuration (the data, the network, the optimisation ...) inherits
    this: :meth:`from_flat` takes its own keys of a flat mapping, :meth:`to_flat` writes them
    back, :meth:`check_fields` checks every field against its annotation and choices.
    ``RESUMABLE``: every option of the section may change when a run is resumed.
    """

    RESUMABLE: ClassVar[bool] = False

    @classmethod
    def option_fields(cls) -> list[Field]:
        """The fields that are options, in declaration order."""
        return list(fields(cls))  # type: ignore[arg-type]

    @classmethod
    def keys(cls) -> list[str]:
        """The section's keys in the flat form."""
        return [f.name for f in cls.option_fields()]

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The default of every option."""
        return {f.name: _default(f) for f in cls.option_fields()}

    @classmethod
    def from_flat(cls, values: Mapping[str, Any]) -> Any:
        """The section holding ``values`` (its own keys; an unknown key raises
        ``TypeError`` naming it); the keys left out keep their defaults."""
        unknown = sorted(set(values) - set(cls.keys()))
        if unknown:
            raise TypeError(f"unknown {cls.__name__} option(s) {unknown}; known: {cls.keys()}")
        return cls(**values)

    def to_flat(self) -> dict[str, Any]:
        """Every option as a plain value (lists and mappings copied)."""
        out = {}
        for f in self.option_fields():
            value = getattr(self, f.name)
            if isinstance(value, Mapping):
                value = dict(value)
            elif isinstance(value, list | tuple):
                value = list(value)
            out[f.name] = value
        return out

    def check_fields(self) -> None:
        """Check every option against its annotation and its declared choices; raise
        naming the first that does not fit."""
        for f in self.option_fields():
            check_type(f.name, getattr(self, f.name), str(f.type))
            if f.metadata.get("choices") is not None:
                _validate.choice(f.name, getattr(self, f.name), f.metadata["choices"])


def _default(f: Field) -> Any:
    return f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]

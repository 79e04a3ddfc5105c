"""The configuration of a training run, read from flags and/or a YAML file.

:class:`TrainConfig` is five sections, each a frozen dataclass of declared options
(:func:`preattn._options.option`) that checks its own values: ``data``
(:class:`~preattn.train.sections.DataConfig`), ``network``
(:class:`~preattn.models.ModelConfig`, with the attention spec), ``optim``
(:class:`~preattn.train.sections.OptimConfig`), ``compute``
(:class:`~preattn.train.sections.ComputeConfig`) and ``runtime``
(:class:`~preattn.train.sections.RuntimeConfig`, the options a resume may change). In
``config.yaml`` and on the command line they appear as one flat set of keys
(``placement: pre``, ``lr: 0.1``), and ``config.lr`` reads ``config.optim.lr``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .. import _yaml
from .._options import OptionSection
from .._yaml import YamlError
from ..models.config import MAX_WIDTH, ModelConfig
from ..spec import AttentionSpec
from .precision import parse_amp
from .sections import (
    CLUTTERED,
    MAX_SEED,
    OPTIMIZERS,
    ComputeConfig,
    DataConfig,
    OptimConfig,
    RuntimeConfig,
)

__all__ = [
    "CLUTTERED",
    "MAX_SEED",
    "MAX_WIDTH",
    "OPTIMIZERS",
    "ComputeConfig",
    "ConfigError",
    "DataConfig",
    "OptimConfig",
    "RuntimeConfig",
    "TrainConfig",
]


class ConfigError(ValueError):
    """A configuration file or value is invalid; the message names the field or line."""


def load_yaml(path: Path, what: str) -> Any:
    """The YAML document in ``path`` (:func:`preattn._yaml.load_yaml`); every problem is a
    ConfigError naming ``what``, the file and the line."""
    try:
        return _yaml.load_yaml(path, what)
    except YamlError as exc:
        raise ConfigError(str(exc)) from None


@dataclass(init=False, frozen=True)
class TrainConfig:
    """Everything that determines a run; saved as ``config.yaml`` in the run directory.

    ``TrainConfig(dataset="fashion-mnist", placement="branch", lam=None, lr=0.05)``: the
    keyword arguments are the flat keys (:meth:`keys`: every section's options and the
    :class:`~preattn.AttentionSpec` fields), each routed to its section; a whole section may
    be given too (``TrainConfig(optim=OptimConfig(lr=0.05), seed=3)``: flat keys apply on
    top of it). ``spec`` is the attention design the attention keys apply on top of.

    A flat key reads through to its section (``config.lr`` is ``config.optim.lr``,
    ``config.model`` is ``config.network.model``, ``config.spec`` the network's spec).
    """

    data: DataConfig = field(default_factory=DataConfig)
    network: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def __init__(self, spec: AttentionSpec | None = None, **options: Any) -> None:
        sections = {
            f.name: options.pop(f.name)
            for f in fields(self)
            if isinstance(options.get(f.name), OptionSection)
        }
        if isinstance(options.get("amp"), bool):  # the option's earlier boolean form
            options["amp"] = parse_amp(options["amp"])
        owner = _owners()
        spec_keys = set(AttentionSpec.names())
        unknown = sorted(set(options) - set(owner))
        if unknown:
            raise TypeError(f"unknown TrainConfig option(s) {unknown}; known: {self.keys()}")
        for f in fields(self):
            kind = f.default_factory  # type: ignore[misc]
            given = {k: v for k, v in options.items() if owner[k] == f.name}
            base = sections.get(f.name)
            if isinstance(base, ModelConfig):  # its spec, unless one is given, under the keys
                kept = {k: v for k, v in base.to_flat().items() if k not in spec_keys}
                value = ModelConfig.from_flat({**kept, **given}, spec=spec or base.spec)
            elif base is not None:
                value = kind.from_flat({**base.to_flat(), **given})
            elif kind is ModelConfig:
                value = ModelConfig.from_flat(given, spec=spec)
            else:
                value = kind.from_flat(given)
            object.__setattr__(self, f.name, value)

    @classmethod
    def sections(cls) -> list[Field]:
        """The section fields, in the order of the flat form."""
        return list(fields(cls))

    def __getattr__(self, name: str) -> Any:
        # only reached when normal lookup fails: a flat key reads through to its section
        owner = _owners().get(name)
        if owner is None or name.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        section = self.__dict__.get(owner)
        if section is None:  # not built (an object made without __init__)
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        if owner == "network" and name in AttentionSpec.names():
            return getattr(section.spec, name)
        return getattr(section, name)

    @property
    def spec(self) -> AttentionSpec:
        """The network's attention design (``config.network.spec``)."""
        return self.network.spec

    @classmethod
    def option_fields(cls) -> list[Field]:
        """The fields that are options, in the order of the flat form: each section's (the
        network's without ``spec``)."""
        out: list[Field] = []
        for f in cls.sections():
            out.extend(f.default_factory.option_fields())  # type: ignore[misc]
        return out

    @classmethod
    def keys(cls) -> list[str]:
        """Every key of the flat form: the options and the AttentionSpec fields."""
        return [f.name for f in cls.option_fields()] + list(AttentionSpec.names())

    @classmethod
    def resumable(cls) -> tuple[str, ...]:
        """The options a resumed run may change: the runtime section's, and those another
        section declares ``resumable`` (``epochs``)."""
        out = []
        for f in cls.sections():
            kind = f.default_factory  # type: ignore[misc]
            out.extend(
                o.name
                for o in kind.option_fields()
                if kind.RESUMABLE or o.metadata.get("resumable")
            )
        return tuple(out)

    def validate(self) -> TrainConfig:
        """Check every section (its types, ranges and choices); raise naming the first bad
        option."""
        for f in self.sections():
            section = getattr(self, f.name)
            if not isinstance(section, f.default_factory):  # type: ignore[arg-type]
                raise TypeError(
                    f"{f.name} must be a {f.default_factory.__name__}, "  # type: ignore[union-attr]
                    f"got {type(section).__name__}"
                )
        if not isinstance(self.spec.attention, str):
            raise TypeError(
                "a training configuration needs a registered attention name (it is saved "
                f"to YAML), got {self.spec.attention!r}"
            )
        for f in self.sections():
            getattr(self, f.name).validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        """The flat form: every option and every AttentionSpec field, plain values."""
        out: dict[str, Any] = {}
        for f in self.sections():
            out.update(getattr(self, f.name).to_flat())
        return {k: out[k] for k in self.keys()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from the flat form (unknown keys are an error naming them)."""
        values = {str(k).replace("-", "_"): v for k, v in values.items()}
        known = cls.keys()
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; known keys are {sorted(known)}")
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` in the flat form (``placement=`` reaches the spec)."""
        return type(self).from_dict({**self.to_dict(), **changes})

    @classmethod
    def from_yaml(
        cls,
        path: str | Path,
        *,
        prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> TrainConfig:
        """Read a YAML mapping of flat keys; syntax errors name the file and the line.

        A run directory's ``config.yaml`` also holds the run's ``history`` of resumes: it is
        left out (``prepare`` may take it, or other keys, out of the mapping first)."""
        path = Path(path)
        values = load_yaml(path, "config file") or {}
        if not isinstance(values, dict):
            raise ConfigError(
                f"config file {path} must hold a mapping, got {type(values).__name__}"
            )
        try:
            values = prepare(values) if prepare else values
            for record in ("history", "data"):  # a run directory's records, not options
                values.pop(record, None)
            return cls.from_dict(values)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


@functools.cache
def _owners() -> dict[str, str]:
    """Every flat key of :class:`TrainConfig` -> the name of the section that holds it."""
    owners: dict[str, str] = {}
    for f in TrainConfig.sections():
        owners.update(dict.fromkeys(f.default_factory.keys(), f.name))  # type: ignore[misc]
    return owners

"""The flags several commands share, generated from one declaration per option: a field's
``help``, ``parse`` and ``choices`` metadata (:class:`~preattn.train.TrainConfig`,
:class:`~preattn.spec.AttentionSpec`) become its ``--flag``; a flag left out keeps the
value of the config file or the run it overrides."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import Field, fields
from pathlib import Path
from typing import Any

from .._options import parse_bool
from .._yaml import parse_yaml_value
from ..spec import PRESETS, AttentionSpec

__all__ = [
    "add_attention_flags",
    "add_field_flags",
    "add_train_flags",
    "argparse_type",
    "given",
    "key_values",
    "spec_values",
    "train_config",
]


def argparse_type(parse: Any) -> Any:
    """Wrap a field's parser so argparse reports its ValueError as a usage error."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def add_field_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    fields_: Sequence[Field],
    defaults: dict[str, Any],
) -> None:
    """One ``--flag`` per declared field, from its ``help``, ``parse`` and ``choices``."""
    for f in fields_:
        flag = "--" + f.name.replace("_", "-")
        parse = f.metadata.get("parse", str)
        default = defaults.get(f.name)
        shown = default if not isinstance(default, Mapping) else dict(default)
        text = f.metadata.get("help", "")
        # a help text that states its own default (per model, say) is not told it again
        help_text = text if "(default" in text else f"{text} (default: {shown})"
        choices = f.metadata.get("choices")
        const = True if parse is parse_bool else f.metadata.get("const")
        optional_value = {} if const is None else {"nargs": "?", "const": const}
        parser.add_argument(
            flag,
            **optional_value,
            type=argparse_type(parse),
            choices=choices,
            default=argparse.SUPPRESS,
            help=help_text,
        )


def add_attention_flags(
    parser: argparse.ArgumentParser, defaults: dict[str, Any], exclude: Sequence[str] = ()
) -> None:
    """``--placement``, ``--attention``, ``--lam`` ...: one flag per AttentionSpec field."""
    group = parser.add_argument_group("attention (preattn.AttentionSpec)")
    group.add_argument(
        "--preset",
        choices=list(PRESETS),
        default=argparse.SUPPRESS,
        help="a named design (docs/lambda.md); the flags below override its fields",
    )
    spec_fields = [f for f in fields(AttentionSpec) if f.name not in exclude]
    add_field_flags(group, spec_fields, defaults)


# the heading of each TrainConfig section's flags in --help
_SECTION_TITLES = {
    "data": "data",
    "network": "network",
    "optim": "optimisation",
    "compute": "computation, fixed for a run",
    "runtime": "runtime, a resume may change these",
}


def add_train_flags(parser: argparse.ArgumentParser, exclude: Sequence[str] = ()) -> None:
    """Every TrainConfig option and AttentionSpec field as a flag, but ``exclude``."""
    from ..train.config import TrainConfig

    defaults = TrainConfig().to_dict()
    for section in TrainConfig.sections():
        kind = section.default_factory  # type: ignore[misc]
        options = [f for f in kind.option_fields() if f.name not in exclude]
        title = _SECTION_TITLES[section.name]
        add_field_flags(parser.add_argument_group(f"{title} ({kind.__name__})"), options, defaults)
    add_attention_flags(parser, defaults, exclude)


def given(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The values of ``names`` given on the command line (a flag left out is absent)."""
    return {name: getattr(args, name) for name in names if hasattr(args, name)}


def spec_values(args: argparse.Namespace) -> dict[str, Any]:
    """The AttentionSpec fields given on the command line, on top of ``--preset``'s (all
    fields of the preset, so it replaces what a config file said)."""
    fields_given = given(args, AttentionSpec.names())
    preset = getattr(args, "preset", None)
    if preset is None:
        return fields_given
    return {**AttentionSpec.preset(preset).to_dict(), **fields_given}


def config_file(value: str) -> Path:
    """``--config``'s file: ``value`` itself, or the shipped recipe of that name
    (:mod:`preattn.train.recipes`) where no such file exists."""
    from ..train.recipes import RECIPES, recipe_path

    path = Path(value)
    return recipe_path(value) if value in RECIPES and not path.exists() else path


def train_config(args: argparse.Namespace) -> Any:
    """The validated :class:`~preattn.train.TrainConfig` of ``train``/``compare``: the
    flags given, over ``--resume``'s run or ``--config``'s file (else the defaults)."""
    from ..train.config import TrainConfig

    flags = {**given(args, TrainConfig.keys()), **spec_values(args)}
    if getattr(args, "resume", None):
        if args.config:
            raise ValueError("--resume continues a run with its own config; drop --config")
        from ..train.rundir import RunDir

        base = RunDir(args.resume).read_config()[0].to_dict()
        base["out"] = str(args.resume)
    elif args.config:
        base = TrainConfig.from_yaml(config_file(args.config)).to_dict()
    else:
        base = {}
    base.update(flags)
    return TrainConfig.from_dict(base).validate()


def key_values(items: Sequence[str], flag: str) -> dict[str, Any]:
    """``["epochs=1", "stages=[2, 3]"]`` -> ``{"epochs": 1, "stages": [2, 3]}`` (YAML values)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} takes KEY=VALUE, got {item!r}")
        out[key.strip().replace("-", "_")] = parse_yaml_value(value.strip())
    return out

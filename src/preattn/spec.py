"""``AttentionSpec``: which attention, where in the block, with which λ — in one object.

Every layer that adds attention takes a spec, or builds one exactly once from keyword
arguments named like its fields: :class:`~preattn.ResidualBlock`, the networks of
:mod:`preattn.models`, :func:`~preattn.retrofit`, the training configuration and the
command line (one flag per field, generated from the fields below). A new option is a new
field here, with its ``help`` and command-line ``parse`` in the field's metadata.

Fields (see :class:`~preattn.ResidualBlock` for the placements and
:class:`~preattn.LambdaMix` for λ)::

    placement         none | pre | branch | post | skip    ("pre" is Pattern-3)
    attention         registered name or factory  channels -> nn.Module
    attention_kwargs  extra arguments of the attention factory (e.g. reduction=8)
    lam               initial λ in [0, 1], or None: uncontrolled, mix(z, a) = a
    lam_param         sigmoid (λ = σ(logit)) | linear (λ stored as is) | depth (gates:
                      w = 1 + λ·(g / mean(g) − 1), λ is the modulation depth, used
                      clamped to [0, 1])
    lam_shape         scalar (one λ per block) | channel (one λ per channel, (C,))
    lam_learnable     λ is an nn.Parameter (True) or a buffer (False)
    lam_warmup_steps  λ_eff = λ · min(1, t / N) over the first N training forwards

Meaning of combinations:

- ``placement="none"``: the block has no attention; every other field is ignored (a
  network uses this for the blocks outside its attended stages).
- ``lam=None``: there is no λ; ``lam_param`` and ``lam_learnable`` describe nothing and are
  ignored, but a warm-up (``lam_warmup_steps > 0``) is an error, since it would ramp a λ
  that does not exist.
- ``lam_learnable=False`` with ``lam=0`` is an error: attention that can never act
  (a sigmoid λ would even be stuck at 1e-4). Use ``placement="none"`` instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any

from . import _validate
from ._options import check_type, option, parse_bool, parse_kwargs, parse_optional_float
from .attention import AttentionFactory, attention_names, normalise_name
from .mixing import LAMBDA_PARAMS, LAMBDA_SHAPES, LambdaMix

__all__ = ["LAMBDA_PARAMS", "PLACEMENTS", "PRESETS", "AttentionSpec"]

PLACEMENTS = ("none", "pre", "branch", "post", "skip")

# named designs (docs/lambda.md): the fields that differ from the defaults
PRESETS: dict[str, dict[str, Any]] = {
    # the specification's controlled Pattern-3: CBAM on the input, λ = 0.1 (sigmoid)
    "pattern3": {},
    # λ as the modulation depth of the mean-one gate: λ learns and attention acts
    "pattern3-depth": {"lam_param": "depth", "lam": 0.5},
    "pattern3-uncontrolled": {"lam": None},
    # the usual placements at full strength: standard CBAM and SE-ResNet blocks
    "cbam": {"placement": "branch", "lam": None},
    "se-resnet": {"placement": "branch", "attention": "se", "lam": None},
}


@dataclass(frozen=True)
class AttentionSpec:
    """Which attention a residual block gets, where, and how λ controls it (frozen).

    Built and validated once; invalid values and contradictory combinations raise
    ``ValueError``/``TypeError`` naming the field (module docstring).
    """

    placement: str = option(
        "pre", "where attention sits in each residual block", choices=PLACEMENTS
    )
    attention: str | AttentionFactory = option(
        "cbam",
        f"attention module: {', '.join(attention_names())}, or a name registered with "
        "preattn.register_attention",
    )
    attention_kwargs: Mapping[str, Any] = option(
        {}, "extra arguments of the attention module, e.g. reduction=8", parse_kwargs
    )
    lam: float | None = option(
        0.1, "initial λ in [0, 1]; 'none' for uncontrolled attention", parse_optional_float
    )
    lam_param: str = option(
        "sigmoid",
        "λ parameterisation: sigmoid (the specification's), linear, or depth (gates only: "
        "w = 1 + λ·(g/mean(g) − 1))",
        choices=LAMBDA_PARAMS,
    )
    lam_shape: str = option(
        "scalar", "one λ per block (scalar) or per channel (channel)", choices=LAMBDA_SHAPES
    )
    lam_learnable: bool = option(True, "learn λ (true) or keep it fixed (false)", parse_bool)
    lam_warmup_steps: int = option(
        0, "ramp λ from 0 over this many training forward passes (optimiser steps)", int
    )

    def __post_init__(self) -> None:
        _validate.choice("placement", self.placement, PLACEMENTS)
        attention = self.attention
        if isinstance(attention, str):
            key = normalise_name(attention)
            if key not in attention_names():
                raise ValueError(
                    f"attention must be one of {attention_names()} or a callable, got {attention!r}"
                )
            object.__setattr__(self, "attention", key)
        elif not callable(attention):
            raise TypeError(
                f"attention must be a str or a callable, got {type(attention).__name__}"
            )
        kwargs = self.attention_kwargs if self.attention_kwargs is not None else {}
        if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
            raise TypeError(
                f"attention_kwargs must be a mapping with str keys, got {self.attention_kwargs!r}"
            )
        object.__setattr__(self, "attention_kwargs", MappingProxyType(dict(kwargs)))
        if self.lam is not None:
            check_type("lam", self.lam, "float")
            object.__setattr__(self, "lam", _validate.unit_interval("lam", self.lam))
        _validate.choice("lam_param", self.lam_param, LAMBDA_PARAMS)
        _validate.choice("lam_shape", self.lam_shape, LAMBDA_SHAPES)
        check_type("lam_learnable", self.lam_learnable, "bool")
        _validate.non_negative_int("lam_warmup_steps", self.lam_warmup_steps)
        if self.lam is None and self.lam_warmup_steps:
            raise ValueError(
                f"lam_warmup_steps={self.lam_warmup_steps} needs a λ to ramp, but lam=None "
                "(uncontrolled attention); give lam a value or set lam_warmup_steps=0"
            )
        if self.lam == 0.0 and not self.lam_learnable and self.placement != "none":
            raise ValueError(
                "lam=0 with lam_learnable=False is attention that can never act; "
                "use placement='none', or make λ learnable"
            )

    def __hash__(self) -> int:
        kwargs = tuple(sorted((k, repr(v)) for k, v in self.attention_kwargs.items()))
        values = [getattr(self, f.name) for f in fields(self) if f.name != "attention_kwargs"]
        return hash((*values, kwargs))

    def __copy__(self) -> AttentionSpec:
        return self  # immutable

    def __deepcopy__(self, memo: dict) -> AttentionSpec:
        return self

    def __reduce__(self) -> tuple:
        return (_restore, (self.to_dict(),))

    @property
    def has_attention(self) -> bool:
        return self.placement != "none"

    @property
    def controlled(self) -> bool:
        """Whether a :class:`~preattn.LambdaMix` mixes the attention (``lam`` is not None)."""
        return self.has_attention and self.lam is not None

    def make_mix(self, channels: int | None = None) -> LambdaMix:
        """The :class:`~preattn.LambdaMix` this spec describes (``lam`` must not be None)
        for attention over ``channels`` channels (needed when ``lam_shape="channel"``)."""
        if self.lam_shape == "channel" and channels is None:
            raise ValueError("lam_shape='channel' needs the channel count of the attention")
        if self.lam is None:
            raise ValueError("spec.lam is None (uncontrolled attention): there is no λ to mix")
        return LambdaMix(
            self.lam,
            learnable=self.lam_learnable,
            param=self.lam_param,
            warmup_steps=self.lam_warmup_steps,
            channels=channels if self.lam_shape == "channel" else None,
        )

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> AttentionSpec:
        """The named design ``name`` (:data:`PRESETS`), with ``overrides`` on top:
        ``AttentionSpec.preset("pattern3-depth")``."""
        fields_ = PRESETS[_validate.choice("preset", name, PRESETS)]
        cls.check_names(overrides)
        return cls(**{**fields_, **overrides})

    def replace(self, **changes: Any) -> AttentionSpec:
        """A copy with ``changes`` (field names only), validated again."""
        self.check_names(changes)
        return dataclasses.replace(self, **changes)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The field names, in declaration order."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def check_names(cls, options: Mapping[str, Any]) -> None:
        unknown = sorted(set(options) - set(cls.names()))
        if unknown:
            raise TypeError(
                f"unknown attention option(s) {unknown}; AttentionSpec fields are "
                f"{list(cls.names())}"
            )

    @classmethod
    def build(
        cls, spec: AttentionSpec | None = None, /, base: AttentionSpec | None = None, **options: Any
    ) -> AttentionSpec:
        """The spec a constructor works with: ``spec`` (or ``base``, or the defaults) with
        ``options`` applied on top. ``spec`` must be an ``AttentionSpec`` or ``None``."""
        if spec is not None and not isinstance(spec, AttentionSpec):
            raise TypeError(f"spec must be an AttentionSpec or None, got {type(spec).__name__}")
        start = spec or base or cls()
        return start.replace(**options) if options else start

    def to_dict(self) -> dict[str, Any]:
        """Plain values (a dict for ``attention_kwargs``); for YAML and JSON."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["attention_kwargs"] = dict(self.attention_kwargs)
        return out

    def describe(self) -> str:
        """``placement=pre attention=cbam λ=0.1 (sigmoid, learnable)`` (one line)."""
        if not self.has_attention:
            return "placement=none"
        name = self.attention if isinstance(self.attention, str) else repr(self.attention)
        if self.lam is None:
            lam = "λ=none (uncontrolled)"
        else:
            kind = "learnable" if self.lam_learnable else "fixed"
            warm = f", warm-up {self.lam_warmup_steps}" if self.lam_warmup_steps else ""
            shape = ", per channel" if self.lam_shape == "channel" else ""
            lam = f"λ={self.lam:g} ({self.lam_param}{shape}, {kind}{warm})"
        extra = f" {dict(self.attention_kwargs)}" if self.attention_kwargs else ""
        return f"placement={self.placement} attention={name}{extra} {lam}"


def _restore(values: dict[str, Any]) -> AttentionSpec:
    """Unpickle an :class:`AttentionSpec` (pickling goes through its plain values)."""
    return AttentionSpec(**values)

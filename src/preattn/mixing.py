"""λ-control: mixing a tensor with its attended version.

    mix(z, a) = z + λ_eff · (a − z) = (1 − λ_eff) · z + λ_eff · a

``z`` is the tensor attention acts on and ``a = A(z)``; both have the same shape
(B, C, H, W). With λ_eff = 0 mix returns ``z`` (attention off), with λ_eff = 1 it returns
``a`` (uncontrolled attention).

Parameterisations of λ:

- ``sigmoid`` (the specification's, docs/pattern3.md §5): the stored value is a logit,
  ``λ = sigmoid(logit)``, so λ stays in (0, 1). The initial λ is clamped to
  [1e-4, 1 − 1e-4] before taking the logit.
- ``linear`` (ReZero-style): the stored value is λ itself, unconstrained during training.
  λ = 0 is then an exact identity at initialisation that still receives gradient
  ``dL/dλ = <dL/dmix, a − z>``.
- ``depth`` (gate attention only, ``A(z) = z·g``): λ is stored as itself and is the
  modulation depth of the gate normalised to mean one per sample,
  ``mix = z·w``, ``w = 1 + λ·(g / mean_CHW(g) − 1)``: a uniform gate changes nothing, and
  ``std(w)/mean(w) = λ·std(g)/mean(g)`` (:mod:`preattn.modulation`). The depth used is
  ``clamp(λ, 0, 1)``: ``w = (1 − λ) + λ·g/mean(g) ≥ 0`` for a gate ``g ≥ 0``, so the
  multiplier never inverts the gate (a negative λ would favour what the gate suppresses,
  λ > 1 would turn weak gates into negative weights); outside the range λ gets no
  gradient and the depth stays at its bound.

For a gate, every form is ``z·w`` with the multiplier :meth:`LambdaMix.multiplier`:
``w = (1 − λ) + λ·g`` (``sigmoid``, ``linear``) or the ``depth`` form above.

Shape: one λ per block (``shape="scalar"``, the default) or one per channel
(``shape="channel"``, LayerScale-style, λ of shape (C,), broadcast as (C, 1, 1)).

Warm-up: with ``warmup_steps = N > 0`` the effective value is
``λ_eff = λ · min(1, t / N)`` where ``t`` counts the forward passes made in training mode
(0 at the first one; one per optimiser step in a plain training loop). ``t`` is a buffer,
so it is saved in the state dict and a resumed run continues the ramp. torch.fx reads it as
a constant: a trace in eval mode keeps λ_eff of that moment (eval never moves it), and a
trace in training mode is refused until the warm-up is over.
"""

from __future__ import annotations

import torch
from torch import nn

from . import _validate

__all__ = ["LAMBDA_PARAMS", "LAMBDA_SHAPES", "LambdaMix", "lambdas"]

LAMBDA_PARAMS = ("sigmoid", "linear", "depth")
LAMBDA_SHAPES = ("scalar", "channel")
_SIGMOID_CLAMP = 1e-4


class LambdaMix(nn.Module):
    """Learnable or fixed λ with ``forward(z, a) = z + λ_eff · (a − z)``.

    Args:
        lam: initial λ in [0, 1].
        learnable: store the raw value as an ``nn.Parameter`` (else as a buffer).
        param: ``"sigmoid"`` (raw value is ``logit``), ``"linear"`` or ``"depth"`` (raw
            value is λ).
        warmup_steps: ramp λ_eff linearly from 0 over this many training forward passes
            (0: off); ``AttentionSpec.lam_warmup_steps``.
        channels: ``C`` for one λ per channel (shape (C,)); ``None``: one λ (0-dim).

    The raw value is named ``logit`` for ``sigmoid`` and ``lam`` for ``linear`` in the state
    dict; the warm-up counter is ``warmup_step``.
    """

    __jit_unused_properties__ = ["raw"]  # noqa: RUF012  (TorchScript reads this name)

    def __init__(
        self,
        lam: float = 0.1,
        *,
        learnable: bool = True,
        param: str = "sigmoid",
        warmup_steps: int = 0,
        channels: int | None = None,
    ) -> None:
        super().__init__()
        lam = _validate.unit_interval("lam", lam)
        shape: tuple[int, ...] = ()
        if channels is not None:
            shape = (_validate.positive_int("channels", channels),)
        self.param = _validate.choice("lam_param", param, LAMBDA_PARAMS)
        self.warmup_steps = _validate.non_negative_int("lam_warmup_steps", warmup_steps)
        self.learnable = bool(learnable)
        if param == "sigmoid":
            # float32 like the reference block, so both start from the same logit bit for bit
            p = torch.tensor(min(max(lam, _SIGMOID_CLAMP), 1.0 - _SIGMOID_CLAMP))
            value, self._raw_name = torch.log(p / (1.0 - p)), "logit"
        else:
            value, self._raw_name = torch.tensor(lam, dtype=torch.float32), "lam"
        value = value.expand(shape).clone() if shape else value
        self.depth = param == "depth"
        self.per_channel = bool(shape)  # a Python flag: tracers see no shape test
        if self.learnable:
            self.register_parameter(self._raw_name, nn.Parameter(value))
        else:
            self.register_buffer(self._raw_name, value)
        if self.warmup_steps:
            self.register_buffer("warmup_step", torch.zeros((), dtype=torch.long))

    @property
    def raw(self) -> torch.Tensor:
        """The stored value: a logit (``sigmoid``) or λ itself (``linear``)."""
        return getattr(self, self._raw_name)

    def base_value(self) -> torch.Tensor:
        """λ before warm-up, a 0-dim float tensor (``depth``: clamped to [0, 1])."""
        # attribute tests TorchScript resolves when it compiles (one branch is kept)
        if hasattr(self, "logit"):
            return torch.sigmoid(self.logit)
        if self.depth:
            return self.lam.clamp(0.0, 1.0)
        return self.lam

    def value(self) -> torch.Tensor:
        """Effective λ_eff = λ · min(1, t / N) (λ when warm-up is off), a 0-dim tensor."""
        lam = self.base_value()
        if hasattr(self, "warmup_step"):
            ramp = self.warmup_step.clamp(max=self.warmup_steps) / self.warmup_steps
            lam = lam * ramp.to(lam.dtype)
        return lam

    def _step(self) -> torch.Tensor:
        """λ_eff for this forward pass, shaped to broadcast over (B, C, H, W) (0-dim, or
        (C, 1, 1) per channel); advances the warm-up counter in training mode."""
        lam = self.value()
        if hasattr(self, "warmup_step"):  # noqa: SIM102  (resolved by TorchScript alone)
            if self.training:
                if torch.jit.is_scripting():
                    self.warmup_step.add_(1)
                else:
                    self._advance_warmup()
        if self.per_channel:
            lam = lam[:, None, None]
        return lam

    def _advance_warmup(self) -> None:
        """Count one training forward pass. torch.fx reads the counter as a constant while
        it traces (a buffer is not a proxy): the graph would keep this moment's λ_eff and
        never advance it, so tracing in training mode during the warm-up is refused, and a
        trace never moves the counter."""
        if not _validate.fx_tracing():
            self.warmup_step.add_(1)
        elif int(self.warmup_step) < self.warmup_steps:
            raise RuntimeError(
                f"torch.fx cannot trace a λ warm-up in training mode (step "
                f"{int(self.warmup_step)} of {self.warmup_steps}: the graph would freeze λ_eff); "
                "trace in eval mode or after the warm-up"
            )

    def multiplier(self, gate: torch.Tensor, lam: torch.Tensor | None = None) -> torch.Tensor:
        """The multiplier ``w`` with ``mix(z, z·g) = z·w`` for a gate ``g`` (broadcastable
        to z): ``(1 − λ) + λ·g``, or ``1 + λ·(g / mean_CHW(g) − 1)`` for ``depth``.
        ``lam``: λ_eff shaped as :meth:`_step` returns it (default: the current value)."""
        if lam is None:
            lam = self.value()
            if self.per_channel:
                lam = lam[:, None, None]
        lam = lam.to(gate.dtype)
        if self.depth:
            mean = gate.mean(dim=(1, 2, 3), keepdim=True)
            return 1.0 + lam * (gate / mean - 1.0)
        return (1.0 - lam) + lam * gate

    def forward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Return ``(1 − λ_eff) · z + λ_eff · a``; ``z`` and ``a`` have the same shape.
        (``depth`` needs the gate itself: :meth:`attend`.)"""
        lam = self._step().to(z.dtype)
        return (1.0 - lam) * z + lam * a

    def attend(self, z: torch.Tensor, attention: nn.Module) -> torch.Tensor:
        """``mix(z, attention(z))``, fused when ``attention`` has a ``mixed(z, λ)`` method.

        Gate attention (:class:`~preattn.attention.GateAttention`) computes the mix as
        ``z · ((1 − λ) + λ·gate(z))`` without materialising ``A(z)`` and the two products;
        ``depth`` computes ``z · w`` from the gate (:meth:`multiplier`).
        """
        lam = self._step()
        if self.depth:
            return z * self.multiplier(attention.gate(z), lam).to(z.dtype)
        mixed = getattr(attention, "mixed", None)
        if mixed is not None:
            return mixed(z, lam)
        lam = lam.to(z.dtype)
        return (1.0 - lam) * z + lam * attention(z)

    def extra_repr(self) -> str:
        value = self.value().detach()
        shape = f", channels={value.numel()}" if value.dim() else ""
        return (
            f"lam={float(value.mean()):.4g}{shape}, param={self.param!r}, "
            f"learnable={self.learnable}, warmup_steps={self.warmup_steps}"
        )


def lambdas(model: nn.Module) -> dict[str, float]:
    """Effective λ of every λ-controlled block of ``model``, keyed by the block's name.

    The block is the module that owns the :class:`LambdaMix`; the model itself is named
    ``""``. Values are Python floats (λ_eff, warm-up included; the mean over channels for
    a per-channel λ).
    """
    out: dict[str, float] = {}
    for name, module in model.named_modules():
        if isinstance(module, LambdaMix):
            owner = name.rpartition(".")[0]
            out[owner] = float(module.value().detach().mean())
    return out

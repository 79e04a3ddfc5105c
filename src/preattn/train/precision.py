"""Numerical precision of training: autocast modes, and what the device computes natively.

``amp`` (a training option) is one of :data:`AMP_MODES`:

==========  ==============================================================================
``off``     float32 everywhere
``bf16``    autocast to bfloat16 (no loss scaling: bf16 has float32's exponent range)
``fp16``    autocast to float16 with a :class:`torch.amp.GradScaler` (CUDA)
``auto``    bf16 where the device computes it natively (a CUDA GPU that supports it:
            Ampere and later; a CPU with AVX512-BF16 or AMX), fp16 on older CUDA GPUs,
            float32 on other CPUs, where bf16 is emulated and slower than float32
==========  ==============================================================================

Autocast runs convolutions and matrix products in the low precision and keeps reductions
(BatchNorm statistics, the loss) in float32; the weights and the optimiser stay float32.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = [
    "AMP_MODES",
    "amp_dtype",
    "cpu_has_native_bf16",
    "make_scaler",
    "parse_amp",
]

AMP_MODES = ("off", "bf16", "fp16", "auto")

_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def parse_amp(value: Any) -> str:
    """An ``amp`` value: one of :data:`AMP_MODES`; ``true``/``false`` (the option's earlier
    boolean form, also in saved runs' ``config.yaml``) read as ``auto``/``off``."""
    if isinstance(value, bool):
        return "auto" if value else "off"
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return "auto"
    if text in ("false", "0", "no", "none"):
        return "off"
    if text not in AMP_MODES:
        raise ValueError(f"amp must be one of {list(AMP_MODES)} (or true/false), got {value!r}")
    return text


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX tiles)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    for name in checks:
        check = getattr(torch.cpu, name, None)
        try:
            if check is not None and check():
                return True
        except RuntimeError:  # a build without the check
            continue
    return False


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``mode`` on ``device`` (None: float32).

    Raises ``ValueError`` for ``fp16`` on a CPU (PyTorch's CPU autocast computes float16
    slowly and without loss scaling; use ``bf16``)."""
    mode = parse_amp(mode)
    if mode == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu":
            return torch.bfloat16 if cpu_has_native_bf16() else None
        return None
    if mode == "fp16" and device.type == "cpu":
        raise ValueError("amp='fp16' is for CUDA; on a CPU use amp='bf16' (or 'auto')")
    return _DTYPES[mode]


def make_scaler(dtype: torch.dtype | None, device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling for float16 autocast; a disabled scaler otherwise (its state is saved
    and restored all the same, so a checkpoint's layout does not depend on ``amp``)."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

"""Where bf16 is worth using: one answer shared by every stage that autocasts.

bf16 autocast pays off only where the hardware computes in bf16 natively: CUDA GPUs
that support it (Ampere and newer) and CPUs with bf16 instructions — AMX tiles (Xeon
Sapphire Rapids and newer) or AVX512-BF16 (Xeon Cooper Lake, AMD Zen 4 and newer).
Measured on a 2-core AMD EPYC with AVX512-BF16: pose inference 1.5x and generator
training 1.6x the fp32 speed. Elsewhere PyTorch emulates bf16 and autocast would be
slower than fp32, so ``auto`` settings resolve to fp32 there.
"""

from __future__ import annotations

from typing import Literal

import torch

from dancepipe.errors import DancepipeError


def _cpu_flag(name: str) -> bool:
    check = getattr(torch.cpu, name, None)  # private helpers: absent in some torch builds
    return bool(check is not None and check())


def native_bf16(device: torch.device | str) -> bool:
    """True if ``device`` computes bf16 natively (CUDA with bf16, a CPU with AMX or AVX512-BF16)."""
    kind = torch.device(device).type
    if kind == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if kind == "cpu":
        return _cpu_flag("_is_amx_tile_supported") or _cpu_flag("_is_avx512_bf16_supported")
    return False


Precision = Literal["auto", "fp32", "bf16"]  # the type of every stage's ``precision`` key
PRECISION_HELP = "auto (bf16 where native: CUDA, AMX/AVX512-BF16 CPUs), fp32 or bf16"


def resolve_precision(precision: str, device: torch.device | str, param: str) -> str:
    """``auto`` → ``bf16`` where the hardware runs it natively (:func:`native_bf16`), else ``fp32``.

    ``param`` names the setting (``poses.precision``) for the error raised when bf16 is
    asked for on a device that has no bf16 autocast.
    """
    kind = torch.device(device).type
    if precision == "fp32":
        return "fp32"
    if precision == "bf16":
        if kind not in ("cpu", "cuda"):
            raise DancepipeError(f"{param}: bf16 is supported on cpu and cuda, not on '{device}'")
        return "bf16"
    if precision != "auto":
        raise DancepipeError(f"{param}: {precision!r} is not one of auto, fp32, bf16")
    return "bf16" if native_bf16(device) else "fp32"

"""The precision a device runs at: one answer shared by every stage that autocasts.

Reduced precision pays off only where the hardware computes in it natively:

* bf16 on CUDA GPUs of compute capability 8.0 or newer (Ampere on) and on CPUs with bf16
  instructions — AMX tiles (Xeon Sapphire Rapids and newer) or AVX512-BF16 (Xeon
  Cooper Lake, AMD Zen 4 and newer). Elsewhere bf16 is emulated and slower than fp32.
* fp16 on older CUDA GPUs with tensor cores (capability 7.x: V100, T4, RTX 20xx), which
  have no bf16 units (cuDNN refuses or emulates bf16 there). fp16's narrow range needs a
  gradient scaler in training (:func:`needs_scaler`), as pix2pixHD's ``--fp16`` had;
  inference runs fp16 autocast without one.

``auto`` picks bf16, else fp16, where the device has it natively, and fp32 everywhere
else (older GPUs without tensor cores, MPS, CPUs without bf16 instructions), where
autocast would be slower than fp32. An explicit choice the device cannot run is a
one-sentence error naming the param; bf16 on a CPU without bf16 instructions is allowed
(PyTorch emulates it: slower, but the same arithmetic as on a CPU that has them).

The decision reads :class:`~dancepipe.hardware.devices.MachineFacts`, so every case is
tested without the hardware.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Literal

import torch

from dancepipe.errors import DancepipeError
from dancepipe.hardware.devices import MachineFacts

Precision = Literal["auto", "fp32", "bf16", "fp16"]  # the type of every stage's ``precision`` key
PRECISION_HELP = "auto (bf16 where native: Ampere+ GPUs, AMX/AVX512-BF16 CPUs; fp16 on older GPUs), fp32, bf16 or fp16"

BF16_CAPABILITY = (8, 0)  # Ampere: the first CUDA GPUs with bf16 tensor cores
FP16_CAPABILITY = (7, 0)  # Volta: the first with fp16 tensor cores (older ones: fp32 is as fast)
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _capability(device: torch.device, facts: MachineFacts) -> tuple[int, int]:
    index = 0 if device.index is None else device.index
    if index >= facts.cuda_count:
        raise DancepipeError(f"{device} is not one of this machine's {facts.describe_cuda()}")
    return facts.cuda_capabilities[index]


def native_bf16(device: torch.device | str, facts: MachineFacts | None = None) -> bool:
    """True if ``device`` computes bf16 natively (CUDA capability >= 8.0, a CPU with AMX or AVX512-BF16)."""
    facts = MachineFacts.from_torch() if facts is None else facts
    dev = torch.device(device)
    if dev.type == "cuda":
        return _capability(dev, facts) >= BF16_CAPABILITY
    return dev.type == "cpu" and facts.cpu_native_bf16


def choose_precision(value: str, device: torch.device | str, facts: MachineFacts, param: str) -> str:
    """``fp32``, ``bf16`` or ``fp16`` for a precision param ``value`` on ``device`` of a machine with ``facts``.

    ``value`` is ``auto``, ``fp32`` (``off`` for ``train.amp``), ``bf16`` or ``fp16``;
    ``param`` (``train.amp``, ``poses.precision``) names the key in errors.
    """
    dev = torch.device(device)
    if value in ("fp32", "off"):
        return "fp32"
    if value not in ("auto", "bf16", "fp16"):
        raise DancepipeError(f"{param} = {value!r} is not one of auto, fp32, bf16, fp16")
    cap = _capability(dev, facts) if dev.type == "cuda" else None
    if value == "auto":
        if native_bf16(dev, facts):
            return "bf16"
        return "fp16" if cap is not None and cap >= FP16_CAPABILITY else "fp32"
    if value == "bf16":
        if cap is not None and cap < BF16_CAPABILITY:
            raise DancepipeError(f"{param} = 'bf16' but {dev} has compute capability {cap[0]}.{cap[1]} and bf16 "
                                 f"needs {BF16_CAPABILITY[0]}.{BF16_CAPABILITY[1]} (Ampere) or newer; use 'fp16' or 'auto'")
        if dev.type not in ("cpu", "cuda"):
            raise DancepipeError(f"{param} = 'bf16' but {dev} has no bf16 autocast (cpu and cuda do); use 'auto'")
        return "bf16"
    if dev.type != "cuda":
        raise DancepipeError(f"{param} = 'fp16' but this stage runs on {dev}, and fp16 autocast is for CUDA GPUs; "
                             f"use 'auto'")
    return "fp16"


def resolve_precision(value: str, device: torch.device | str, param: str) -> str:
    """:func:`choose_precision` on this machine (:meth:`MachineFacts.from_torch`)."""
    return choose_precision(value, device, MachineFacts.from_torch(), param)


def autocast(device: torch.device | str, precision: str) -> AbstractContextManager:
    """Autocast to a chosen ``precision`` on ``device`` (a no-op for fp32)."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=_DTYPES[precision])


def needs_scaler(precision: str) -> bool:
    """Whether training at ``precision`` needs a gradient scaler: fp16 does (small gradients underflow)."""
    return precision == "fp16"

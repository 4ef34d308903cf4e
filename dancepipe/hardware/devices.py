"""The one meaning of a ``device`` param, for every stage that has one.

``auto`` is the first CUDA device when one is visible, else the CPU (MPS is used only
when asked for by name). Asking for a device this machine lacks is an error naming
the param, never a silent fallback to the CPU.
"""

from __future__ import annotations

import re

import torch

from dancepipe.errors import DancepipeError

DEVICE_HELP = "auto, cpu, cuda, cuda:N or mps"
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda|cuda:\d+)$")


def check_device(value: str) -> str:
    """Validate a device param value (for pydantic validators): the value, trimmed and lower-cased.

    Raises ValueError (which pydantic turns into a one-sentence params error) otherwise.
    """
    v = str(value).strip().lower()
    if not _DEVICE.match(v):
        raise ValueError(f"must be one of {DEVICE_HELP}")
    return v


def resolve_device(value: str, param: str = "device") -> torch.device:
    """The torch device a param value names on this machine.

    ``param`` (e.g. ``train.device``) names the key in the error raised when the
    device is not there.
    """
    try:
        v = check_device(value)
    except ValueError as e:
        raise DancepipeError(f"{param} = {value!r}: {e}") from e
    if v == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if v.startswith("cuda") and not torch.cuda.is_available():
        raise DancepipeError(f"{param} = {value!r} but no CUDA device is visible here; use 'auto' or 'cpu'")
    if v.startswith("cuda:") and int(v[5:]) >= torch.cuda.device_count():
        raise DancepipeError(f"{param} = {value!r} but only {torch.cuda.device_count()} CUDA device(s) are visible")
    if v == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DancepipeError(f"{param} = {value!r} but MPS is not available here; use 'auto' or 'cpu'")
    return torch.device(v)

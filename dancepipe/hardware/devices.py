"""The one meaning of a ``device`` param, for every stage that has one.

Every decision here is a pure function of the param's value and of
:class:`MachineFacts` — what the machine reports (its CUDA devices and their compute
capability, the CPU's bf16 instructions, MPS) — so the table of cases is tested
without the hardware; :meth:`MachineFacts.from_torch` reads the real machine.

A device always resolves to a concrete one: ``auto`` and ``cuda`` become
``cuda:<local rank>`` (``cuda:0`` for one process) when a CUDA device is visible,
``auto`` is the CPU otherwise, and ``cuda:N`` is the first GPU of the job: the process
of local rank r uses ``cuda:N+r``. MPS is used only when asked for by name, by one
process. Asking for a device this machine lacks is a one-sentence error naming the
param, never a silent fallback to the CPU.
"""

from __future__ import annotations

import dataclasses
import re

import torch

from dancepipe.errors import DancepipeError

DEVICE_HELP = "auto, cpu, cuda, cuda:N or mps"
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda|cuda:\d+)$")


@dataclasses.dataclass(frozen=True)
class MachineFacts:
    """What this machine reports, the only input the device and precision decisions read."""

    cuda_capabilities: tuple[tuple[int, int], ...] = ()  # (major, minor) of each visible CUDA device, by index
    cpu_native_bf16: bool = False  # the CPU computes bf16 itself: AMX tiles or AVX512-BF16
    mps: bool = False  # Apple's Metal backend is available

    @property
    def cuda_count(self) -> int:
        return len(self.cuda_capabilities)

    @classmethod
    def from_torch(cls) -> MachineFacts:
        """The facts of the machine this process runs on, as torch reports them."""
        caps: tuple[tuple[int, int], ...] = ()
        if torch.cuda.is_available():
            caps = tuple(tuple(torch.cuda.get_device_capability(i)) for i in range(torch.cuda.device_count()))
        mps = getattr(torch.backends, "mps", None)
        return cls(
            cuda_capabilities=caps,
            cpu_native_bf16=_cpu_flag("_is_amx_tile_supported") or _cpu_flag("_is_avx512_bf16_supported"),
            mps=bool(mps is not None and mps.is_available()),
        )

    def describe_cuda(self) -> str:
        """``2 CUDA device(s)`` / ``no CUDA device``: what error sentences say the machine has."""
        return f"{self.cuda_count} CUDA device(s)" if self.cuda_count else "no CUDA device"


def _cpu_flag(name: str) -> bool:
    check = getattr(torch.cpu, name, None)  # private helpers: absent in some torch builds
    return bool(check is not None and check())


def check_device(value: str) -> str:
    """Validate a device param value (for pydantic validators): the value, trimmed and lower-cased.

    Raises ValueError (which pydantic turns into a one-sentence params error) otherwise.
    """
    v = str(value).strip().lower()
    if not _DEVICE.match(v):
        raise ValueError(f"must be one of {DEVICE_HELP}")
    return v


def choose_device(value: str, facts: MachineFacts, param: str = "device", local_rank: int = 0) -> torch.device:
    """The concrete device a param value names for the process of ``local_rank`` on a machine with ``facts``.

    ``param`` (e.g. ``train.device``) names the key in the error raised when the device
    is not there.
    """
    try:
        v = check_device(value)
    except ValueError as e:
        raise DancepipeError(f"{param} = {value!r}: {e}") from e
    if v == "cpu" or (v == "auto" and not facts.cuda_count):
        return torch.device("cpu")
    if v == "mps":
        if not facts.mps:
            raise DancepipeError(f"{param} = {value!r} but MPS (Apple GPUs) is not available here; use 'auto' or 'cpu'")
        if local_rank:
            raise DancepipeError(f"{param} = {value!r} is one device and cannot host local rank {local_rank}")
        return torch.device("mps")
    if not facts.cuda_count:
        raise DancepipeError(f"{param} = {value!r} but this machine has no CUDA device; use 'auto' or 'cpu'")
    first = int(v[5:]) if v.startswith("cuda:") else 0
    index = first + local_rank
    if index >= facts.cuda_count:
        who = f"local rank {local_rank} needs cuda:{index}" if local_rank else f"cuda:{index} is asked for"
        raise DancepipeError(f"{param} = {value!r}: {who} but this machine has {facts.describe_cuda()}")
    return torch.device("cuda", index)


def check_device_count(value: str, processes: int, facts: MachineFacts, param: str = "train.devices",
                       device_param: str = "train.device") -> None:
    """Refuse ``processes`` ranks on one machine that the device ``value`` cannot host.

    Each CUDA rank needs its own GPU (from the first one ``value`` names); the CPU hosts
    any number of (gloo) processes; MPS is one device.
    """
    first = choose_device(value, facts, device_param)
    if first.type == "cuda" and first.index + processes > facts.cuda_count:
        start = f" from cuda:{first.index}" if first.index else ""
        raise DancepipeError(f"{param} = {processes} needs {processes} CUDA device(s){start} "
                             f"but this machine has {facts.describe_cuda()}")
    if first.type == "mps" and processes > 1:
        raise DancepipeError(f"{param} = {processes} but {device_param} = {value!r} is a single device; use 1")


def resolve_device(value: str, param: str = "device", local_rank: int = 0) -> torch.device:
    """:func:`choose_device` on this machine (:meth:`MachineFacts.from_torch`)."""
    return choose_device(value, MachineFacts.from_torch(), param, local_rank)

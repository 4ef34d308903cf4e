"""What the CPU can do, read from the kernel (/proc/cpuinfo), independently of dancepipe and torch:
an oracle for the ``auto`` precision choices."""

from __future__ import annotations

from pathlib import Path

BF16_FLAGS = {"amx_tile", "avx512_bf16"}  # AMX tiles or AVX512-BF16: bf16 computed natively


def cpu_flags() -> set[str]:
    """The feature flags of the first CPU, from Linux's /proc/cpuinfo (the machines this project runs
    its tests on). Without them the oracle cannot answer, and the test asking fails saying so."""
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.is_file() else []
    for line in lines:
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    raise AssertionError(f"{info}: no CPU feature flags to check the bf16 choice against (Linux x86 expected)")


def cpu_has_native_bf16() -> bool:
    return bool(cpu_flags() & BF16_FLAGS)

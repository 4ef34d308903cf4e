"""What the CPU can do, read from the kernel (/proc/cpuinfo), independently of dancepipe and torch:
an oracle for the ``auto`` precision choices."""

from __future__ import annotations

from pathlib import Path

import pytest

BF16_FLAGS = {"amx_tile", "avx512_bf16"}  # AMX tiles or AVX512-BF16: bf16 computed natively


def cpu_flags() -> set[str]:
    """The feature flags of the first CPU; skips the calling test where /proc/cpuinfo is absent."""
    info = Path("/proc/cpuinfo")
    if not info.is_file():
        pytest.skip("no /proc/cpuinfo to read the CPU flags from")
    for line in info.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    pytest.skip("/proc/cpuinfo lists no flags")


def cpu_has_native_bf16() -> bool:
    return bool(cpu_flags() & BF16_FLAGS)

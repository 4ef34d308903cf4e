"""benchmarks/gpu_check.py: the path without CUDA and its pure helpers (the GPU path runs on a GPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from benchmarks.gpu_check import EXIT_NO_CUDA, images_per_s, mib, no_cuda_sentence

ROOT = Path(__file__).resolve().parents[1]


def test_without_cuda_it_says_so_in_one_sentence_and_exits_2():
    # CUDA hidden from the child, so the test means the same on a machine with a GPU
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == EXIT_NO_CUDA == 2
    out = done.stdout.strip()
    assert out.count("\n") == 0 and out.endswith(".") and out.count(". ") == 0
    assert "no CUDA GPU" in out and "make gpu-check" in out
    assert done.stderr == ""


def test_the_sentence_names_the_torch_build():
    assert "a CPU-only build" in no_cuda_sentence("2.5.0+cpu", None)
    assert "a CUDA 12.4 build" in no_cuda_sentence("2.5.0", "12.4")


def test_images_per_second_counts_two_frames_a_pair():
    assert images_per_s(batch=4, steps=10, seconds=2.0) == 40.0
    assert images_per_s(batch=1, steps=3, seconds=0.0) == 0.0
    assert mib(3 * 2**20) == "3 MiB" and mib(2**31) == "2,048 MiB"

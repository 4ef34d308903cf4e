"""The one device resolver every stage uses (dancepipe.hardware.devices)."""

from __future__ import annotations

import pytest
import torch

from dancepipe.errors import DancepipeError
from dancepipe.hardware.devices import check_device, resolve_device


@pytest.mark.parametrize("value, expected", [("auto", "auto"), ("CPU", "cpu"), (" cuda:1 ", "cuda:1"), ("mps", "mps")])
def test_check_device_accepts_the_documented_values(value, expected):
    assert check_device(value) == expected


@pytest.mark.parametrize("value", ["gpu", "cuda:", "cuda:x", "tpu", ""])
def test_check_device_rejects_anything_else(value):
    with pytest.raises(ValueError, match="auto, cpu, cuda, cuda:N or mps"):
        check_device(value)


def test_auto_is_cuda_exactly_when_a_gpu_is_visible():
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")


def test_a_missing_device_is_an_error_naming_the_param_not_a_cpu_fallback():
    n = torch.cuda.device_count()
    with pytest.raises(DancepipeError, match=rf"render.device = 'cuda:{n}' but "):
        resolve_device(f"cuda:{n}", "render.device")
    with pytest.raises(DancepipeError, match=r"poses.device = 'gpu': must be one of"):
        resolve_device("gpu", "poses.device")
    if not torch.cuda.is_available():
        with pytest.raises(DancepipeError, match=r"train.device = 'cuda' but no CUDA device is visible"):
            resolve_device("cuda", "train.device")

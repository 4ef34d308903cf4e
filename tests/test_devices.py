"""Device and precision decisions (dancepipe.hardware.devices, .precision) on simulated machines.

Each machine is a :class:`MachineFacts` written out by hand, so the table of cases runs
without any GPU and every expected value is a literal fact, not a recomputation.
"""

from __future__ import annotations

import pytest
import torch

from dancepipe.errors import DancepipeError
from dancepipe.hardware.devices import MachineFacts, check_device, check_device_count, choose_device
from dancepipe.hardware.precision import choose_precision, native_bf16
from tests.cpuinfo import cpu_has_native_bf16

CPU_ONLY = MachineFacts()  # an fp32-only CPU, no GPU
ZEN4 = MachineFacts(cpu_native_bf16=True)  # a CPU with AVX512-BF16 (or AMX), no GPU
T4 = MachineFacts(cuda_capabilities=((7, 5),))  # Turing: fp16 tensor cores, no bf16
V100 = MachineFacts(cuda_capabilities=((7, 0),))
A100 = MachineFacts(cuda_capabilities=((8, 0),))
FOUR_A100 = MachineFacts(cuda_capabilities=((8, 0),) * 4)
TWO_V100 = MachineFacts(cuda_capabilities=((7, 0),) * 2)
PASCAL = MachineFacts(cuda_capabilities=((6, 1),))  # GTX 10xx: no tensor cores
MAC = MachineFacts(mps=True)


def cuda(i: int) -> torch.device:
    return torch.device("cuda", i)


@pytest.mark.parametrize("value, expected", [("auto", "auto"), ("CPU", "cpu"), (" cuda:1 ", "cuda:1"), ("mps", "mps")])
def test_check_device_accepts_the_documented_values(value, expected):
    assert check_device(value) == expected


@pytest.mark.parametrize("value", ["gpu", "cuda:", "cuda:x", "tpu", ""])
def test_check_device_rejects_anything_else(value):
    with pytest.raises(ValueError, match="auto, cpu, cuda, cuda:N or mps"):
        check_device(value)


# --- which device --------------------------------------------------------------------------------

@pytest.mark.parametrize("value, facts, local_rank, expected", [
    ("auto", CPU_ONLY, 0, torch.device("cpu")),
    ("auto", MAC, 0, torch.device("cpu")),  # MPS only by name
    ("cpu", A100, 0, torch.device("cpu")),
    ("cpu", CPU_ONLY, 3, torch.device("cpu")),  # several gloo processes on one CPU
    # one GPU, no index: always a concrete device (torch.cuda.set_device refuses bare "cuda")
    ("auto", A100, 0, cuda(0)),
    ("cuda", A100, 0, cuda(0)),
    ("cuda:0", A100, 0, cuda(0)),
    ("cuda:1", TWO_V100, 0, cuda(1)),
    # four GPUs, one process each: every rank its own GPU, whatever the param says
    ("auto", FOUR_A100, 2, cuda(2)),
    ("cuda", FOUR_A100, 3, cuda(3)),
    ("cuda:0", FOUR_A100, 1, cuda(1)),
    ("cuda:0", FOUR_A100, 3, cuda(3)),
    ("cuda:2", FOUR_A100, 1, cuda(3)),  # cuda:N is the job's first GPU
    ("mps", MAC, 0, torch.device("mps")),
])
def test_choose_device(value, facts, local_rank, expected):
    dev = choose_device(value, facts, "train.device", local_rank)
    assert dev == expected
    assert dev.type != "cuda" or dev.index is not None


def test_four_gpus_and_cuda_0_with_devices_4_give_each_rank_its_own_gpu():
    check_device_count("cuda:0", 4, FOUR_A100)  # fits: no error
    assert [choose_device("cuda:0", FOUR_A100, "train.device", r) for r in range(4)] == [cuda(0), cuda(1), cuda(2),
                                                                                          cuda(3)]


@pytest.mark.parametrize("value, facts, local_rank, message", [
    ("cuda", CPU_ONLY, 0, "train.device = 'cuda' but this machine has no CUDA device; use 'auto' or 'cpu'"),
    ("cuda:1", CPU_ONLY, 0, "train.device = 'cuda:1' but this machine has no CUDA device; use 'auto' or 'cpu'"),
    ("mps", CPU_ONLY, 0, "train.device = 'mps' but MPS (Apple GPUs) is not available here; use 'auto' or 'cpu'"),
    ("cuda:1", A100, 0, "train.device = 'cuda:1': cuda:1 is asked for but this machine has 1 CUDA device(s)"),
    ("auto", TWO_V100, 2, "train.device = 'auto': local rank 2 needs cuda:2 but this machine has 2 CUDA device(s)"),
    ("mps", MAC, 1, "train.device = 'mps' is one device and cannot host local rank 1"),
    ("gpu", A100, 0, "train.device = 'gpu': must be one of auto, cpu, cuda, cuda:N or mps"),
])
def test_a_missing_device_is_one_sentence_naming_the_param(value, facts, local_rank, message):
    with pytest.raises(DancepipeError) as e:
        choose_device(value, facts, "train.device", local_rank)
    assert str(e.value) == message


@pytest.mark.parametrize("value, n, facts, message", [
    ("auto", 4, TWO_V100, "train.devices = 4 needs 4 CUDA device(s) but this machine has 2 CUDA device(s)"),
    ("cuda:2", 4, FOUR_A100, "train.devices = 4 needs 4 CUDA device(s) from cuda:2 but this machine has 4 CUDA "
                             "device(s)"),
    ("cuda", 4, CPU_ONLY, "train.device = 'cuda' but this machine has no CUDA device; use 'auto' or 'cpu'"),
    ("mps", 2, MAC, "train.devices = 2 but train.device = 'mps' is a single device; use 1"),
])
def test_more_devices_than_the_machine_has_is_one_sentence(value, n, facts, message):
    with pytest.raises(DancepipeError) as e:
        check_device_count(value, n, facts)
    assert str(e.value) == message


@pytest.mark.parametrize("value, n, facts", [("auto", 4, CPU_ONLY), ("cpu", 8, A100), ("auto", 4, FOUR_A100),
                                             ("cuda:1", 1, TWO_V100)])
def test_device_counts_the_machine_can_host(value, n, facts):
    check_device_count(value, n, facts)


# --- which precision -----------------------------------------------------------------------------

@pytest.mark.parametrize("value, device, facts, expected", [
    # auto: bf16 where native, fp16 on older tensor-core GPUs, fp32 elsewhere
    ("auto", "cpu", ZEN4, "bf16"),
    ("auto", "cpu", CPU_ONLY, "fp32"),
    ("auto", "cuda:0", A100, "bf16"),
    ("auto", "cuda:0", V100, "fp16"),
    ("auto", "cuda:0", T4, "fp16"),
    ("auto", "cuda:0", PASCAL, "fp32"),
    ("auto", "cuda:3", FOUR_A100, "bf16"),
    ("auto", "mps", MAC, "fp32"),
    ("auto", "cuda:1", MachineFacts(cuda_capabilities=((7, 0), (9, 0))), "bf16"),  # asks about the device passed
    ("auto", "cuda:0", MachineFacts(cuda_capabilities=((7, 0), (9, 0))), "fp16"),
    # explicit choices the device runs
    ("fp32", "cuda:0", A100, "fp32"),
    ("off", "cpu", ZEN4, "fp32"),  # train.amp's word for fp32
    ("bf16", "cuda:0", A100, "bf16"),
    ("bf16", "cpu", ZEN4, "bf16"),
    ("bf16", "cpu", CPU_ONLY, "bf16"),  # emulated by PyTorch: slower, same arithmetic
    ("fp16", "cuda:0", A100, "fp16"),
    ("fp16", "cuda:0", V100, "fp16"),
])
def test_choose_precision(value, device, facts, expected):
    assert choose_precision(value, device, facts, "train.amp") == expected


@pytest.mark.parametrize("value, device, facts, message", [
    ("bf16", "cuda:0", V100, "train.amp = 'bf16' but cuda:0 has compute capability 7.0 and bf16 needs 8.0 (Ampere) "
                             "or newer; use 'fp16' or 'auto'"),
    ("bf16", "cuda:1", MachineFacts(cuda_capabilities=((8, 6), (7, 5))),
     "train.amp = 'bf16' but cuda:1 has compute capability 7.5 and bf16 needs 8.0 (Ampere) or newer; use 'fp16' "
     "or 'auto'"),
    ("bf16", "mps", MAC, "train.amp = 'bf16' but mps has no bf16 autocast (cpu and cuda do); use 'auto'"),
    ("fp16", "cpu", ZEN4, "train.amp = 'fp16' but this stage runs on cpu, and fp16 autocast is for CUDA GPUs; "
                          "use 'auto'"),
    ("fp16", "mps", MAC, "train.amp = 'fp16' but this stage runs on mps, and fp16 autocast is for CUDA GPUs; "
                         "use 'auto'"),
    ("half", "cpu", ZEN4, "train.amp = 'half' is not one of auto, fp32, bf16, fp16"),
])
def test_a_precision_the_device_cannot_run_is_one_sentence(value, device, facts, message):
    with pytest.raises(DancepipeError) as e:
        choose_precision(value, device, facts, "train.amp")
    assert str(e.value) == message


def test_native_bf16_is_about_the_device_passed_not_the_current_one():
    mixed = MachineFacts(cuda_capabilities=((7, 5), (8, 9)))
    assert (native_bf16("cuda:0", mixed), native_bf16("cuda:1", mixed)) == (False, True)
    assert native_bf16("cpu", ZEN4) and not native_bf16("cpu", CPU_ONLY)
    assert not native_bf16("mps", MAC) and not native_bf16("meta", ZEN4)


def test_this_machine_s_facts_match_its_kernel():
    # the oracle is the kernel's CPU flags (/proc/cpuinfo), not torch's probe that from_torch reads
    facts = MachineFacts.from_torch()
    assert facts.cpu_native_bf16 == cpu_has_native_bf16()
    assert choose_precision("auto", "cpu", facts, "poses.precision") == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert choose_device("cpu", facts) == torch.device("cpu")

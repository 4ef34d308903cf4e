"""Distributed helpers, all in one place: init, rank, world size, print0, barrier, DDP wrapping.

The training loop never reads the environment. The stage calls
:func:`context_from_env` (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT) and hands the resulting :class:`DistContext` to the loop; tests build one
directly. A single process is simply a context with ``world_size == 1`` and no process
group.

Two ways to run several processes: the train stage relaunches itself under
``torchrun --standalone`` for ``train.devices`` > 1 on one machine
(:func:`torchrun_command`), or the user starts it under their own ``torchrun`` on each of
several machines (``--nnodes``, a rendezvous endpoint); the stage sees the launcher's
environment (:func:`under_launcher`) and joins that job instead. Each process then
uses the device of its *local* rank (:func:`device_for`): rank 5 of a job with 4 GPUs
per machine is ``cuda:1`` of the second machine.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from collections.abc import Mapping
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from dancepipe.errors import DancepipeError
from dancepipe.hardware.devices import MachineFacts, choose_device


@dataclasses.dataclass(frozen=True)
class DistContext:
    """Who this process is in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


SINGLE = DistContext()


def context_from_env(env: Mapping[str, str] | None = None) -> DistContext:
    """The context torchrun describes in the environment (single process when absent)."""
    env = os.environ if env is None else env
    if "WORLD_SIZE" not in env:
        return SINGLE
    return DistContext(int(env.get("RANK", "0")), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0")))


def under_launcher(env: Mapping[str, str] | None = None) -> bool:
    """True when this process was started by torchrun (or another launcher setting WORLD_SIZE)."""
    env = os.environ if env is None else env
    return "WORLD_SIZE" in env


def device_for(ctx: DistContext, value: str, param: str, facts: MachineFacts | None = None) -> torch.device:
    """This rank's device for a device param value, made the current CUDA device when it is one.

    The choice is :func:`~dancepipe.hardware.devices.choose_device` at the context's
    local rank (always with an index: ``cuda`` → ``cuda:<local_rank>``, ``cuda:N`` →
    ``cuda:N+local_rank``). ``facts`` defaults to this machine's.
    """
    facts = MachineFacts.from_torch() if facts is None else facts
    dev = choose_device(value, facts, param, ctx.local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return dev


def init(ctx: DistContext, device: torch.device, init_method: str = "env://", timeout_s: float = 600) -> None:
    """Join the process group (nccl on CUDA, gloo on CPU); nothing to do for one process."""
    if not ctx.distributed or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    try:
        dist.init_process_group(backend, init_method=init_method, rank=ctx.rank, world_size=ctx.world_size,
                                timeout=timedelta(seconds=timeout_s))
    except (RuntimeError, ValueError) as e:
        raise DancepipeError(f"train.devices: could not start the {backend} process group ({e})") from e


def shutdown() -> None:
    """Leave the process group if one was joined."""
    if dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def barrier() -> None:
    """Wait for every rank (no-op for a single process)."""
    if dist.is_initialized():
        dist.barrier()


def print0(*args: object, **kwargs: object) -> None:
    """``print`` on rank 0 only."""
    if rank() == 0:
        print(*args, **kwargs)  # noqa: T201


def broadcast_object(obj: object, src: int = 0) -> object:
    """Rank ``src``'s ``obj`` on every rank."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: object) -> list[object]:
    """Every rank's ``obj``, in rank order (``[obj]`` for a single process)."""
    if not dist.is_initialized():
        return [obj]
    out: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over ranks (for logging losses)."""
    if not dist.is_initialized():
        return x
    y = x.detach().clone()
    dist.all_reduce(y)
    return y / dist.get_world_size()


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``module`` when a process group is up, else ``module``."""
    if not dist.is_initialized():
        return module
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def torchrun_command(nproc: int, script: str, args: list[str]) -> list[str]:
    """The command that relaunches ``script args`` under torchrun with ``nproc`` processes on this machine.

    ``--standalone`` (a local rendezvous on a free port) is right for this self-launch
    only; a job over several machines is started by the user's own torchrun, which the
    stage detects (:func:`under_launcher`) and joins without relaunching.
    """
    exe = shutil.which("torchrun")
    launcher = [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]
    return [*launcher, "--standalone", f"--nproc_per_node={nproc}", script, *args]

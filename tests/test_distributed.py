"""DDP on CPU: two gloo processes stay in lockstep and match one process on the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp

from dancepipe.errors import DancepipeError
from dancepipe.hardware import distributed as du
from dancepipe.hardware.devices import MachineFacts
from dancepipe.model.dataset import PairBatches, load_training_data, to_model_range
from dancepipe.model.train import TrainConfig, Trainer, check_devices, resolve_switches
from tests.fixtures.train import TINY_TRAIN, write_clip

STEPS = 4
REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _params(trainer: Trainer) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in (*trainer.g.parameters(), *trainer.d.parameters())])


def _train(cfg: TrainConfig, frames: Path, labels: Path, ctx: du.DistContext) -> torch.Tensor:
    device = torch.device("cpu")
    data = load_training_data(frames, labels, cfg.holdout_fraction)
    trainer = Trainer(cfg, device, resolve_switches(cfg, device), None, ctx)
    for batch in PairBatches(data, 0, STEPS, cfg.batch_size, cfg.seed, ctx.rank, ctx.world_size):
        trainer.train_step(*(to_model_range(x, device, torch.contiguous_format) for x in batch))
    return _params(trainer)


def _worker(rank: int, world: int, port: int, root: str) -> None:
    torch.set_num_threads(1)
    ctx = du.DistContext(rank=rank, world_size=world, local_rank=rank)
    du.init(ctx, torch.device("cpu"), init_method=f"tcp://127.0.0.1:{port}", timeout_s=120)
    try:
        assert du.rank() == rank and du.world_size() == world
        cfg = TrainConfig(**{**TINY_TRAIN, "batch_size": 1, "num_d": 2, "lr": 1e-3, "amp": "off"})
        params = _train(cfg, Path(root) / "frames", Path(root) / "labels", ctx)
        gathered = [torch.empty_like(params) for _ in range(world)]
        torch.distributed.all_gather(gathered, params)
        if du.rank() == 0:
            torch.save(torch.stack(gathered), Path(root) / "ddp_params.pt")
    finally:
        du.shutdown()


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path) -> None:
    root = tmp_path / "clip"
    write_clip(root, n=12)
    mp.spawn(_worker, args=(2, _free_port(), str(root)), nprocs=2, join=True)
    per_rank = torch.load(root / "ddp_params.pt", weights_only=True)
    # both replicas hold exactly the same parameters after several steps
    assert torch.equal(per_rank[0], per_rank[1])
    # one process with the same global batch (2 = 2 ranks x 1) reaches the same parameters
    # (both in fp32: this checks gradient averaging, and bf16 rounds batches of 1 and 2 differently)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = TrainConfig(**{**TINY_TRAIN, "batch_size": 2, "num_d": 2, "lr": 1e-3, "amp": "off"})
        single = _train(cfg, root / "frames", root / "labels", du.SINGLE)
    finally:
        torch.set_num_threads(old)
    init = Trainer(cfg, torch.device("cpu"), resolve_switches(cfg, torch.device("cpu")), None)
    moved = (single - _params(init)).abs().max()
    diff = (per_rank[0] - single).abs().max()
    print(f"max parameter change {moved:.2e}, max DDP vs single-process difference {diff:.2e}")
    assert moved > 2e-3  # training really changed the weights, so the comparison means something
    torch.testing.assert_close(per_rank[0], single, rtol=0, atol=2e-5)


def test_context_from_env_and_torchrun_command() -> None:
    assert du.context_from_env({}) == du.SINGLE
    assert not du.under_launcher({})
    ctx = du.context_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.is_main, ctx.distributed) == (3, 4, 1, False, True)
    cmd = du.torchrun_command(2, "stages/train.py", ["--out", "x.pt"])
    assert cmd[-4:] == ["--nproc_per_node=2", "stages/train.py", "--out", "x.pt"]
    assert "--standalone" in cmd


# --- device decisions on simulated machines (no GPU needed) ---------------------------------------

ONE_GPU = MachineFacts(cuda_capabilities=((8, 0),))
FOUR_GPUS = MachineFacts(cuda_capabilities=((8, 0),) * 4)


def cuda(i: int) -> torch.device:
    return torch.device("cuda", i)


@pytest.fixture
def set_device(monkeypatch) -> list[torch.device]:
    """torch.cuda.set_device recorded instead of called; like the real one, it refuses a device without index."""
    calls: list[torch.device] = []

    def fake(device: torch.device | str | int) -> None:
        dev = torch.device(device)
        if dev.index is None:
            raise ValueError(f"Expected a torch.device with a specified index or an integer, but got: {device}")
        calls.append(dev)

    monkeypatch.setattr(torch.cuda, "set_device", fake)
    return calls


@pytest.mark.parametrize("value", ["auto", "cuda", "cuda:0"])
def test_one_gpu_without_an_index_is_cuda_0_not_a_crash(set_device, value) -> None:
    assert du.device_for(du.SINGLE, value, "train.device", ONE_GPU) == cuda(0)
    assert set_device == [cuda(0)]


def test_four_gpus_and_cuda_0_put_each_rank_on_its_own_gpu(set_device) -> None:
    check_devices(TrainConfig(device="cuda:0", devices=4), FOUR_GPUS)
    for r in range(4):
        assert du.device_for(du.DistContext(rank=r, world_size=4, local_rank=r), "cuda:0", "train.device",
                             FOUR_GPUS) == cuda(r)
    assert set_device == [cuda(0), cuda(1), cuda(2), cuda(3)]


def test_second_node_under_torchrun_uses_its_local_rank(set_device) -> None:
    env = {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "node0", "MASTER_PORT": "29500"}
    assert du.under_launcher(env)
    ctx = du.context_from_env(env)
    assert (ctx.rank, ctx.local_rank, ctx.is_main) == (5, 1, False)
    assert du.device_for(ctx, "auto", "train.device", FOUR_GPUS) == cuda(1)  # not cuda:5
    assert du.device_for(ctx, "cpu", "train.device", FOUR_GPUS) == torch.device("cpu")
    # two processes on each of two 4-GPU machines: global rank 3 is the second process of the second
    ctx = du.context_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert du.device_for(ctx, "cuda", "train.device", FOUR_GPUS) == cuda(1)  # not cuda:3
    assert set_device == [cuda(1), cuda(1)]


def test_check_devices_refuses_before_any_process_starts() -> None:
    with pytest.raises(DancepipeError, match=r"^train.devices = 4 needs 4 CUDA device\(s\) but this machine has 2 "):
        check_devices(TrainConfig(devices=4), MachineFacts(cuda_capabilities=((8, 0),) * 2))
    with pytest.raises(DancepipeError, match=r"^train.amp = 'bf16' but cuda:0 has compute capability 7.5"):
        check_devices(TrainConfig(devices=2, amp="bf16"), MachineFacts(cuda_capabilities=((7, 5),) * 2))
    with pytest.raises(DancepipeError, match=r"^train.device = 'cuda' but this machine has no CUDA device"):
        check_devices(TrainConfig(device="cuda"), MachineFacts())
    check_devices(TrainConfig(devices=4), FOUR_GPUS)
    check_devices(TrainConfig(devices=3, device="cpu"), MachineFacts())


def test_ranks_that_choose_different_precisions_stop_with_one_sentence(monkeypatch) -> None:
    from dancepipe.model import train as train_mod

    monkeypatch.setattr(du, "all_gather_object", lambda obj: ["bf16", "bf16", "fp16", "fp16"])
    with pytest.raises(DancepipeError, match=r"train.amp = 'auto' gives different precisions on different ranks "
                                             r"\(rank 0: bf16, rank 1: bf16, rank 2: fp16, rank 3: fp16\)"):
        train_mod._check_same_precision(TrainConfig(), "fp16")
    monkeypatch.setattr(du, "all_gather_object", lambda obj: ["fp16", "fp16"])
    train_mod._check_same_precision(TrainConfig(), "fp16")


def test_a_rank_that_cannot_see_rank_0_s_checkpoint_says_shared_storage(tmp_path, monkeypatch) -> None:
    """Rank 0 alone lists the checkpoints; a rank on another machine without shared storage
    cannot load the one it picked, and says so instead of a missing-file error."""
    from dancepipe.model import train as train_mod

    frames, labels = write_clip(tmp_path / "clip", n=12)
    monkeypatch.setattr(train_mod, "_resume_point", lambda *args: 2)  # what rank 0 broadcast
    ctx = du.DistContext(rank=1, world_size=2, local_rank=1)
    with pytest.raises(DancepipeError, match=r"rank 1 cannot see step 2, which rank 0 resumes from; training on "
                                             r"several machines needs the checkpoints on shared storage"):
        train_mod.run_training(TrainConfig(**{**TINY_TRAIN, "device": "cpu"}), frames, labels, tmp_path / "g.pt",
                               tmp_path / "ck", tmp_path / "live", ctx=ctx)
    assert not (tmp_path / "g.pt").exists()


def test_cuda_rng_state_is_this_rank_s_gpu_only(monkeypatch) -> None:
    """Rank 0 saves its own GPU's generator; each rank restores it into its own GPU (a host with
    fewer GPUs than rank 0's must not be asked for all of them)."""
    trainer = Trainer(TrainConfig(**TINY_TRAIN), torch.device("cpu"),
                      resolve_switches(TrainConfig(**TINY_TRAIN), torch.device("cpu")), None)
    assert "cuda" not in trainer.training_state()["rng"]  # a CPU run has no CUDA generator to save
    calls: list[tuple] = []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: torch.tensor([7, int(device.index)]))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: calls.append((state.tolist(), device)))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: calls.append(("all", len(states))))
    trainer.device = cuda(3)  # as if it ran on its host's fourth GPU
    state = trainer.training_state()
    assert state["rng"]["cuda"].tolist() == [7, 3]
    trainer.device = cuda(0)  # resumed by a rank on a one-GPU host
    trainer.restore(trainer.weights(), state, Path("x"))
    assert calls == [([7, 3], cuda(0))]
    calls.clear()  # a file from before: every GPU of rank 0's host, skipped rather than failing here
    trainer.restore(trainer.weights(), {**state, "rng": {**state["rng"], "cuda": [torch.zeros(2)] * 4}}, Path("x"))
    assert calls == []


def test_compile_compiles_g_only() -> None:
    """D's requires_grad flips twice a step; compiled, it would be specialised per state (see Trainer)."""
    cfg = TrainConfig(**{**TINY_TRAIN, "compile": True})
    trainer = Trainer(cfg, torch.device("cpu"), resolve_switches(cfg, torch.device("cpu")), None)
    assert isinstance(trainer.pair_g, torch._dynamo.eval_frame.OptimizedModule)
    assert trainer.d_plain is trainer.d and trainer.ddp_d is trainer.d


def _stage_params(path: Path, **train) -> Path:
    import yaml

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"].update({**TINY_TRAIN, **train})
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.slow
def test_stage_with_two_devices_runs_torchrun_and_only_rank_0_writes(tmp_path) -> None:
    """``train.devices: 2`` on CPU: the stage relaunches itself under torchrun (two gloo ranks).
    Every output is written once, by rank 0, and the generator is the one a single process
    reaches with the same global batch."""
    from dancepipe.model.checkpoint import list_checkpoints, load_generator
    from dancepipe.model.train import run_training

    frames, labels = write_clip(tmp_path / "clip", n=12)
    common = {"steps": STEPS, "checkpoint_every": 2, "sample_every": 2, "num_d": 2, "lr": 1e-3, "amp": "off",
              "device": "cpu"}
    params = _stage_params(tmp_path / "params.yaml", devices=2, batch_size=1, **common)
    run = tmp_path / "run"
    cmd = [sys.executable, str(REPO / "stages" / "train.py"), "--frames", str(frames), "--labels", str(labels),
           "--out", str(run / "generator.pt"), "--checkpoints", str(run / "ck"), "--logdir", str(run / "live"),
           "--params", str(params)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summaries = [line for line in done.stdout.splitlines() if line.startswith("train: ")]
    assert len(summaries) == 1 and f"train: {STEPS} steps on 2 process(es)" in summaries[0], done.stdout
    # each output exists once and nothing half-written is left
    assert sorted(p.name for p in run.iterdir()) == ["ck", "generator.pt", "live"]
    assert not [p for p in run.rglob("*") if ".tmp-" in p.name]
    assert list_checkpoints(run / "ck") == [2]
    metrics = json.loads((run / "live" / "metrics.json").read_text())
    assert metrics["step"] == STEPS
    for tsv in (run / "live" / "plots" / "metrics").glob("*.tsv"):
        steps = pd.read_csv(tsv, sep="\t")["step"].tolist()
        assert steps == list(range(1, STEPS + 1)), (tsv.name, steps)  # one row per step: one writer
    grids = sorted(p.name for p in (run / "live" / "plots" / "images" / "samples").iterdir())
    assert grids == ["step_000002.png", "step_000004.png"]
    g, meta = load_generator(run / "generator.pt")
    assert (meta["step"], meta["train"]["world_size"], meta["train"]["global_batch"]) == (STEPS, 2, 2)
    # one process, batch 2 = 2 ranks x 1: the same weights
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from dancepipe.model.train import TrainConfig

        single = run_training(TrainConfig(**{**TINY_TRAIN, **common, "batch_size": 2}), frames, labels,
                              tmp_path / "single" / "generator.pt", tmp_path / "single" / "ck",
                              tmp_path / "single" / "live")
    finally:
        torch.set_num_threads(old)
    assert single.step == STEPS
    g_single, _ = load_generator(tmp_path / "single" / "generator.pt")
    for (k, a), b in zip(g.state_dict().items(), g_single.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=2e-5, msg=k)

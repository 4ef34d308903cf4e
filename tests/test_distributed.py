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

from dancepipe.hardware import distributed as du
from dancepipe.model.dataset import PairBatches, load_training_data, to_model_range
from dancepipe.model.train import TrainConfig, Trainer, resolve_switches
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
    ctx = du.context_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.is_main, ctx.distributed) == (3, 4, 1, False, True)
    cmd = du.torchrun_command(2, "stages/train.py", ["--out", "x.pt"])
    assert cmd[-4:] == ["--nproc_per_node=2", "stages/train.py", "--out", "x.pt"]
    assert "--standalone" in cmd


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

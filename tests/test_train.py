"""The training loop, its data split and schedule, resume, and the train stage CLI."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from dancepipe.errors import DancepipeError
from dancepipe.hardware.devices import MachineFacts
from dancepipe.model.checkpoint import list_checkpoints, load_generator
from dancepipe.model.dataset import batch_indices, load_training_data, split_point
from dancepipe.model.networks import generate_frames
from dancepipe.model.train import (
    TrainConfig,
    Trainer,
    ema_beta,
    lr_at,
    mean_abs_error,
    resolve_switches,
    run_training,
)
from tests.cpuinfo import cpu_has_native_bf16
from tests.fixtures.train import TINY_TRAIN, write_clip

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks: one thread is faster on 2 loaded cores


@pytest.fixture
def clip(tmp_path) -> tuple[Path, Path]:
    return write_clip(tmp_path / "clip", n=12)


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{**TINY_TRAIN, **kw})


# --- pure pieces -------------------------------------------------------------------------------

@pytest.mark.parametrize(("steps", "decay_start", "expected"), [
    # worked by hand: constant for the first floor(decay_start * steps) updates, then a straight
    # line that would reach 0 one update after the last (lr * remaining / decay length)
    (10, 0.5, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.8, 0.6, 0.4, 0.2]),
    (8, 0.25, [1.0, 1.0, 1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6]),
    (5, 0.0, [1.0, 0.8, 0.6, 0.4, 0.2]),
    (4, 1.0, [1.0, 1.0, 1.0, 1.0]),  # decay_start 1: no decay at all
])
def test_lr_schedule_hand_computed_values(steps: int, decay_start: float, expected: list[float]) -> None:
    cfg = _cfg(steps=steps, decay_start=decay_start, lr=2e-3)
    np.testing.assert_allclose([lr_at(s, cfg) for s in range(steps)], [2e-3 * e for e in expected],
                               rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 500), st.floats(0, 1))
def test_lr_is_constant_then_decays_linearly_to_zero(steps: int, decay_start: float) -> None:
    """Shape, not formula: the rate stays at lr through update ``start``, the ``decay_start`` share of the steps
    rounded down, then falls by equal amounts to reach 0 at update ``steps`` (one past the last); every update
    trains, at a rate in (0, lr]."""
    cfg = _cfg(steps=steps, decay_start=decay_start, lr=1e-3)
    lrs = np.array([lr_at(s, cfg) for s in range(steps + 1)])
    assert ((lrs[:steps] > 0) & (lrs[:steps] <= cfg.lr)).all()
    below = np.flatnonzero(lrs < cfg.lr)
    start = below[0] - 1 if len(below) else steps  # the last update at full rate
    assert start >= 0 and (lrs[:start + 1] == cfg.lr).all()
    assert start <= decay_start * steps < start + 1
    if start < steps:
        assert lrs[steps] == pytest.approx(0, abs=1e-15)
        drops = -np.diff(lrs[start:])
        np.testing.assert_allclose(drops, drops[0], rtol=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 9), st.integers(0, 3))
def test_batches_cover_each_epoch_once(n_pairs: int, batch: int, seed: int) -> None:
    epochs = 3
    steps = -(-epochs * n_pairs // batch)
    stream = np.concatenate([batch_indices(s, batch, n_pairs, seed) for s in range(steps)])
    assert all(len(batch_indices(s, batch, n_pairs, seed)) == batch for s in range(steps))
    for e in range(epochs):
        assert sorted(stream[e * n_pairs:(e + 1) * n_pairs].tolist()) == list(range(n_pairs))


def test_split_keeps_the_tail_out_and_skips_frames_without_a_person(tmp_path) -> None:
    person = [True] * 20
    person[5] = False
    frames, labels = write_clip(tmp_path, n=20, person=person)
    data = load_training_data(frames, labels, holdout_fraction=0.25)
    assert data.n_train == split_point(20, 0.25) == 15
    assert data.split == {"train_frames": list(range(15)), "holdout_frames": list(range(15, 20))}
    # pairs (i, i+1) lie inside the training part and never touch frame 5
    assert data.pairs.max() + 1 < 15
    assert 4 not in data.pairs and 5 not in data.pairs
    assert len(data.pairs) == 14 - 2
    assert data.labels.dtype == torch.uint8 and data.images.shape == (20, 3, 32, 48)


def test_pairs_with_gaps_skip_person_less_ends_and_missing_frames(tmp_path) -> None:
    person = [True] * 20
    person[5] = False
    frames, labels = write_clip(tmp_path, n=20, person=person)
    data = load_training_data(frames, labels, holdout_fraction=0.25, max_gap=3)
    got = sorted(zip(data.pairs.tolist(), (data.pairs + data.gaps).tolist(), strict=True))
    # worked by hand: every (i, i+g) with i+g < 15 whose ends both show a person; the
    # person-less frame 5 may lie between the ends, as in (4, 6)
    want = sorted((i, i + g) for g in (1, 2, 3) for i in range(15 - g) if 5 not in (i, i + g))
    assert got == want and len(want) == 12 + 11 + 10 and (4, 6) in got
    assert load_training_data(frames, labels, holdout_fraction=0.25).gaps is None
    # a frame missing from the clip breaks every pair across it
    (frames / "000008.jpg").unlink()
    fdf = pd.read_parquet(frames / "index.parquet")
    fdf[fdf["frame"] != 8].to_parquet(frames / "index.parquet", index=False)
    ldf = pd.read_parquet(labels / "index.parquet")
    ldf[ldf["frame"] != 8].to_parquet(labels / "index.parquet", index=False)
    data = load_training_data(frames, labels, holdout_fraction=0.25, max_gap=3)
    ends = [(data.frames[i], data.frames[i + g]) for i, g in zip(data.pairs, data.gaps, strict=True)]
    assert not [e for e in ends if e[0] < 8 < e[1]] and (9, 12) in ends


def test_batches_serve_each_pair_with_its_gap(tmp_path) -> None:
    from dancepipe.model.dataset import PairBatches

    data = load_training_data(*write_clip(tmp_path, n=12), holdout_fraction=0.0, max_gap=4)
    for step in range(6):
        idx = batch_indices(step, 3, len(data.pairs), seed=0)
        label_t, label_t1, img_t, img_t1 = PairBatches(data, 0, 6, batch_size=3, seed=0).batch(step)
        first, second = data.pairs[idx], data.pairs[idx] + data.gaps[idx]
        assert torch.equal(label_t, data.labels[first]) and torch.equal(img_t1, data.images[second])
        assert torch.equal(label_t1, data.labels[second]) and torch.equal(img_t, data.images[first])
    assert sorted(set(data.gaps.tolist())) == [1, 2, 3, 4]


def test_too_short_clip_is_a_clear_error(tmp_path) -> None:
    frames, labels = write_clip(tmp_path, n=4)
    with pytest.raises(DancepipeError, match="clip too short to train on"):
        load_training_data(frames, labels, holdout_fraction=0.1)


def test_config_errors_name_the_key_and_the_choices(tmp_path) -> None:
    from dancepipe.config import build_config

    with pytest.raises(DancepipeError, match="'train.gan_loss'.*'lsgan' or 'hinge'"):
        build_config(TrainConfig, {"gan_loss": "wgan"}, section="train")
    with pytest.raises(DancepipeError, match="unknown key 'train.ngff'"):
        build_config(TrainConfig, {"ngff": 3}, section="train")


def test_auto_switches_on_cpu() -> None:
    sw = resolve_switches(TrainConfig(), torch.device("cpu"))
    assert (sw.channels_last, sw.compile, sw.workers, sw.pin_memory) == (False, False, 0, False)
    # bf16 only where the CPU has AMX or AVX512-BF16 (the kernel's flags are the oracle)
    assert sw.precision == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert resolve_switches(TrainConfig(amp="off"), torch.device("cpu")).precision == "fp32"
    sw = resolve_switches(TrainConfig(amp="bf16", channels_last=True, workers=1), torch.device("cpu"))
    assert sw.precision == "bf16" and sw.channels_last and sw.workers == 1
    # the decision reads the machine's facts: a V100 gets fp16, with the other CUDA defaults
    sw = resolve_switches(TrainConfig(), torch.device("cuda", 0), MachineFacts(cuda_capabilities=((7, 0),)))
    assert (sw.precision, sw.channels_last, sw.workers, sw.pin_memory) == ("fp16", True, 2, True)


def test_fp16_training_uses_a_gradient_scaler(clip, monkeypatch) -> None:
    """fp16 is for CUDA, but its path runs on CPU when the decision is forced: autocast to fp16,
    both losses scaled and both steps taken through their scalers, losses close to fp32's."""
    device = torch.device("cpu")
    data = load_training_data(*clip, holdout_fraction=0.1)
    batch = [x.float().div(127.5).sub(1.0) for x in (data.labels[0:2], data.labels[1:3], data.images[0:2],
                                                     data.images[1:3])]
    cfg = _cfg(amp="off")
    fp32 = Trainer(cfg, device, resolve_switches(cfg, device), None)
    assert not fp32.scaler_g.is_enabled() and not fp32.scaler_d.is_enabled()
    trainer = Trainer(cfg, device, dataclasses.replace(resolve_switches(cfg, device), precision="fp16"), None)
    calls: list[str] = []

    def spy(name: str, f):
        def run(*args):
            calls.append(name)
            return f(*args)
        return run

    for name in ("scaler_g", "scaler_d"):
        scaler = getattr(trainer, name)
        for method in ("scale", "step"):
            monkeypatch.setattr(scaler, method, spy(f"{name}.{method}", getattr(scaler, method)))
    with trainer.autocast():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.float16
    first = {k: float(v) for k, v in trainer.train_step(*batch).items()}
    assert calls == ["scaler_g.scale", "scaler_g.step", "scaler_d.scale", "scaler_d.step"]
    reference = {k: float(v) for k, v in fp32.train_step(*batch).items()}
    for name in ("loss_g", "loss_l1", "loss_d"):
        assert first[name] == pytest.approx(reference[name], rel=0.02), name
    losses = [first] + [{k: float(v) for k, v in trainer.train_step(*batch).items()} for _ in range(7)]
    assert all(np.isfinite(list(step.values())).all() for step in losses)
    # G's first steps overflow at the initial scale of 2**16: they are skipped while its scaler backs
    # off (D's, separate, need not), then G trains
    assert trainer.scaler_g.get_scale() < 2.0**16
    assert losses[-1]["loss_l1"] < losses[0]["loss_l1"]
    # the scalers' state is part of the training state, and comes back on resume
    state = trainer.training_state()
    assert state["scaler_g"]["scale"] == trainer.scaler_g.get_scale() and "scaler_d" in state
    assert "scaler_g" not in fp32.training_state()
    again = Trainer(cfg, device, dataclasses.replace(resolve_switches(cfg, device), precision="fp16"), None)
    again.restore(trainer.weights(), {**state, "scaler_g": {**state["scaler_g"], "scale": 1024.0}}, Path("x"))
    assert again.scaler_g.get_scale() == 1024.0


def test_bf16_training_steps_follow_fp32(clip) -> None:
    """The bf16 autocast path trains on CPU and its losses track fp32 from the same weights."""
    device = torch.device("cpu")
    data = load_training_data(*clip, holdout_fraction=0.1)
    batch = [x.float().div(127.5).sub(1.0) for x in (data.labels[0:2], data.labels[1:3], data.images[0:2],
                                                     data.images[1:3])]
    losses = {}
    for amp in ("off", "bf16"):
        cfg = _cfg(amp=amp)
        trainer = Trainer(cfg, device, resolve_switches(cfg, device), None)
        losses[amp] = [{k: float(v) for k, v in trainer.train_step(*batch).items()} for _ in range(4)]
    for name in ("loss_g", "loss_l1", "loss_d"):
        first_fp32, first_bf16 = losses["off"][0][name], losses["bf16"][0][name]
        assert first_bf16 == pytest.approx(first_fp32, rel=0.05), name
    for mode in losses.values():
        assert all(np.isfinite(list(step.values())).all() for step in mode)
        assert mode[-1]["loss_l1"] < mode[0]["loss_l1"]


# --- real training ------------------------------------------------------------------------------

def _run(cfg: TrainConfig, frames: Path, labels: Path, root: Path):
    return run_training(cfg, frames, labels, root / "generator.pt", root / "ck", root / "live")


def test_seeded_cpu_runs_are_repeatable(clip, tmp_path) -> None:
    cfg = _cfg(steps=4)
    _run(cfg, *clip, tmp_path / "a")
    _run(cfg, *clip, tmp_path / "b")
    ga, meta = load_generator(tmp_path / "a" / "generator.pt")
    gb, _ = load_generator(tmp_path / "b" / "generator.pt")
    for (k, va), vb in zip(ga.state_dict().items(), gb.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    assert meta["step"] == 4 and meta["train"]["holdout_fraction"] == cfg.holdout_fraction
    assert meta["split"]["holdout_frames"] == [10, 11]
    # a different seed is a different run
    _run(_cfg(steps=4, seed=1), *clip, tmp_path / "c")
    gc, _ = load_generator(tmp_path / "c" / "generator.pt")
    assert not torch.equal(next(iter(ga.state_dict().values())), next(iter(gc.state_dict().values())))


def test_outputs_for_dvc_plots_and_metrics(clip, tmp_path) -> None:
    import json

    _run(_cfg(steps=6, sample_every=3), *clip, tmp_path)
    live = tmp_path / "live"
    metrics = json.loads((live / "metrics.json").read_text())
    assert metrics["step"] == 6 and {"loss_g", "loss_d", "train_l1", "holdout_l1"} <= set(metrics)
    tsv = pd.read_csv(live / "plots" / "metrics" / "loss_g.tsv", sep="\t")
    assert tsv["step"].tolist() == [1, 2, 3, 4, 5, 6]
    grids = sorted((live / "plots" / "images" / "samples").glob("*.png"))
    assert [g.name for g in grids] == ["step_000003.png", "step_000006.png"]
    grid = cv2.imread(str(grids[0]))
    assert grid.shape == (3 * 32, 3 * 48, 3)  # rows: two training frames + one held-out; label|generated|real
    assert list_checkpoints(tmp_path / "ck") == [3]


@pytest.mark.parametrize(("done", "halflife", "expected"), [
    (1000, 100.0, 0.5 ** (1 / 100)),  # past the ramp-up: the configured half-life
    (10, 100.0, 0.5),                 # ramping up: half-life 0.1 * 10 = 1 step
    (1, 100.0, 0.5 ** 10),            # first update: the average is almost the weights themselves
    (50, 2.0, 0.5 ** (1 / 2)),
    (7, 0.0, 0.0),                    # no average
])
def test_ema_keep_factor_hand_computed(done: int, halflife: float, expected: float) -> None:
    assert ema_beta(done, halflife) == pytest.approx(expected, rel=1e-12)


def test_weight_average_is_the_recursion_over_the_updates(clip) -> None:
    """After update t the average is keep_t * average + (1 - keep_t) * weights, keep_t = 0.5 ** (1 / half-life in
    force). Worked by hand for a half-life of 1 step: it ramps up by 0.1 an update (0.1, 0.2, ..., 1.0), so the
    exponents 1 / half-life are 10, 5, 10/3, ..., 1, and 1 from then on."""
    keeps = [0.5 ** e for e in (10, 5, 10 / 3, 2.5, 2, 5 / 3, 10 / 7, 1.25, 10 / 9, 1, 1, 1)]
    cfg = _cfg(ema_halflife=1.0)
    device = torch.device("cpu")
    trainer = Trainer(cfg, device, resolve_switches(cfg, device), None)
    data = load_training_data(*clip, holdout_fraction=0.1)
    expected = [p.detach().clone() for p in trainer.g.parameters()]
    for step, keep in enumerate(keeps):
        r = int(data.pairs[step % len(data.pairs)])
        batch = (data.labels[r:r + 1], data.labels[r + 1:r + 2], data.images[r:r + 1], data.images[r + 1:r + 2])
        trainer.train_step(*(x.float() / 127.5 - 1 for x in batch))
        trainer.update_ema(step + 1)
        expected = [keep * e + (1 - keep) * p.detach() for e, p in zip(expected, trainer.g.parameters(), strict=True)]
    averaged = list(trainer.g_out.parameters())
    assert trainer.g_out is trainer.g_ema
    for e, a in zip(expected, averaged, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-6)
    assert any(not torch.allclose(a, p) for a, p in zip(averaged, trainer.g.parameters(), strict=True))


@pytest.mark.parametrize("ema_halflife", [0.0, 20.0])
def test_resume_only_with_the_same_params(clip, tmp_path, ema_halflife: float) -> None:
    cfg = _cfg(steps=6, checkpoint_every=2, ema_halflife=ema_halflife)
    first = _run(cfg, *clip, tmp_path)
    assert first.resumed_from == 0 and list_checkpoints(tmp_path / "ck") == [2, 4]
    finished = load_generator(tmp_path / "generator.pt")[0].state_dict()
    again = _run(cfg, *clip, tmp_path)
    assert again.resumed_from == 4 and again.step == 6
    # params that change only how the run goes (how often it checkpoints and samples, loader
    # workers, the device spelling) keep the checkpoints: the run resumes and ends where it did
    logistics = _cfg(steps=6, checkpoint_every=5, sample_every=1, workers=0, pin_memory=False, device="cpu",
                     ema_halflife=ema_halflife)
    assert logistics.model_dump() != cfg.model_dump()
    resumed = _run(logistics, *clip, tmp_path)
    assert resumed.resumed_from == 4 and list_checkpoints(tmp_path / "ck") == [2, 4, 5]  # now every 5 steps
    for (k, a), b in zip(load_generator(tmp_path / "generator.pt")[0].state_dict().items(), finished.values(),
                         strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=k)
    # a param that changes the result starts over, and clears the other run's checkpoints
    other = _run(_cfg(steps=6, checkpoint_every=3, lr=1e-4, ema_halflife=ema_halflife), *clip, tmp_path)
    assert other.resumed_from == 0 and list_checkpoints(tmp_path / "ck") == [3]


def _real_subset(frames_dir: Path, labels_dir: Path, root: Path, n: int, size: tuple[int, int]) -> tuple[Path, Path]:
    """The first ``n`` demo frames/labels with a person, resized to ``size`` (w, h), in the same format."""
    from dancepipe.pose.keypoints import read_table

    fdf, _ = read_table(frames_dir / "index.parquet")
    ldf, _ = read_table(labels_dir / "index.parquet")
    df = fdf.merge(ldf[["frame", "file", "person_found"]], on="frame", suffixes=("", "_lbl"))
    df = df[df["person_found_lbl"]].head(n)
    out_f, out_l = root / "frames", root / "labels"
    out_f.mkdir(parents=True)
    out_l.mkdir(parents=True)
    for src, dst, col, interp in ((frames_dir, out_f, "file", cv2.INTER_AREA), (labels_dir, out_l, "file_lbl",
                                                                                  cv2.INTER_NEAREST)):
        for name in df[col]:
            cv2.imwrite(str(dst / name), cv2.resize(cv2.imread(str(src / name)), size, interpolation=interp))
    df = df.assign(frame=np.arange(len(df)))  # consecutive, as the loop pairs neighbours
    df[["frame", "file", "timestamp", "person_found"]].to_parquet(out_f / "index.parquet", index=False)
    df[["frame", "file_lbl", "person_found_lbl"]].rename(
        columns={"file_lbl": "file", "person_found_lbl": "person_found"}).to_parquet(out_l / "index.parquet", index=False)
    return out_f, out_l


@pytest.mark.slow
def test_overfits_a_handful_of_real_demo_frames(demo_frames, demo_labels, tmp_path) -> None:
    frames, labels = _real_subset(Path(demo_frames["target"]), Path(demo_labels["train"]), tmp_path, n=6, size=(32, 48))
    cfg = _cfg(steps=60, batch_size=2, ngf=16, n_blocks=2, holdout_fraction=0.0, lambda_l1=20.0,
               checkpoint_every=1000, sample_every=1000)
    data = load_training_data(frames, labels, 0.0)
    untrained = Trainer(cfg, torch.device("cpu"), resolve_switches(cfg, torch.device("cpu")), None)
    before = mean_abs_error(generate_frames(untrained.g, data.labels, torch.device("cpu")), data.images)
    result = _run(cfg, frames, labels, tmp_path / "run")
    after = result.metrics["train_l1"]
    assert after < 0.6 * before, (before, after)


# --- the stage ----------------------------------------------------------------------------------

def _params(tmp_path: Path, **train) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"].update({**TINY_TRAIN, **train})
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _stage_args(clip: tuple[Path, Path], root: Path, params: Path) -> list[str]:
    return ["--frames", str(clip[0]), "--labels", str(clip[1]), "--out", str(root / "generator.pt"),
            "--checkpoints", str(root / "ck"), "--logdir", str(root / "live"), "--params", str(params)]


def test_stage_reports_bad_params_and_short_clips(tmp_path) -> None:
    from stages.train import main

    clip = write_clip(tmp_path / "short", n=4)
    res = CliRunner().invoke(main, _stage_args(clip, tmp_path, _params(tmp_path, feature_net="vgg16")))
    assert res.exit_code == 1
    assert "train.feature_net" in res.output and "'pose_backbone'" in res.output
    res = CliRunner().invoke(main, _stage_args(clip, tmp_path, _params(tmp_path)))
    assert res.exit_code == 1 and "clip too short to train on" in res.output
    assert not (tmp_path / "generator.pt").exists()


@pytest.mark.parametrize("train, message", [
    ({"device": "cpu", "amp": "fp16"},
     "train.amp = 'fp16' but this stage runs on cpu, and fp16 autocast is for CUDA GPUs; use 'auto'"),
    pytest.param({"device": "mps"}, "train.device = 'mps' but MPS (Apple GPUs) is not available here",
                 marks=pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")),
    pytest.param({"device": "cuda", "devices": 4}, "train.device = 'cuda' but this machine has no CUDA device",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
])
def test_stage_refuses_what_the_machine_cannot_run_and_writes_nothing(tmp_path, train, message) -> None:
    from stages.train import main

    clip = write_clip(tmp_path / "clip", n=12)
    run = tmp_path / "run"
    res = CliRunner().invoke(main, _stage_args(clip, run, _params(tmp_path, **train)))
    assert res.exit_code == 1, res.output
    assert res.output.startswith(f"Error: {message}") and len(res.output.strip().splitlines()) == 1, res.output
    assert not run.exists()


@pytest.mark.slow
def test_killed_stage_resumes_and_finishes(clip, tmp_path) -> None:
    steps = 60
    params = _params(tmp_path, steps=steps, checkpoint_every=5, sample_every=1000)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, str(REPO / "stages" / "train.py"), *_stage_args(clip, tmp_path, params)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not list_checkpoints(tmp_path / "ck"):
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "generator.pt").exists(), "the run finished before it could be killed"
    killed_at = list_checkpoints(tmp_path / "ck")[-1]
    assert killed_at < steps
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"resumed from step {killed_at}" in done.stdout
    g, meta = load_generator(tmp_path / "generator.pt")
    assert meta["step"] == steps
    # the resumed run ends where an uninterrupted one does
    ref = _run(TrainConfig(**yaml.safe_load(params.read_text())["train"]), *clip, tmp_path / "ref")
    assert ref.step == steps
    g_ref, _ = load_generator(tmp_path / "ref" / "generator.pt")
    for (k, a), b in zip(g.state_dict().items(), g_ref.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=k)


class _CopyLabel(torch.nn.Module):
    """A 'generator' whose frame is its label: the reconstruction error is then plain arithmetic."""

    def forward(self, label: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        return label


def test_final_metrics_cover_the_last_training_frames_and_the_held_out_tail(monkeypatch) -> None:
    from dancepipe.model import train as train_mod
    from dancepipe.model.dataset import TrainingData

    rng = np.random.default_rng(0)
    n, n_train = 12, 9
    labels = torch.from_numpy(rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8))
    images = torch.from_numpy(rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8))
    data = TrainingData(frames=list(range(n)), labels=labels, images=images, n_train=n_train,
                        pairs=np.arange(n_train - 1), fingerprint="")
    monkeypatch.setattr(train_mod, "FINAL_TRAIN_FRAMES", 4)
    got = train_mod._final_metrics(_CopyLabel(), data, torch.device("cpu"))
    err = np.abs(labels.numpy().astype(float) - images.numpy().astype(float)).mean(axis=(1, 2, 3)) / 255
    assert got["train_l1"] == pytest.approx(err[5:9].mean(), abs=1e-6)  # the last 4 training frames only
    assert got["holdout_l1"] == pytest.approx(err[9:].mean(), abs=1e-6)
    monkeypatch.setattr(train_mod, "FINAL_TRAIN_FRAMES", 100)  # more than there are: every training frame
    got = train_mod._final_metrics(_CopyLabel(), data, torch.device("cpu"))
    assert got["train_l1"] == pytest.approx(err[:9].mean(), abs=1e-6)

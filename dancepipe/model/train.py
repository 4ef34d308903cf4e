"""The train stage: pix2pixHD with temporal smoothing, from one CPU to several GPUs.

Read top to bottom: :class:`TrainConfig` (the ``train:`` params), :func:`resolve_switches`
(what ``auto`` means on this device), :class:`Trainer` (networks, optimisers and one
training step), :func:`run_training` (data → resume → steps → samples/checkpoints →
final model and metrics).

One step, on a batch of consecutive frame pairs (t, t+1):

1. G makes frame t from (label_t, zeros) and frame t+1 from (label_t+1, G's frame t).
   Frame t is not detached, so the temporal term also trains the first frame
   (the official implementation does the same).
2. G update: adversarial loss of D on the generated pair + discriminator feature
   matching + perceptual loss + L1, D frozen for this pass. The real pair's D features
   and perceptual features are constants of this loss, computed without a graph.
3. D update: real pair (label_t, label_t+1, image_t, image_t+1) against the detached
   generated pair.
4. With ``ema_halflife`` > 0, G's new weights are folded into their running average,
   which is what generator.pt, the samples and the final metrics use.

With ``temporal: false`` (pix2pixHD frame by frame, the paper's FBF ablation) each frame
comes from its label alone and D judges single (label, image) pairs: the two frames of a
pair become two independent samples.

Adam with linear decay to 0 over the last ``1 - decay_start`` of the steps. Only rank 0
writes files; every rank computes the same schedule and the same batches.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import nn

from dancepipe.config import StageConfig
from dancepipe.errors import DancepipeError
from dancepipe.hardware import distributed as du
from dancepipe.hardware.devices import MachineFacts, check_device, check_device_count, choose_device
from dancepipe.hardware.precision import autocast, choose_precision, needs_scaler
from dancepipe.model import checkpoint as ckpt
from dancepipe.model.dataset import PairBatches, TrainingData, load_training_data, make_loader, to_model_range
from dancepipe.model.features import build_feature_net
from dancepipe.model.losses import PerceptualLoss, build_gan_loss, feature_matching
from dancepipe.model.networks import (
    DiscriminatorArch,
    Generator,
    GeneratorArch,
    MultiscaleDiscriminator,
    PairGenerator,
    discriminator_input,
    generate_frames,
    init_weights,
)

log = logging.getLogger(__name__)

Auto = Literal["auto"]


class TrainConfig(StageConfig):
    """The ``train:`` section of params.yaml."""

    seed: int = Field(0, ge=0)
    steps: int = Field(1100, ge=1, description="generator updates, each on a batch of frame pairs")
    batch_size: int = Field(2, ge=1, description="frame pairs per device per step")
    lr: float = Field(4e-4, gt=0, le=1)
    beta1: float = Field(0.5, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    decay_start: float = Field(0.5, ge=0, le=1)
    ema_halflife: float = Field(
        100.0, ge=0, description="half-life in steps of the generator's weight average (0: save the last weights)",
    )
    holdout_fraction: float = Field(0.1, ge=0, lt=1)
    pair_gap_max: int = Field(4, ge=1, le=16, description="training pairs are frames t and t+g, g in 1..this")
    ngf: int = Field(32, ge=1, le=256)
    n_downsample: int = Field(2, ge=1, le=6)
    n_blocks: int = Field(6, ge=0, le=32)
    local_enhancer: bool = False
    ndf: int = Field(16, ge=1, le=256)
    num_d: int = Field(2, ge=1, le=5)
    n_layers_d: int = Field(3, ge=1, le=6)
    gan_loss: Literal["lsgan", "hinge"] = "lsgan"
    lambda_feat: float = Field(10.0, ge=0)
    lambda_perceptual: float = Field(10.0, ge=0)
    lambda_l1: float = Field(10.0, ge=0)
    temporal: bool = Field(True, description="false: pix2pixHD frame by frame (no previous frame, single-frame D)")
    feature_net: Literal["vgg19", "pose_backbone", "none"] = "pose_backbone"
    checkpoint_every: int = Field(100, ge=1)
    sample_every: int = Field(100, ge=1)
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps")
    devices: int = Field(1, ge=1, le=64)
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    channels_last: bool | Auto = "auto"
    compile: bool = False
    workers: int | Auto = Field("auto")
    pin_memory: bool | Auto = "auto"

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        return check_device(v)

    def generator_arch(self) -> GeneratorArch:
        return GeneratorArch(ngf=self.ngf, n_downsample=self.n_downsample, n_blocks=self.n_blocks,
                             local_enhancer=self.local_enhancer, temporal=self.temporal)

    def discriminator_arch(self) -> DiscriminatorArch:
        return DiscriminatorArch(ndf=self.ndf, n_layers=self.n_layers_d, num_d=self.num_d,
                                 in_channels=12 if self.temporal else 6)


# keys that change how fast or how visibly a run goes, not what it computes
_LOGISTICS = {"checkpoint_every", "sample_every", "device", "workers", "pin_memory", "compile", "channels_last"}


def run_fingerprint(cfg: TrainConfig, data_fingerprint: str, world_size: int) -> str:
    """Identity of a run: params that affect the result + the data + the number of ranks."""
    keyed = {k: v for k, v in cfg.model_dump().items() if k not in _LOGISTICS}
    blob = json.dumps({"params": keyed, "data": data_fingerprint, "world_size": world_size}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class Switches:
    """Speed switches resolved for one device (``auto`` = on for CUDA only)."""

    precision: str  # fp32, bf16 or fp16 (autocast; fp16 with a gradient scaler)
    channels_last: bool
    compile: bool
    workers: int
    pin_memory: bool

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


def check_devices(cfg: TrainConfig, facts: MachineFacts | None = None) -> None:
    """Refuse, before torchrun starts any process, ``train.devices`` ranks this machine cannot host
    (each CUDA rank needs its own GPU; the CPU runs several gloo processes) and a ``train.device``
    or ``train.amp`` it cannot run."""
    facts = MachineFacts.from_torch() if facts is None else facts
    check_device_count(cfg.device, cfg.devices, facts)
    for local_rank in range(cfg.devices):
        resolve_switches(cfg, choose_device(cfg.device, facts, "train.device", local_rank), facts)


def resolve_switches(cfg: TrainConfig, device: torch.device, facts: MachineFacts | None = None) -> Switches:
    """Turn the ``auto`` values of the speed switches into settings for ``device``.

    ``amp`` is :func:`dancepipe.hardware.precision.choose_precision` (``auto``: bf16
    autocast where the hardware computes bf16 natively — CUDA capability 8.0+, CPUs with
    AMX or AVX512-BF16, where it trains faster at the same held-out quality (figures in
    docs/train.md) —, fp16 with a gradient scaler on older CUDA GPUs with tensor cores, fp32
    elsewhere); the other switches default on for CUDA only. ``facts`` defaults to this
    machine's.
    """
    facts = MachineFacts.from_torch() if facts is None else facts
    cuda = device.type == "cuda"

    def pick(value: bool | str) -> bool:
        return cuda if value == "auto" else bool(value)

    return Switches(
        precision=choose_precision(cfg.amp, device, facts, "train.amp"),
        channels_last=pick(cfg.channels_last),
        compile=cfg.compile,
        workers=(2 if cuda else 0) if cfg.workers == "auto" else int(cfg.workers),
        pin_memory=pick(cfg.pin_memory) and cuda,
    )


def configure_backends(device: torch.device, fast: bool = True) -> None:
    """On CUDA: cuDNN autotuning and TF32 matmuls/convs (``fast=False`` restores strict fp32)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = fast
        torch.backends.cuda.matmul.allow_tf32 = fast
        torch.backends.cudnn.allow_tf32 = fast


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for 0-based update ``step``: constant, then linear to 0 after ``decay_start``."""
    start = math.floor(cfg.decay_start * cfg.steps)
    if step < start or cfg.steps == start:
        return cfg.lr
    return cfg.lr * (cfg.steps - step) / (cfg.steps - start)


# The average's half-life grows with training: at most this share of the steps done, so
# the first, fast-changing weights are forgotten quickly (as in StyleGAN2-ADA's ramp-up).
EMA_RAMPUP = 0.1


def ema_beta(done: int, halflife: float) -> float:
    """Weight kept by the average after update ``done`` (1-based): 0.5 ** (1 / half-life in force)."""
    h = min(halflife, EMA_RAMPUP * done)
    return 0.5 ** (1.0 / h) if h > 0 else 0.0


def _set_requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


class Trainer:
    """Networks, optimisers and the training step. Build one per rank."""

    def __init__(self, cfg: TrainConfig, device: torch.device, switches: Switches,
                 feature_net: nn.Module | None, ctx: du.DistContext = du.SINGLE) -> None:
        self.cfg, self.device, self.switches, self.ctx = cfg, device, switches, ctx
        torch.manual_seed(cfg.seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
        self.g = Generator(cfg.generator_arch())
        self.d = MultiscaleDiscriminator(cfg.discriminator_arch())
        init_weights(self.g)
        init_weights(self.d)
        fmt = switches.memory_format
        self.g.to(device, memory_format=fmt)
        self.d.to(device, memory_format=fmt)
        # the exponential moving average of G's weights, which is what gets saved when enabled
        self.g_ema: Generator | None = None
        if cfg.ema_halflife > 0:
            self.g_ema = copy.deepcopy(self.g).eval()
            _set_requires_grad(self.g_ema, False)
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self.gan = build_gan_loss(cfg.gan_loss)
        self.d_input = discriminator_input(cfg.temporal)
        self.perceptual = PerceptualLoss(feature_net) if (feature_net is not None and cfg.lambda_perceptual) else None
        # DDP syncs gradients of the modules whose backward it sees: the pair generator in the
        # G update, the discriminator in the D update. The G update calls the plain D (frozen).
        self.pair_g: nn.Module = du.wrap(PairGenerator(self.g), device)
        self.ddp_d: nn.Module = du.wrap(self.d, device)
        self.d_plain: nn.Module = self.d
        if switches.compile:
            # G alone is compiled: D's parameters are frozen for G's update and trainable for
            # its own on every step, and D also runs under no_grad on the real pair. Dynamo
            # guards a compiled graph on its parameters' requires_grad and on grad mode, so a
            # compiled D would carry one specialisation per state and switch between them (or
            # recompile) twice a step. G, the larger network, keeps one state throughout.
            self.pair_g = torch.compile(self.pair_g)
        # fp16 gradients underflow without loss scaling: one scaler per optimiser, so an
        # overflow in D's backward does not skip G's step (pass-throughs at other precisions)
        scale = needs_scaler(switches.precision)
        self.scaler_g = torch.amp.GradScaler(device.type, enabled=scale)
        self.scaler_d = torch.amp.GradScaler(device.type, enabled=scale)

    def autocast(self) -> AbstractContextManager:
        return autocast(self.device, self.switches.precision)

    @property
    def g_out(self) -> Generator:
        """The generator samples, final metrics and generator.pt come from: the average, if kept."""
        return self.g_ema if self.g_ema is not None else self.g

    @torch.no_grad()
    def update_ema(self, done: int) -> None:
        """Fold G's weights after update ``done`` into the average (a no-op without one)."""
        if self.g_ema is None:
            return
        keep = ema_beta(done, self.cfg.ema_halflife)
        for avg, p in zip(self.g_ema.parameters(), self.g.parameters(), strict=True):
            avg.lerp_(p.detach(), 1.0 - keep)
        for avg, b in zip(self.g_ema.buffers(), self.g.buffers(), strict=True):
            avg.copy_(b)

    def set_lr(self, lr: float) -> None:
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group["lr"] = lr

    def train_step(self, label_t: torch.Tensor, label_t1: torch.Tensor, real_t: torch.Tensor,
                   real_t1: torch.Tensor) -> dict[str, torch.Tensor]:
        """One G and one D update on float inputs in [-1, 1]; returns detached losses."""
        cfg = self.cfg
        real = self.d_input(label_t, label_t1, real_t, real_t1)
        b = real.shape[0]  # B pairs (temporal) or 2B single frames (frame by frame)
        # --- generator update (D frozen) ---
        _set_requires_grad(self.d, False)
        with self.autocast():
            fake_t, fake_t1 = self.pair_g(label_t, label_t1)
            fake = self.d_input(label_t, label_t1, fake_t, fake_t1)
            d_fake = self.d_plain(fake)
            with torch.no_grad():  # constants for feature matching: no backward through the real half
                d_real = self.d_plain(real)
            loss_adv = self.gan.g_loss(d_fake)
            loss_fm = feature_matching(d_fake, d_real) if cfg.lambda_feat else loss_adv.new_zeros(())
            loss_l1 = (nn.functional.l1_loss(fake_t.float(), real_t) + nn.functional.l1_loss(fake_t1.float(), real_t1))
            if self.perceptual is not None:
                loss_perc = self.perceptual(torch.cat([fake_t, fake_t1]), torch.cat([real_t, real_t1]))
            else:
                loss_perc = loss_adv.new_zeros(())
            loss_g = (loss_adv + cfg.lambda_feat * loss_fm + cfg.lambda_perceptual * loss_perc
                      + cfg.lambda_l1 * loss_l1)
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler_g.scale(loss_g).backward()
        self.scaler_g.step(self.opt_g)  # unscales first; skips the step if a gradient overflowed
        self.scaler_g.update()
        # --- discriminator update ---
        _set_requires_grad(self.d, True)
        with self.autocast():
            outs = self.ddp_d(torch.cat([real, fake.detach()], dim=0))
            d_real = [[f[:b] for f in scale] for scale in outs]
            d_fake = [[f[b:] for f in scale] for scale in outs]
            loss_d = self.gan.d_loss(d_real, d_fake)
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler_d.scale(loss_d).backward()
        self.scaler_d.step(self.opt_d)
        self.scaler_d.update()
        return {"loss_g": loss_g.detach(), "loss_d": loss_d.detach(), "loss_adv": loss_adv.detach(),
                "loss_fm": loss_fm.detach(), "loss_perceptual": loss_perc.detach(), "loss_l1": loss_l1.detach()}

    # --- checkpoint state ---
    def weights(self) -> dict[str, Any]:
        out = {
            "arch": self.g.arch.to_dict(), "state_dict": _cpu(self.g.state_dict()),
            "d_arch": self.d.arch.to_dict(), "discriminator": _cpu(self.d.state_dict()),
        }
        if self.g_ema is not None:
            out["ema_state_dict"] = _cpu(self.g_ema.state_dict())
        return out

    def training_state(self) -> dict[str, Any]:
        # the CUDA generator of this rank's GPU only: every rank seeds alike, so rank 0's stream
        # (the one saved) is every rank's, and a host with fewer GPUs can still restore it
        rng: dict[str, Any] = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        state = {"opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "rng": rng}
        if self.scaler_g.is_enabled():
            state |= {"scaler_g": self.scaler_g.state_dict(), "scaler_d": self.scaler_d.state_dict()}
        return state

    def restore(self, weights: dict[str, Any], state: dict[str, Any], source: Path) -> None:
        ckpt.load_into(self.g, weights["state_dict"], source)
        ckpt.load_into(self.d, weights["discriminator"], source)
        if self.g_ema is not None:
            if "ema_state_dict" not in weights:
                raise DancepipeError(f"{source}: has no weight average to resume (train.ema_halflife)")
            ckpt.load_into(self.g_ema, weights["ema_state_dict"], source)
        try:
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
        except (ValueError, KeyError) as e:
            raise DancepipeError(f"{source}: optimiser state does not fit the networks") from e
        torch.set_rng_state(state["rng"]["torch"])
        cuda_rng = state["rng"].get("cuda")
        # a tensor: one GPU's state, loaded into this rank's (older files held a list, every GPU of
        # rank 0's host, which another host may not have: those are skipped)
        if isinstance(cuda_rng, torch.Tensor) and self.device.type == "cuda":
            torch.cuda.set_rng_state(cuda_rng, self.device)
        if self.scaler_g.is_enabled() and "scaler_g" in state:
            self.scaler_g.load_state_dict(state["scaler_g"])
            self.scaler_d.load_state_dict(state["scaler_d"])


def _cpu(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", memory_format=torch.contiguous_format).clone() for k, v in sd.items()}


def mean_abs_error(fake: torch.Tensor, real: torch.Tensor) -> float:
    """Mean absolute error of uint8 images on a [0, 1] scale."""
    return float((fake.float() - real.float()).abs().mean() / 255.0)


def sample_grid(g: nn.Module, data: TrainingData, device: torch.device, precision: str = "fp32") -> np.ndarray:
    """Rows of label | generated | real (H·rows, 3·W, 3) uint8 for fixed frames.

    Rows: the second frame of the first and of a middle training pair, and the first
    held-out frame when there is one (shown, never trained on). Each generated frame
    is conditioned on G's output for the frame before it, as in rendering.
    """
    ones = data.pairs if data.gaps is None else data.pairs[data.gaps == 1]  # the same rows whatever the gaps
    rows = [int(ones[0]), int(ones[len(ones) // 2])]
    if data.n_train < len(data.frames):
        rows.append(data.n_train - 1)
    lines = []
    for r in rows:
        gen = generate_frames(g, data.labels[r:r + 2], device, precision)[1]
        lines.append(torch.cat([data.labels[r + 1], gen, data.images[r + 1]], dim=2))
    return torch.cat(lines, dim=1).permute(1, 2, 0).numpy()


@dataclasses.dataclass
class TrainResult:
    """What a finished run reports."""

    step: int
    resumed_from: int
    metrics: dict[str, float]
    out: Path


def _check_same_precision(cfg: TrainConfig, precision: str) -> None:
    """Every rank must train at one precision (DDP averages the gradients of all of them, and a
    scaled fp16 gradient averaged with an unscaled one is wrong): machines with different GPUs
    may resolve ``auto`` differently."""
    chosen = du.all_gather_object(precision)
    if len(set(chosen)) > 1:
        per_rank = ", ".join(f"rank {r}: {p}" for r, p in enumerate(chosen))
        raise DancepipeError(f"train.amp = {cfg.amp!r} gives different precisions on different ranks ({per_rank}); "
                             f"set train.amp to one precision that every rank runs")


def _resume_point(checkpoints: Path, fingerprint: str, steps: int, ctx: du.DistContext) -> int:
    """Latest usable checkpoint step (0 = start fresh); rank 0 clears checkpoints of other runs."""
    found = ckpt.list_checkpoints(checkpoints)
    start = 0
    if ctx.is_main and found:
        state = ckpt.read_file(ckpt.step_paths(checkpoints, found[-1])[1], ckpt.STATE_FORMAT)
        if state.get("fingerprint") == fingerprint and found[-1] <= steps:
            start = found[-1]
        else:
            log.warning("%s: checkpoints were written with different params or data; starting over", checkpoints)
            for p in checkpoints.glob("*_*.pt"):
                p.unlink()
    start = int(du.broadcast_object(start))
    du.barrier()
    return start


def run_training(
    cfg: TrainConfig,
    frames_dir: str | Path,
    labels_dir: str | Path,
    out: str | Path,
    checkpoints: str | Path,
    logdir: str | Path,
    *,
    ctx: du.DistContext = du.SINGLE,
    progress: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train the generator and write ``out`` (generator.pt), checkpoints and dvclive logs.

    Resumes from the newest checkpoint in ``checkpoints`` written by a run with the same
    params and data; reaches ``cfg.steps`` either way. ``progress(n)`` is called with the
    steps done (first with the resumed step count). Call with a process group already
    initialised when ``ctx.world_size > 1``.
    """
    out, checkpoints, logdir = Path(out), Path(checkpoints), Path(logdir)
    facts = MachineFacts.from_torch()
    device = du.device_for(ctx, cfg.device, "train.device", facts)
    switches = resolve_switches(cfg, device, facts)
    if ctx.distributed:
        _check_same_precision(cfg, switches.precision)
    configure_backends(device)
    data = load_training_data(frames_dir, labels_dir, cfg.holdout_fraction, cfg.pair_gap_max)
    h, w = data.size
    m = cfg.generator_arch().multiple
    if h % m or w % m:
        raise DancepipeError(f"{frames_dir}: frames are {w}x{h}, but train.n_downsample/local_enhancer need "
                             f"multiples of {m}; change frames.width/height or train.n_downsample")
    fingerprint = run_fingerprint(cfg, data.fingerprint, ctx.world_size)
    trainer = Trainer(cfg, device, switches, build_feature_net(cfg.feature_net, device), ctx)
    if ctx.is_main:
        checkpoints.mkdir(parents=True, exist_ok=True)
    start = _resume_point(checkpoints, fingerprint, cfg.steps, ctx)
    if start:
        if not ckpt.step_paths(checkpoints, start)[1].is_file():  # rank 0 found it: not on this machine
            raise DancepipeError(f"{checkpoints}: rank {ctx.rank} cannot see step {start}, which rank 0 resumes "
                                 f"from; training on several machines needs the checkpoints on shared storage")
        weights, state = ckpt.load_checkpoint(checkpoints, start, fingerprint)
        trainer.restore(weights, state, ckpt.step_paths(checkpoints, start)[0])
        log.info("resumed from %s at step %d of %d", checkpoints, start, cfg.steps)
    train_params = {**cfg.model_dump(), "world_size": ctx.world_size,
                    "global_batch": cfg.batch_size * ctx.world_size}
    live = _open_live(logdir, resume=start > 0) if ctx.is_main else None
    if progress is not None and start:
        progress(start)
    batches = PairBatches(data, start, cfg.steps, cfg.batch_size, cfg.seed, ctx.rank, ctx.world_size)
    loader = make_loader(batches, switches.workers, switches.pin_memory)
    fmt = switches.memory_format
    images = 0
    t0 = time.perf_counter()
    last: dict[str, float] = {}
    for step, batch in enumerate(loader, start=start):
        trainer.set_lr(lr_at(step, cfg))
        losses = trainer.train_step(*(to_model_range(x, device, fmt) for x in batch))
        done = step + 1
        trainer.update_ema(done)
        images += 2 * cfg.batch_size * ctx.world_size
        if ctx.distributed:
            losses = {k: du.all_reduce_mean(v) for k, v in losses.items()}
        if live is not None:
            values = torch.stack(list(losses.values())).float().cpu().tolist()
            last = dict(zip(losses, values, strict=True))
            live.step = done
            for k, v in last.items():
                live.log_metric(k, v)
            live.log_metric("lr", lr_at(step, cfg))
            if done % cfg.sample_every == 0 or done == cfg.steps:
                live.log_image(f"samples/step_{done:06d}.png", sample_grid(trainer.g_out, data, device, switches.precision))
            live.make_summary()
        if ctx.is_main and done % cfg.checkpoint_every == 0 and done < cfg.steps:
            ckpt.save_checkpoint(checkpoints, done, {**trainer.weights(), "train": train_params,
                                                     "split": data.split},
                                 {**trainer.training_state(), "fingerprint": fingerprint})
        if progress is not None:
            progress(1)
    elapsed = time.perf_counter() - t0
    metrics: dict[str, float] = {}
    if ctx.is_main:
        metrics = _final_metrics(trainer.g_out, data, device, switches.precision)
        metrics["images_per_s"] = images / elapsed if elapsed > 0 and images else 0.0
        metrics["train_seconds"] = elapsed
        ckpt.save_generator(trainer.g_out, out, train_params, data.split, cfg.steps)
        if live is not None:
            for k, v in metrics.items():
                live.log_metric(k, v, plot=False)
            live.make_summary()
            live.end()
    du.barrier()
    return TrainResult(step=cfg.steps, resumed_from=start, metrics={**last, **metrics}, out=out)


# train_l1 is measured on at most this many training frames, the last ones before the
# held-out tail: running G over all 1,413 training frames of the demo took 90 s.
FINAL_TRAIN_FRAMES = 200


def _final_metrics(g: Generator, data: TrainingData, device: torch.device,
                   precision: str = "fp32") -> dict[str, float]:
    """Reconstruction error (mean |G - real| on [0, 1]) on training frames and on the held-out tail.

    One recurrent chain, as render runs: it starts :data:`FINAL_TRAIN_FRAMES` frames
    before the end of the training split (``train_l1`` over those) and runs on through
    the held-out tail (``holdout_l1``).
    """
    n = data.n_train
    first = max(0, n - FINAL_TRAIN_FRAMES)
    gen = generate_frames(g, data.labels[first:], device, precision)
    metrics = {"train_l1": mean_abs_error(gen[:n - first], data.images[first:n])}
    if n < len(data.frames):
        metrics["holdout_l1"] = mean_abs_error(gen[n - first:], data.images[n:])
    return metrics


def _open_live(logdir: Path, resume: bool):
    """A dvclive logger writing metrics TSVs, images and metrics.json under ``logdir``."""
    from dvclive import Live

    return Live(dir=str(logdir), resume=resume, save_dvc_exp=False, dvcyaml=None, report=None)


"""The train_face stage: train the face GAN against the frozen main generator.

Read top to bottom: :class:`FaceConfig` (the ``train_face:`` params), :func:`fit_face`
(the loop on precomputed crops), :func:`train_face` (the stage: load and freeze the
main generator, collect crops, train, check the main generator is bit-identical, write
``models/face.pt`` and dvclive logs).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from dancepipe.config import StageConfig
from dancepipe.errors import DancepipeError
from dancepipe.hardware.devices import check_device, resolve_device
from dancepipe.hardware.precision import PRECISION_HELP, Precision, resolve_precision
from dancepipe.model.checkpoint import load_generator
from dancepipe.model.face_checkpoint import disabled_payload, enabled_payload, save_face_model
from dancepipe.model.face_dataset import FaceCrops, Progress, collect_face_crops
from dancepipe.model.face_networks import FaceDiscriminator, FaceGenerator, freeze
from dancepipe.model.features import build_feature_net
from dancepipe.model.losses import PerceptualLoss, build_gan_loss
from dancepipe.model.networks import to_model, to_uint8

log = logging.getLogger(__name__)


class FaceConfig(StageConfig):
    """The ``train_face`` params section (docs/face.md explains every key)."""

    enabled: bool = True
    seed: int = Field(0, ge=0)
    steps: int = Field(400, ge=1, le=10_000_000)
    batch_size: int = Field(4, ge=1, le=4096)
    lr: float = Field(2e-4, gt=0.0, le=1.0)
    beta1: float = Field(0.5, ge=0.0, lt=1.0)
    beta2: float = Field(0.999, ge=0.0, lt=1.0)
    ngf: int = Field(16, ge=4, le=512)
    n_downsample: int = Field(2, ge=0, le=4)
    n_blocks: int = Field(2, ge=0, le=32)
    ndf: int = Field(16, ge=4, le=512)
    n_layers_d: int = Field(2, ge=1, le=5)
    gan_loss: Literal["lsgan", "hinge"] = "lsgan"
    lambda_adv: float = Field(1.0, ge=0.0)
    lambda_perceptual: float = Field(10.0, ge=0.0)
    lambda_l1: float = Field(50.0, ge=0.0)
    samples: int = Field(6, ge=1, le=64)
    device: str = "auto"
    precision: Precision = Field(
        "auto", description=f"the frozen main generator's, when it makes the training faces: {PRECISION_HELP}"
    )

    @field_validator("device")
    @classmethod
    def _check_device(cls, v: str) -> str:
        return check_device(v)


@dataclass
class FaceResult:
    """What :func:`fit_face` returns: the trained model and its final numbers."""

    model: FaceGenerator
    metrics: dict[str, float] = field(default_factory=dict)
    grid: np.ndarray | None = None


def sample_grid(crops: FaceCrops, refined: np.ndarray, n: int, scale: int = 4) -> np.ndarray:
    """Rows of (label | main generator | refined | real) face crops, upscaled for viewing."""
    idx = np.linspace(0, len(crops) - 1, num=min(n, len(crops))).round().astype(int)
    rows = [np.concatenate([crops.label[i], crops.main[i], refined[i], crops.real[i]], axis=1) for i in idx]
    grid = np.concatenate(rows, axis=0)
    return cv2.resize(grid, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)


@torch.inference_mode()
def refine_crops(model: FaceGenerator, crops: FaceCrops, device: torch.device, batch: int = 64) -> np.ndarray:
    """Apply ``model`` to every training crop → uint8 (N, S, S, 3)."""
    model.eval()
    out = []
    for i in range(0, len(crops), batch):
        lab = to_model(crops.label[i:i + batch], device)
        img = to_model(crops.main[i:i + batch], device)
        out.append(to_uint8(model(lab, img)))
    return np.concatenate(out)


def face_l1(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 crop stacks, in [-1, 1] units."""
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean() / 127.5)


def fit_face(
    crops: FaceCrops,
    cfg: FaceConfig,
    feature_net: nn.Module | None,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    log_step: Callable[[int, dict[str, float]], None] | None = None,
) -> FaceResult:
    """Train the face generator and discriminator on precomputed crops.

    Each step: one discriminator update on (label, real) vs (label, refined), then one
    generator update on adversarial + perceptual (``feature_net`` maps, skipped when
    None) + L1 losses. ``log_step(step, losses)`` receives the step's loss values.
    """
    device = torch.device(device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    if crops.size % (2 ** cfg.n_downsample):
        raise DancepipeError(f"train_face.n_downsample: face crops of {crops.size} px are not divisible by "
                             f"2**{cfg.n_downsample}; lower n_downsample")
    gen = FaceGenerator(cfg.ngf, cfg.n_downsample, cfg.n_blocks).to(device)
    disc = FaceDiscriminator(cfg.ndf, cfg.n_layers_d).to(device)
    adversarial = build_gan_loss(cfg.gan_loss)
    perceptual = None
    if feature_net is not None and cfg.lambda_perceptual > 0:
        perceptual = PerceptualLoss(feature_net.to(device).eval().requires_grad_(False))
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    order: list[int] = []
    losses: dict[str, float] = {}
    for step in range(cfg.steps):
        gen.train()
        while len(order) < cfg.batch_size:
            order += rng.permutation(len(crops)).tolist()
        idx, order = order[:cfg.batch_size], order[cfg.batch_size:]
        lab = to_model(crops.label[idx], device)
        main = to_model(crops.main[idx], device)
        real = to_model(crops.real[idx], device)

        fake = gen(lab, main)  # (B, 3, S, S)
        disc.requires_grad_(True)
        # the main training's losses take one list of feature maps per scale; the face D has one scale
        loss_d = adversarial.d_loss([disc(lab, real)], [disc(lab, fake.detach())])
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()

        disc.requires_grad_(False)
        loss_adv = adversarial.g_loss([disc(lab, fake)])
        loss_l1 = F.l1_loss(fake, real)
        loss_perc = perceptual(fake, real) if perceptual is not None else fake.new_zeros(())
        loss_g = cfg.lambda_adv * loss_adv + cfg.lambda_perceptual * loss_perc + cfg.lambda_l1 * loss_l1
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()

        losses = {"loss_d": loss_d.item(), "loss_g": loss_g.item(), "loss_g_adv": loss_adv.item(),
                  "loss_g_l1": loss_l1.item()}
        if perceptual is not None:
            losses["loss_g_perceptual"] = loss_perc.item()
        if not all(np.isfinite(v) for v in losses.values()):
            raise DancepipeError(f"train_face: losses became non-finite at step {step + 1} ({losses}); lower train_face.lr")
        if log_step is not None:
            log_step(step + 1, losses)
        if progress is not None:
            progress(1)

    refined = refine_crops(gen, crops, device)
    metrics = {
        "face_l1_main": face_l1(crops.main, crops.real),
        "face_l1_refined": face_l1(refined, crops.real),
        "faces": float(len(crops)),
        "frames_without_face": float(crops.skipped),
    }
    return FaceResult(model=gen.cpu().eval(), metrics=metrics, grid=sample_grid(crops, refined, cfg.samples))


def _state_digest(module: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def train_face(
    cfg: FaceConfig,
    *,
    feature_net: str,
    generator_path: str | Path,
    frames_dir: str | Path,
    labels_dir: str | Path,
    out_path: str | Path,
    logdir: str | Path,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The train_face stage: train the face GAN against the frozen main generator.

    Writes ``out_path`` (``models/face.pt``) atomically and dvclive logs under
    ``logdir`` (per-step losses, metrics.json, ``plots/images/face_samples.png``).
    With ``cfg.enabled`` false it writes a weightless checkpoint and trains nothing.
    Returns the final metrics plus ``enabled``.
    """
    if not cfg.enabled:
        save_face_model(disabled_payload(cfg.model_dump()), out_path)
        log.info("train_face.enabled is false: wrote %s without weights; rendering will use the main "
                 "generator alone", out_path)
        _log_disabled(logdir)
        return {"enabled": False}

    device = resolve_device(cfg.device, "train_face.device")
    generator_path = Path(generator_path)
    if not generator_path.is_file():
        raise DancepipeError(f"{generator_path}: generator model does not exist (run the train stage first)")
    generator, meta = load_generator(generator_path, device)
    freeze(generator)
    before = _state_digest(generator)
    split = (meta.get("split") or {}).get("train_frames")
    if not split:
        raise DancepipeError(f"{generator_path}: checkpoint records no training split (split.train_frames)")

    log.info("train_face: running the frozen main generator over %d training frames", len(split))
    precision = resolve_precision(cfg.precision, device, "train_face.precision")
    crops = collect_face_crops(generator, frames_dir, labels_dir, split, device, precision=precision)
    log.info("train_face: %d of %d training frames have a usable face; %d skipped without one",
             len(crops), crops.total, crops.skipped)
    net = build_feature_net(feature_net, device)

    live = _open_live(logdir)
    try:
        def log_step(step: int, losses: dict[str, float]) -> None:
            live.step = step  # fit_face counts steps from 1, as the checkpoint's "step" does
            for k, v in losses.items():
                live.log_metric(k, v)
            live.make_summary()

        result = fit_face(crops, cfg, net, device, progress=progress, log_step=log_step)
        live.summary["enabled"] = 1
        for k, v in result.metrics.items():
            live.summary[k] = v
        if result.grid is not None:
            live.log_image("face_samples.png", result.grid)
    finally:
        live.end()

    if _state_digest(generator) != before:
        raise DancepipeError(f"{generator_path}: the main generator changed during face training (it must stay frozen)")
    save_face_model(enabled_payload(result.model, cfg.model_dump(), feature_net, crops.size, cfg.steps,
                                    result.metrics), out_path)
    return {"enabled": True, **result.metrics}


def _open_live(logdir: str | Path):
    from dvclive import Live

    return Live(str(logdir), save_dvc_exp=False, dvcyaml=False)


def _log_disabled(logdir: str | Path) -> None:
    # the same layout as a real run (dvc.yaml declares these paths), with nothing trained
    live = _open_live(logdir)
    live.log_metric("enabled", 0)
    live.end()
    (Path(logdir) / "plots" / "images").mkdir(parents=True, exist_ok=True)


def read_feature_net(params_path: str | Path) -> str:
    """``train.feature_net`` from the params file: the face GAN's perceptual loss uses the
    same feature network as the main training (dvc.yaml lists exactly this key)."""
    from dancepipe.config import load_params

    params = load_params(params_path)
    name = (params.get("train") or {}).get("feature_net")
    if not isinstance(name, str) or not name:
        raise DancepipeError(f"{params_path}: 'train.feature_net' is missing; the face GAN's perceptual loss "
                             f"uses the main training's feature network")
    return name

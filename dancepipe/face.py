"""Face GAN refinement: a small residual generator that sharpens the face crop.

The main generator renders the whole body at once and spends little capacity on the
face, so, as in "Everybody Dance Now", a second, small generator looks only at a
fixed-size square around the face. It sees the label crop and the main generator's
crop (6 channels) and predicts a *residual* that is added to the main crop. Its last
convolution starts at zero, so a fresh face generator is exactly the identity and
training can only move away from the main result as far as the losses ask.

Training (:func:`train_face`) keeps the main generator frozen (``requires_grad``
False, eval mode, never in an optimizer; its weights are checked bit-identical at the
end). The main generator's outputs for the training split are computed once, frame
by frame conditioned on its previous output exactly as rendering does, and the face
crops are cut from them with the boxes the labels stage recorded
(:mod:`dancepipe.facebox`), so training and rendering see the same crops.

Rendering calls :func:`load_face_model` and :meth:`FaceRefiner.refine`; a ``face.pt``
written with ``train_face.enabled: false`` holds no weights and loads as ``None``.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from dancepipe.checkpoint import load_generator, save_file
from dancepipe.config import StageConfig
from dancepipe.devices import check_device, resolve_device
from dancepipe.errors import DancepipeError
from dancepipe.features import build_feature_net
from dancepipe.keypoints import read_table
from dancepipe.losses import PerceptualLoss, build_gan_loss
from dancepipe.networks import GlobalGenerator, NLayerDiscriminator, init_weights

log = logging.getLogger(__name__)

FORMAT = "dancepipe.face/1"
BOX_COLUMNS = ("face_x0", "face_y0", "face_size", "face_ok")
Box = tuple[int, int, int]
Progress = Callable[[int], None]



class FaceConfig(StageConfig):
    """The ``train_face`` params section (docs/face.md explains every key)."""

    enabled: bool = True
    seed: int = Field(0, ge=0)
    steps: int = Field(150, ge=1, le=10_000_000)
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
    lambda_l1: float = Field(10.0, ge=0.0)
    samples: int = Field(6, ge=1, le=64)
    device: str = "auto"

    @field_validator("device")
    @classmethod
    def _check_device(cls, v: str) -> str:
        return check_device(v)


# --------------------------------------------------------------------------- networks


class FaceGenerator(nn.Module):
    """Residual face generator: (label crop, main crop) → main crop + residual.

    The body is the main training's pix2pixHD global generator without its tanh head
    (:class:`dancepipe.networks.GlobalGenerator`: 6 input channels, ``n_downsample``
    strided convs, ``n_blocks`` residual blocks, back up to full resolution). The
    residual head is a 7x7 conv over the body's features *and* the input crops
    themselves: the full-resolution path lets it correct pixel-level detail (or noise)
    of the main crop that the downsampled body cannot carry. The head's weights and
    bias start at zero, so a fresh face generator returns its input crop unchanged.
    Crops must have sides divisible by ``2 ** n_downsample``.
    """

    def __init__(self, ngf: int = 16, n_downsample: int = 2, n_blocks: int = 2, in_channels: int = 6) -> None:
        super().__init__()
        self.n_downsample = n_downsample
        self.body = GlobalGenerator(in_channels, ngf, n_downsample, n_blocks, with_head=False)
        init_weights(self.body)
        self.out = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ngf + in_channels, 3, 7))
        nn.init.zeros_(self.out[1].weight)
        nn.init.zeros_(self.out[1].bias)

    def residual(self, label: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) label and main crops in [-1, 1] → (B, 3, S, S) residual."""
        x = torch.cat([label, image], dim=1)  # (B, 6, S, S)
        return self.out(torch.cat([self.body(x), x], dim=1))  # (B, ngf + 6, S, S) → (B, 3, S, S)

    def forward(self, label: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) crops in [-1, 1] → refined (B, 3, S, S) crop in [-1, 1]."""
        return (image + self.residual(label, image)).clamp(-1.0, 1.0)


class FaceDiscriminator(nn.Module):
    """PatchGAN (the main training's :class:`~dancepipe.networks.NLayerDiscriminator`) on
    the 6-channel (label crop, face crop) pair; returns its feature maps, scores last."""

    def __init__(self, ndf: int = 16, n_layers: int = 2, in_channels: int = 6) -> None:
        super().__init__()
        self.net = NLayerDiscriminator(in_channels, ndf, n_layers)
        init_weights(self.net)

    def forward(self, label: torch.Tensor, image: torch.Tensor) -> list[torch.Tensor]:
        return self.net(torch.cat([label, image], dim=1))


def build_face_generator(arch: dict[str, Any]) -> FaceGenerator:
    """Rebuild the face generator from a checkpoint's ``arch`` dict."""
    return FaceGenerator(ngf=arch["ngf"], n_downsample=arch["n_downsample"], n_blocks=arch["n_blocks"],
                         in_channels=arch.get("in_channels", 6))


def freeze(module: nn.Module) -> nn.Module:
    """Frozen for good: eval mode, no gradients (the main generator during face training)."""
    return module.eval().requires_grad_(False)


# --------------------------------------------------------------------------- crops


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB → (N, 3, H, W) float32 in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    return t / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) float in [-1, 1] → (N, H, W, 3) uint8 RGB."""
    x = ((images.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def crop(images: torch.Tensor, boxes: Sequence[Box]) -> torch.Tensor:
    """Cut one same-size square per item: (B, C, H, W) + B boxes → (B, C, S, S)."""
    return torch.stack([images[i, :, y0:y0 + s, x0:x0 + s] for i, (x0, y0, s) in enumerate(boxes)])


def boxes_from_index(index: pd.DataFrame) -> list[Box | None]:
    """Face boxes of a labels ``index.parquet`` → one ``(x0, y0, size)`` or None per row."""
    missing = [c for c in BOX_COLUMNS if c not in index.columns]
    if missing:
        raise DancepipeError(
            f"labels index has no face box columns ({', '.join(missing)}); re-run the labels stage"
        )
    return [
        (int(x0), int(y0), int(s)) if ok else None
        for x0, y0, s, ok in zip(index["face_x0"], index["face_y0"], index["face_size"], index["face_ok"],
                                  strict=True)
    ]


def _check_box(box: Box, width: int, height: int, where: str) -> None:
    x0, y0, s = box
    if s <= 0 or x0 < 0 or y0 < 0 or x0 + s > width or y0 + s > height:
        raise DancepipeError(f"{where}: face box {box} does not lie inside the {width}x{height} image")


# --------------------------------------------------------------------------- refinement


class FaceRefiner:
    """A trained face generator applied to full frames (what rendering uses).

    ``applied`` and ``skipped`` count the items refined and the items passed through
    without a face box, so the caller can report how many frames had no usable face.
    """

    def __init__(self, model: FaceGenerator, crop_size: int, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.crop_size = int(crop_size)
        self.applied = 0
        self.skipped = 0

    @torch.inference_mode()
    def refine(self, label: torch.Tensor, image: torch.Tensor, boxes: Sequence[Box | None]) -> torch.Tensor:
        """Add the face residual inside each box of (B, 3, H, W) ``image`` in [-1, 1].

        ``boxes[i]`` is ``(x0, y0, size)`` in pixels or None to leave item ``i``
        unchanged. A box whose size differs from the trained crop size is resized to
        the trained size and back, so the network always sees faces at its scale.
        Returns a new tensor; pixels outside the boxes are copied unchanged.
        """
        if label.shape != image.shape or image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"expected label and image of one shape (B, 3, H, W), got {tuple(label.shape)} "
                             f"and {tuple(image.shape)}")
        if len(boxes) != image.shape[0]:
            raise ValueError(f"got {len(boxes)} face boxes for a batch of {image.shape[0]}")
        out = image.clone()
        todo = [i for i, b in enumerate(boxes) if b is not None]
        self.skipped += len(boxes) - len(todo)
        if not todo:
            return out
        h, w = image.shape[-2:]
        for i in todo:
            _check_box(boxes[i], w, h, "refine")  # type: ignore[arg-type]
        by_size: dict[int, list[int]] = {}
        for i in todo:
            by_size.setdefault(boxes[i][2], []).append(i)  # type: ignore[index]
        for size, items in by_size.items():
            bx = [boxes[i] for i in items]
            lab = crop(label[items], bx).to(self.device, torch.float32)  # type: ignore[arg-type]
            img = crop(image[items], bx).to(self.device, torch.float32)  # type: ignore[arg-type]
            if size != self.crop_size:
                lab_s = F.interpolate(lab, size=self.crop_size, mode="bilinear", align_corners=False)
                img_s = F.interpolate(img, size=self.crop_size, mode="bilinear", align_corners=False)
                res = F.interpolate(self.model.residual(lab_s, img_s), size=size, mode="bilinear",
                                    align_corners=False)
                new = (img + res).clamp(-1.0, 1.0)
            else:
                new = self.model(lab, img)
            new = new.to(out.device, out.dtype)
            for k, i in enumerate(items):
                x0, y0, s = boxes[i]  # type: ignore[misc]
                out[i, :, y0:y0 + s, x0:x0 + s] = new[k]
        self.applied += len(todo)
        return out

    def summary(self) -> str:
        """One line for the logs: how many frames were refined and how many skipped."""
        return (f"face refinement applied to {self.applied} frame(s), skipped {self.skipped} "
                f"frame(s) without a usable face")


def load_face_model(path: str | Path, device: torch.device | str = "cpu") -> FaceRefiner | None:
    """Load ``models/face.pt``; None (logged) when it was written with the face stage off."""
    path = Path(path)
    ckpt = _read_checkpoint(path)
    if not ckpt["enabled"]:
        log.info("%s: face refinement is disabled (train_face.enabled was false); "
                 "rendering uses the main generator alone", path)
        return None
    try:
        model = build_face_generator(ckpt["arch"])
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, RuntimeError, TypeError) as e:
        raise DancepipeError(f"{path}: face weights do not match their recorded architecture ({e.__class__.__name__})") from e
    return FaceRefiner(model, ckpt["arch"]["crop_size"], device)


def _read_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DancepipeError(f"{path}: face model does not exist (run the train_face stage first)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as e:
        raise DancepipeError(f"{path}: not a readable face model checkpoint ({e.__class__.__name__})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise DancepipeError(f"{path}: not a face model (expected format '{FORMAT}')")
    return ckpt


# --------------------------------------------------------------------------- training data


@dataclass
class FaceCrops:
    """Training faces: uint8 (N, S, S, 3) crops of the label, main output and real frame."""

    frames: np.ndarray
    label: np.ndarray
    main: np.ndarray
    real: np.ndarray
    total: int  # training frames considered
    skipped: int  # of those, frames without a usable face box

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def size(self) -> int:
        return int(self.label.shape[1])


def _read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DancepipeError(f"{path}: image is missing or unreadable")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _frame_table(frames_dir: Path, labels_dir: Path) -> pd.DataFrame:
    frames, _ = read_table(frames_dir / "index.parquet")
    labels, _ = read_table(labels_dir / "index.parquet")
    for name, df, cols in (("frames", frames, ("frame", "file")), ("labels", labels, ("frame", "file", *BOX_COLUMNS))):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            d = frames_dir if name == "frames" else labels_dir
            raise DancepipeError(f"{d / 'index.parquet'}: missing column(s) {', '.join(missing)}; "
                                 f"re-run the {name} stage")
    table = labels[["frame", "file", *BOX_COLUMNS]].merge(
        frames[["frame", "file"]], on="frame", suffixes=("_label", "_frame"), how="inner"
    )
    return table.sort_values("frame").reset_index(drop=True)


# Training frames are cut into this many chains that run through the generator side by
# side, one batch per step. On the 1,413 training frames of the demo dancer, one chain
# (batch 1) took most of this stage's time; 16 chains measured 1.8x faster per frame.
CHAINS = 16


def chain_segments(frames: np.ndarray, chains: int) -> list[tuple[int, int]]:
    """Cut rows of sorted ``frames`` into at most about ``chains`` runs of consecutive frames.

    Returns (start, stop) row ranges covering every row once, in order. A break in the
    frame numbers always starts a new run, so the recurrence never spans a gap.
    """
    n = len(frames)
    if n == 0:
        return []
    breaks = [0, *(np.flatnonzero(np.diff(frames) != 1) + 1).tolist(), n]
    target = max(1, -(-n // max(1, chains)))
    out = []
    for lo, hi in zip(breaks[:-1], breaks[1:], strict=True):
        pieces = -(-(hi - lo) // target)
        edges = np.linspace(lo, hi, pieces + 1).round().astype(int)
        out += [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
    return out


def collect_face_crops(
    generator: nn.Module,
    frames_dir: str | Path,
    labels_dir: str | Path,
    frames: Sequence[int] | None = None,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    chains: int = CHAINS,
) -> FaceCrops:
    """Run the frozen main generator over the training frames and cut the face crops.

    Each frame is conditioned on the previous generated frame, as in rendering; a
    chain starts from zeros (as rendering does at its first frame). The frames are
    cut into ``chains`` runs (:func:`chain_segments`) that advance in lockstep as one
    batch, so the recurrence is kept while the generator sees batches. ``frames``
    restricts to the generator's training split; frames whose label has no usable face
    box are counted in ``skipped`` and produce no crop. The generator is frozen first
    (eval mode, no gradients) and never modified.
    """
    freeze(generator)
    frames_dir, labels_dir = Path(frames_dir), Path(labels_dir)
    table = _frame_table(frames_dir, labels_dir)
    if frames is not None:
        table = table[table["frame"].isin(set(int(f) for f in frames))].reset_index(drop=True)
    if table.empty:
        raise DancepipeError(f"{labels_dir / 'index.parquet'}: no frame of the generator's training split "
                             f"has both a label and a target frame")
    device = torch.device(device)
    index = str(labels_dir / "index.parquet")
    segments = chain_segments(table["frame"].to_numpy(), chains)
    rows = list(table.itertuples(index=False))
    found: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # row -> (label, main, real) crops
    size: int | None = None
    prev: dict[int, torch.Tensor] = {}  # segment -> its last generated frame
    skipped = 0
    with torch.inference_mode():
        for t in range(max(b - a for a, b in segments)):
            active = [k for k, (a, b) in enumerate(segments) if a + t < b]
            batch_rows = [segments[k][0] + t for k in active]
            label_np = np.stack([_read_rgb(labels_dir / rows[r].file_label) for r in batch_rows])
            label = to_tensor(label_np).to(device)
            prevs = torch.cat([prev[k] if t else torch.zeros_like(label[:1]) for k in active])
            fake = generator(label, prevs)
            if fake.shape != label.shape:
                raise DancepipeError(f"main generator returned {tuple(fake.shape)} for a label of {tuple(label.shape)}")
            for j, k in enumerate(active):
                prev[k] = fake[j:j + 1]
            h, w = label_np.shape[1:3]
            for j, r in enumerate(batch_rows):
                row = rows[r]
                if not row.face_ok:
                    skipped += 1
                    continue
                box = (int(row.face_x0), int(row.face_y0), int(row.face_size))
                _check_box(box, w, h, index)
                real_np = _read_rgb(frames_dir / row.file_frame)
                if real_np.shape != label_np[j].shape:
                    raise DancepipeError(f"{frames_dir / row.file_frame}: frame is {real_np.shape[1]}x"
                                         f"{real_np.shape[0]} but its label is {w}x{h}")
                x0, y0, s = box
                if size is not None and s != size:
                    raise DancepipeError(f"{index}: face boxes of different sizes ({size} and {s} px); "
                                         f"re-run the labels stage")
                size = s
                found[r] = (label_np[j, y0:y0 + s, x0:x0 + s], to_uint8(crop(fake[j:j + 1], [box]))[0],
                            real_np[y0:y0 + s, x0:x0 + s])
            if progress is not None:
                progress(len(batch_rows))
    if not found:
        raise DancepipeError(f"{index}: none of the {len(table)} training frames has a "
                             f"usable face box; set train_face.enabled: false or check the poses")
    order = sorted(found)
    return FaceCrops(
        frames=np.array([int(rows[r].frame) for r in order], dtype=np.int64),
        label=np.stack([found[r][0] for r in order]), main=np.stack([found[r][1] for r in order]),
        real=np.stack([found[r][2] for r in order]), total=len(table), skipped=skipped,
    )


# --------------------------------------------------------------------------- training


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
        lab = to_tensor(crops.label[i:i + batch]).to(device)
        img = to_tensor(crops.main[i:i + batch]).to(device)
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
        lab = to_tensor(crops.label[idx]).to(device)
        main = to_tensor(crops.main[idx]).to(device)
        real = to_tensor(crops.real[idx]).to(device)

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


# --------------------------------------------------------------------------- checkpoint + stage entry


def _state_digest(module: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def disabled_payload(cfg: FaceConfig) -> dict[str, Any]:
    """The checkpoint written when ``train_face.enabled`` is false: no weights."""
    return {"format": FORMAT, "enabled": False, "arch": {}, "state_dict": None, "train": cfg.model_dump()}


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
        save_file(disabled_payload(cfg), out_path)
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
    crops = collect_face_crops(generator, frames_dir, labels_dir, split, device)
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
    payload = {
        "format": FORMAT,
        "enabled": True,
        "arch": {"ngf": cfg.ngf, "n_downsample": cfg.n_downsample, "n_blocks": cfg.n_blocks, "in_channels": 6,
                 "crop_size": crops.size},
        "state_dict": result.model.state_dict(),
        "train": {**cfg.model_dump(), "feature_net": feature_net},
        "step": cfg.steps,
        "metrics": result.metrics,
    }
    save_file(payload, out_path)
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

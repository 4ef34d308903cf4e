"""The evaluate stage: how good is the generator, measured where the truth is known.

**Self-reenactment** on the held-out tail of the target video (``split.holdout_frames``
in the generator checkpoint; the train stage never showed these frames to the
networks): the target's own labels go through the generator sequentially, exactly as
in rendering, and the result is compared with the real frames:

* ``ssim`` / ``psnr``: whole frame; ``ssim_box`` / ``psnr_box``: inside the subject's
  box (the label keypoints' extent padded by 15 % of the body height), where the
  person is and where errors matter;
* ``pose_distance``: the pose model runs on each generated frame; the mean distance of
  its keypoints to the conditioning keypoints, divided by the body height (keypoint
  extent), averaged over frames where a person was found; ``no_person_rate``: share of
  frames where the pose model found nobody;
* ``warp_error``: temporal consistency — the previous generated frame is warped onto
  the current one with Farnebäck flow estimated on the *real* frames (occlusions
  excluded by a forward-backward check) and the mean absolute difference taken
  (0..1). ``warp_error_real`` is the same measure on the real frames, the floor a
  perfect generator would reach with that flow.

**Transfer** (the rendered ``outputs/transfer.mp4``, no ground truth): ``pose_distance``
to the normalised source keypoints the frames were generated from, ``detection_rate``
(share of frames with a person found) and ``warp_error`` with the flow estimated on the
generated frames themselves (there are no real frames of the target doing this motion;
this measures flicker that a smooth motion field cannot explain, so it is a lower bound).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import Field, field_validator

from dancepipe import metrics as M
from dancepipe.atomic import atomic_path
from dancepipe.config import StageConfig
from dancepipe.errors import DancepipeError
from dancepipe.keypoints import columns_to_keypoints
from dancepipe.render import (
    check_device,
    face_boxes,
    generate_sequence,
    load_face,
    load_rgb,
    read_index,
    resolve_device,
)
from dancepipe.video import iter_frames, prefetch

log = logging.getLogger(__name__)

ProgressFn = Callable[[int], None]

# Declared in dvc.yaml as metrics (JSON) and plots (CSV, x = frame).
EVAL_JSON = "eval.json"
TRANSFER_JSON = "transfer.json"
EVAL_CSV = "eval_per_frame.csv"
TRANSFER_CSV = "transfer_per_frame.csv"

EVAL_COLUMNS = ("frame", "ssim", "psnr", "ssim_box", "psnr_box", "pose_distance", "person_found",
                "warp_error", "warp_error_real")
TRANSFER_COLUMNS = ("frame", "pose_distance", "person_found", "warp_error")


class EvaluateConfig(StageConfig):
    """``evaluate`` section."""

    device: str = Field("auto", description="where the generator runs: auto, cpu, cuda, cuda:N or mps")
    pose_model: str = Field("yolov8n-pose.pt", description="pose model run on generated frames")
    imgsz: int = Field(320, ge=32, le=1280, multiple_of=32, description="pose model inference size")
    det_conf: float = Field(0.25, gt=0.0, lt=1.0, description="minimum person detection score")
    kp_conf: float = Field(0.5, ge=0.0, le=1.0, description="detected keypoints under this confidence are ignored")
    match_iou: float = Field(
        0.3, gt=0.0, le=1.0,
        description="a detection is the subject only if its box overlaps the conditioning pose's box by this IoU",
    )
    batch: int = Field(8, ge=1, le=64, description="generated frames per pose-model batch")
    face: bool = Field(True, description="apply the face GAN as render does")
    sample_frames: int = Field(4, ge=0, le=16, description="frames shown in the report")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        return check_device(v)


# ---------------------------------------------------------------------------- pose model


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``a`` (N, 4) with one box ``b`` (4,), xyxy."""
    x0 = np.maximum(a[:, 0], b[0])
    y0 = np.maximum(a[:, 1], b[1])
    x1 = np.minimum(a[:, 2], b[2])
    y1 = np.minimum(a[:, 3], b[3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def detect_subjects(
    model: Any, images: list[np.ndarray], refs: list[np.ndarray], *, imgsz: int, det_conf: float, kp_conf: float,
    match_iou: float = 0.3,
) -> list[np.ndarray | None]:
    """Run the pose model on RGB ``images`` and return, per image, the subject's (17, 3) keypoints.

    The subject is the detection whose box overlaps most with the box of the
    reference keypoints (``refs``, the keypoints the frame was generated from), and
    only if that overlap reaches ``match_iou``: a generated frame in which the only
    person found is someone else (the demo target has a bystander in the background)
    has *not* reproduced the subject, and measuring the distance to the bystander's
    keypoints would be meaningless. With an empty reference the highest-scoring person
    is taken. Keypoints under ``kp_conf`` are NaN. None where the subject was not found.
    """
    if not images:
        return []
    bgr = [np.ascontiguousarray(img[..., ::-1]) for img in images]
    results = model.predict(bgr, imgsz=imgsz, conf=det_conf, verbose=False)
    out: list[np.ndarray | None] = []
    for res, ref, img in zip(results, refs, images, strict=True):
        if res.keypoints is None or res.boxes is None or len(res.boxes) == 0:
            out.append(None)
            continue
        kps = res.keypoints.data.cpu().numpy().astype(np.float64)  # (N, 17, 3)
        boxes = res.boxes.xyxy.cpu().numpy().astype(np.float64)
        scores = res.boxes.conf.cpu().numpy()
        pick = int(np.argmax(scores))
        ref_box = M.subject_box(ref, img.shape[1], img.shape[0], pad=0.0)
        if ref_box is not None:
            iou = _iou(boxes, np.asarray(ref_box, dtype=np.float64))
            pick = int(np.argmax(iou))
            if iou[pick] < match_iou:
                out.append(None)
                continue
        k = kps[pick].copy()
        k[k[:, 2] < kp_conf, :2] = np.nan
        out.append(k)
    return out


class _PoseBatcher:
    """Collects generated frames and runs the pose model on full batches (constant memory)."""

    def __init__(self, model: Any, cfg: EvaluateConfig, rows: list[dict[str, Any]]) -> None:
        self.model, self.cfg, self.rows = model, cfg, rows
        self.pending: list[tuple[int, np.ndarray, np.ndarray]] = []

    def add(self, row_index: int, image: np.ndarray, ref: np.ndarray) -> None:
        self.pending.append((row_index, image, ref))
        if len(self.pending) >= self.cfg.batch:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        found = detect_subjects(
            self.model, [p[1] for p in self.pending], [p[2] for p in self.pending],
            imgsz=self.cfg.imgsz, det_conf=self.cfg.det_conf, kp_conf=self.cfg.kp_conf, match_iou=self.cfg.match_iou,
        )
        for (i, _img, ref), kps in zip(self.pending, found, strict=True):
            self.rows[i]["person_found"] = int(kps is not None)
            self.rows[i]["pose_distance"] = M.pose_distance(kps, ref)
        self.pending = []


# ---------------------------------------------------------------------------- evaluation


@dataclasses.dataclass
class Evaluation:
    """Summary numbers, per-frame table and sample images of one evaluation."""

    summary: dict[str, Any]
    per_frame: pd.DataFrame
    samples: list[tuple[int, list[np.ndarray]]]  # (frame, panels)


def _sample_positions(n: int, k: int) -> set[int]:
    if k <= 0 or n == 0:
        return set()
    return {int(round(x)) for x in np.linspace(0, n - 1, min(k, n))}


def evaluate_holdout(
    generator: torch.nn.Module,
    pose_model: Any,
    cfg: EvaluateConfig,
    *,
    frames_dir: str | Path,
    labels_dir: str | Path,
    holdout_frames: Iterable[int],
    face: Any | None = None,
    device: torch.device | str = "cpu",
    progress: ProgressFn | None = None,
) -> Evaluation:
    """Self-reenactment metrics on ``holdout_frames`` (see the module docstring)."""
    device = torch.device(device) if isinstance(device, str) else device
    wanted = sorted({int(f) for f in holdout_frames})
    if not wanted:
        raise DancepipeError("the generator checkpoint has no held-out frames (train.holdout_fraction is 0?)")
    labels = read_index(labels_dir, "labels").set_index("frame", drop=False)
    frames = read_index(frames_dir, "frames").set_index("frame", drop=False)
    missing = [f for f in wanted if f not in labels.index or f not in frames.index]
    if missing:
        raise DancepipeError(
            f"{labels_dir} / {frames_dir}: {len(missing)} held-out frames are missing, e.g. frame {missing[0]}; "
            "the checkpoint was trained on other data"
        )
    lab = labels.loc[wanted].reset_index(drop=True)
    kps = columns_to_keypoints(lab)
    label_paths = [Path(labels_dir) / f for f in lab["file"]]
    real_paths = [Path(frames_dir) / frames.loc[f, "file"] for f in wanted]

    def read_pairs() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for lp, rp in zip(label_paths, real_paths, strict=True):
            yield load_rgb(lp), load_rgb(rp)

    source = prefetch(read_pairs(), size=8)
    current: list[tuple[np.ndarray, np.ndarray]] = []

    def labels_iter() -> Iterator[np.ndarray]:
        for label, real in source:
            current.append((label, real))
            yield label

    rows: list[dict[str, Any]] = []
    poses = _PoseBatcher(pose_model, cfg, rows)
    sample_at = _sample_positions(len(wanted), cfg.sample_frames)
    samples: list[tuple[int, list[np.ndarray]]] = []
    prev_gen = prev_real = None
    gen_iter = generate_sequence(generator, labels_iter(), device=device, face=face, boxes=face_boxes(lab))
    for i, gen in enumerate(gen_iter):
        label, real = current.pop(0)
        if real.shape != gen.shape:
            raise DancepipeError(
                f"{real_paths[i]}: real frame is {real.shape[1]}x{real.shape[0]} but the generator made "
                f"{gen.shape[1]}x{gen.shape[0]}"
            )
        row: dict[str, Any] = {"frame": wanted[i], "ssim": M.ssim(gen, real), "psnr": M.psnr(gen, real)}
        box = M.subject_box(kps[i], gen.shape[1], gen.shape[0])
        if box is not None:
            x0, y0, x1, y1 = box
            row["ssim_box"] = M.ssim(gen[y0:y1, x0:x1], real[y0:y1, x0:x1])
            row["psnr_box"] = M.psnr(gen[y0:y1, x0:x1], real[y0:y1, x0:x1])
        else:
            row["ssim_box"] = row["psnr_box"] = math.nan
        if prev_gen is not None and wanted[i] == wanted[i - 1] + 1:
            back = M.farneback_flow(real, prev_real)
            mask = M.consistency_mask(back, M.farneback_flow(prev_real, real))
            row["warp_error"] = M.warp_error(prev_gen, gen, back, mask)
            row["warp_error_real"] = M.warp_error(prev_real, real, back, mask)
        else:
            row["warp_error"] = row["warp_error_real"] = math.nan
        rows.append(row)
        poses.add(i, gen, kps[i])
        if i in sample_at:
            samples.append((wanted[i], [label, gen, real]))
        prev_gen, prev_real = gen, real
        if progress is not None:
            progress(1)
    poses.flush()
    df = pd.DataFrame(rows, columns=list(EVAL_COLUMNS))
    summary = {
        "frames": len(df),
        "ssim": M.nanmean(df["ssim"]),
        "psnr": M.nanmean(df["psnr"]),
        "ssim_box": M.nanmean(df["ssim_box"]),
        "psnr_box": M.nanmean(df["psnr_box"]),
        "pose_distance": M.nanmean(df["pose_distance"]),
        "no_person_rate": float(1.0 - df["person_found"].mean()),
        "warp_error": M.nanmean(df["warp_error"]),
        "warp_error_real": M.nanmean(df["warp_error_real"]),
    }
    return Evaluation(summary, df, samples)


def evaluate_transfer(
    pose_model: Any,
    cfg: EvaluateConfig,
    *,
    labels_dir: str | Path,
    video: str | Path,
    progress: ProgressFn | None = None,
) -> Evaluation:
    """Pose distance, detection rate and flicker of the rendered transfer video."""
    labels = read_index(labels_dir, "labels")
    kps = columns_to_keypoints(labels)
    n = len(labels)
    sample_at = _sample_positions(n, cfg.sample_frames)
    rows: list[dict[str, Any]] = []
    poses = _PoseBatcher(pose_model, cfg, rows)
    samples: list[tuple[int, list[np.ndarray]]] = []
    prev = None
    count = 0
    h, w = load_rgb(Path(labels_dir) / labels["file"].iloc[0]).shape[:2]
    for i, fr in enumerate(prefetch(iter_frames(video), size=8)):
        count = i + 1
        if i >= n:
            continue  # counted for the error below
        image = np.ascontiguousarray(fr.image[:h, :w])  # drop the encoder's even-size padding, if any
        row: dict[str, Any] = {"frame": int(labels["frame"].iloc[i])}
        row["warp_error"] = M.temporal_error(prev, image, (prev, image)) if prev is not None else math.nan
        rows.append(row)
        poses.add(i, image, kps[i])
        if i in sample_at:
            samples.append((row["frame"], [load_rgb(Path(labels_dir) / labels["file"].iloc[i]), image]))
        prev = image
        if progress is not None:
            progress(1)
    poses.flush()
    if count != n:
        raise DancepipeError(f"{video}: has {count} frames but {labels_dir} has {n} labels; rerun the render stage")
    df = pd.DataFrame(rows, columns=list(TRANSFER_COLUMNS))
    summary = {
        "frames": n,
        "pose_distance": M.nanmean(df["pose_distance"]),
        "detection_rate": float(df["person_found"].mean()),
        "warp_error": M.nanmean(df["warp_error"]),
    }
    return Evaluation(summary, df, samples)


# ---------------------------------------------------------------------------- outputs


def _clean(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 6) if math.isfinite(v) else None
    return v


def write_json(path: str | Path, summary: dict[str, Any]) -> None:
    """Metrics JSON for ``dvc metrics``: flat keys, NaN/inf written as null."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({k: _clean(v) for k, v in summary.items()}, indent=2) + "\n", encoding="utf-8")


def write_csv(path: str | Path, df: pd.DataFrame) -> None:
    """Per-frame series for ``dvc plots`` (x = frame); missing values are empty cells."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g", na_rep="")


@dataclasses.dataclass
class EvaluateResult:
    holdout: Evaluation
    transfer: Evaluation
    face_note: str
    outputs: list[str]


def run_evaluate(
    cfg: EvaluateConfig,
    *,
    generator_path: str | Path,
    face_path: str | Path | None,
    frames_dir: str | Path,
    labels_dir: str | Path,
    transfer_labels_dir: str | Path,
    transfer_video: str | Path,
    metrics_dir: str | Path,
    report_path: str | Path,
    train_curves: str | Path | None = None,
    progress: ProgressFn | None = None,
    pose_model: Any | None = None,
) -> EvaluateResult:
    """The evaluate stage's entry point: both evaluations, metrics files and the HTML report."""
    from dancepipe.checkpoint import load_generator
    from dancepipe.report import write_report

    device = resolve_device(cfg.device)
    if not Path(generator_path).is_file():
        raise DancepipeError(f"{generator_path}: generator checkpoint does not exist (run the train stage first)")
    if not Path(transfer_video).is_file():
        raise DancepipeError(f"{transfer_video}: transfer video does not exist (run the render stage first)")
    generator, meta = load_generator(generator_path, device)
    holdout = meta.get("split", {}).get("holdout_frames", [])
    face, note = load_face(face_path, cfg.face, device)
    if pose_model is None:
        from dancepipe.posemodel import load_pose_model

        pose_model = load_pose_model(cfg.pose_model, str(device))
    held = evaluate_holdout(generator, pose_model, cfg, frames_dir=frames_dir, labels_dir=labels_dir,
                            holdout_frames=holdout, face=face, device=device, progress=progress)
    trans = evaluate_transfer(pose_model, cfg, labels_dir=transfer_labels_dir, video=transfer_video,
                              progress=progress)
    mdir = Path(metrics_dir)
    write_json(mdir / EVAL_JSON, held.summary)
    write_json(mdir / TRANSFER_JSON, trans.summary)
    write_csv(mdir / EVAL_CSV, held.per_frame)
    write_csv(mdir / TRANSFER_CSV, trans.per_frame)
    write_report(report_path, holdout=held, transfer=trans, train_curves=train_curves,
                 notes=[note, f"generator: {generator_path} (step {meta.get('step')})",
                        f"pose model: {cfg.pose_model}"])
    outputs = [str(mdir / n) for n in (EVAL_JSON, TRANSFER_JSON, EVAL_CSV, TRANSFER_CSV)] + [str(report_path)]
    return EvaluateResult(held, trans, note, outputs)

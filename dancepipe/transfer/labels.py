"""The labels stage: stick-figure label images for training and for transfer.

``train``: the target's own keypoints, mapped through the target's crop/resize
transform, so every label lies exactly on its frame. ``transfer``: the source's
keypoints carried into the target's space by the transfer chain
(:mod:`dancepipe.transfer.chain`, from normfit's mapping and the target's profile),
then through the same target transform. Either way the output directory holds one PNG
per pose-table row (black where no person is drawn, never skipped), an
``index.parquet`` with the keypoints in label pixels and the face boxes the face GAN
uses, and a contact sheet (image | label | overlay) for a quick look at the alignment.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import Field

from dancepipe.advice.coverage import FILE as COVERAGE_FILE
from dancepipe.advice.coverage import measure_coverage, target_repertoire, write_coverage
from dancepipe.atomic import atomic_path
from dancepipe.config import StageConfig
from dancepipe.errors import DancepipeError
from dancepipe.pose.keypoints import (
    DIGEST_COLUMN,
    KEYPOINT_COLUMNS,
    columns_to_keypoints,
    file_digest,
    keypoints_to_columns,
    read_table,
    write_table,
)
from dancepipe.pose.skeleton import DrawStyle, draw_skeleton, visible_mask
from dancepipe.transfer.chain import ChainRecord, TargetSpace, TransferLabelsConfig, transfer_keypoints
from dancepipe.transfer.facebox import compute_face_boxes
from dancepipe.transfer.facing import dominant_facing
from dancepipe.transfer.head import FACE
from dancepipe.transfer.normalize import load_mapping
from dancepipe.transfer.profile import read_profile
from dancepipe.transfer.retarget import check_target_bones
from dancepipe.video.crop import CropTransform, load_frames_dir
from dancepipe.video.images import read_rgb

log = logging.getLogger(__name__)

Kind = Literal["train", "transfer"]


@dataclasses.dataclass(frozen=True)
class CoverageOf:
    """What measuring a dance's coverage needs: the target's training labels and split, and the names to warn with."""

    train_labels: str | Path
    holdout_fraction: float
    target: str
    dance: str


class DrawConfig(StageConfig):
    """``labels.draw``: how stick figures look (shared by both kinds)."""

    line_width: float = Field(0.02, gt=0, le=0.2)
    joint_radius: float = Field(0.012, gt=0, le=0.2)
    min_conf: float = Field(0.0, ge=0, le=1)
    min_joints: int = Field(
        8, ge=1, le=17,
        description="a label shows a person only with at least this many visible keypoints; fewer is a body "
                    "mostly outside the picture, which the generator cannot draw (the frame is left empty)",
    )
    face_box_fraction: float = Field(0.1667, gt=0, le=1)
    workers: int = Field(2, ge=1, le=64)


class TrainLabelsConfig(StageConfig):
    """``labels.train``."""

    contact_sheet_frames: int = Field(4, ge=0, le=32)


class LabelsConfig(StageConfig):
    """``labels`` section: ``draw`` shared, ``train``/``transfer`` per kind."""

    draw: DrawConfig = DrawConfig()
    train: TrainLabelsConfig = TrainLabelsConfig()
    transfer: TransferLabelsConfig = TransferLabelsConfig()


def load_labels_config(kind: Kind, params_path: str | Path = "params.yaml") -> LabelsConfig:
    """The ``labels`` section as the labels stage of ``kind`` (labels_train or labels_transfer) reads it: ``draw`` and its own kind's subsection.

    The other kind's subsection is neither read nor validated (dvc.yaml lists
    ``labels.draw`` and ``labels.<kind>`` only, so a bad value there must not stop this
    stage); every other key is still checked, so misspellings are caught.
    """
    from dancepipe.config import build_config, load_params

    params = load_params(params_path)
    if "labels" not in params:
        raise DancepipeError(f"{params_path}: section 'labels' is missing")
    section = dict(params["labels"] or {})
    section.pop("transfer" if kind == "train" else "train", None)
    return build_config(LabelsConfig, section, section="labels", source=str(params_path))


FACE_COLUMNS = ["face_x0", "face_y0", "face_size", "face_ok"]
INDEX_SCHEMA = pa.schema(
    [
        pa.field("frame", pa.int64()),
        pa.field("file", pa.string()),
        pa.field("timestamp", pa.float64()),
        pa.field("person_found", pa.bool_()),
    ]
    + [pa.field(c, pa.float32()) for c in KEYPOINT_COLUMNS]
    + [
        pa.field("face_x0", pa.int32()),
        pa.field("face_y0", pa.int32()),
        pa.field("face_size", pa.int32()),
        pa.field("face_ok", pa.bool_()),
        pa.field(DIGEST_COLUMN, pa.string()),
    ]
)


# --------------------------------------------------------------------------- inputs


def load_target_frames(frames_dir: str | Path) -> tuple[CropTransform, pd.DataFrame]:
    """The target's crop transform and frame index (frame → JPEG file)."""
    index, transform = load_frames_dir(frames_dir, "target frames", check_files=False)
    return transform, index


def _load_poses(path: str | Path) -> tuple[pd.DataFrame, np.ndarray]:
    df, _ = read_table(path)
    missing = [c for c in ("frame", "timestamp", "person_found", *KEYPOINT_COLUMNS) if c not in df.columns]
    if missing:
        raise DancepipeError(f"{path}: not a keypoint table (missing column '{missing[0]}')")
    if len(df) == 0:
        raise DancepipeError(f"{path}: keypoint table has no rows")
    kps = columns_to_keypoints(df).astype(np.float64)
    kps[~df["person_found"].to_numpy(bool)] = np.nan
    return df, kps


# --------------------------------------------------------------------------- drawing


# Below this label size the thread pool costs more than it saves (see write_label_images).
PARALLEL_MIN_PIXELS = 256 * 256


def write_label_images(
    kps: np.ndarray, files: list[str], out_dir: Path, width: int, height: int, style: DrawStyle,
    workers: int = 1, progress: Callable[[int], None] | None = None,
    min_pixels_parallel: int = PARALLEL_MIN_PIXELS,
) -> list[str]:
    """Draw and write one PNG per row of (N, 17, 3) label-pixel keypoints; their digests, in row order.

    With ``workers > 1`` frames are drawn and encoded on a thread pool (OpenCV releases
    the GIL while drawing and compressing); the output is identical either way. Labels
    smaller than ``min_pixels_parallel`` pixels are written serially: at that size the
    Python-side drawing calls (which hold the GIL) dominate and threads only add
    overhead (measured: 0.84x at 128x192, 1.48x at 512x512 with 2 workers).
    """
    if width * height < min_pixels_parallel:
        workers = 1

    def one(i: int) -> str:
        img = draw_skeleton(kps[i], width, height, style)
        path = out_dir / files[i]
        ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        if not ok:
            raise DancepipeError(f"{path}: could not encode the label image")
        data = buf.tobytes()
        try:
            path.write_bytes(data)
        except OSError as e:
            raise DancepipeError(f"{path}: could not write the label image ({e.strerror})") from e
        return file_digest(data)

    digests: list[str] = []
    if workers <= 1:
        for i in range(len(kps)):
            digests.append(one(i))
            if progress:
                progress(1)
        return digests
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for fut in [pool.submit(one, i) for i in range(len(kps))]:
            digests.append(fut.result())
            if progress:
                progress(1)
    return digests


def _read_frame(path: Path, width: int, height: int) -> np.ndarray:
    img = read_rgb(path)
    if img.shape[:2] != (height, width):
        img = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
    return img


def contact_sheet(images: list[np.ndarray], labels: list[np.ndarray], captions: list[str]) -> np.ndarray:
    """Rows of image | label | overlay (label pixels painted over the image)."""
    rows = []
    for img, lab, cap in zip(images, labels, captions, strict=True):
        mask = lab.any(axis=2, keepdims=True)
        overlay = np.where(mask, (0.35 * img + 0.65 * lab).astype(np.uint8), img)
        row = np.concatenate([img, lab, overlay], axis=1)
        scale = max(0.3, img.shape[0] / 500)
        cv2.putText(row, cap, (3, int(14 * scale / 0.4)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 0), 1, cv2.LINE_AA)
        rows.append(row)
    return np.concatenate(rows, axis=0)


def _pick(n: int, candidates: np.ndarray) -> np.ndarray:
    if n <= 0 or len(candidates) == 0:
        return np.zeros(0, dtype=int)
    return candidates[np.unique(np.linspace(0, len(candidates) - 1, min(n, len(candidates))).round().astype(int))]


def _write_contact_sheet(
    out_dir: Path, kind: str, n: int, found: np.ndarray, frames: np.ndarray, files: list[str],
    frames_dir: Path, frame_index: pd.DataFrame, w: int, h: int,
) -> None:
    """``contact_sheet.png`` with up to ``n`` evenly spaced labels (those with a person first)."""
    picks = _pick(n, np.flatnonzero(found) if found.any() else np.arange(len(frames)))
    if not len(picks):
        return
    if kind == "train":
        by_frame = dict(zip(frame_index["frame"].to_numpy(np.int64), frame_index["file"], strict=True))
        img_files = [by_frame[frames[i]] for i in picks]
    else:  # source frames are not a dependency: show the label on target frames
        img_files = [frame_index["file"].iloc[j] for j in _pick(len(picks), np.arange(len(frame_index)))]
        img_files += img_files[-1:] * (len(picks) - len(img_files))
    sheet = contact_sheet(
        [_read_frame(frames_dir / f, w, h) for f in img_files],
        [read_rgb(out_dir / files[i]) for i in picks],
        [f"#{frames[i]}" for i in picks],
    )
    cv2.imwrite(str(out_dir / "contact_sheet.png"), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))


# --------------------------------------------------------------------------- stage entry point


def target_space(norm: str | Path, profile: str | Path, cfg: TransferLabelsConfig) -> TargetSpace:
    """The normfit mapping and what of the target's profile the enabled steps read."""
    data = read_profile(profile)
    bones = None
    if cfg.retarget == "bones":
        bones = check_target_bones(data["bones"], data["person_frames"], str(profile))
    return TargetSpace(
        mapping=load_mapping(norm), bones=bones,
        facing=dominant_facing(data["facing"]) if cfg.facing == "target" else None,
        head=data["head"] if cfg.head != "source" else None,
    )


def chain_summary(record: ChainRecord, target: TargetSpace) -> dict[str, Any]:
    """The chain's record as the label index and the stage summary keep it (the metrics read it there)."""
    info: dict[str, Any] = {"bone_ratios": record.bone_ratios}
    if record.ran("facing"):
        info.update(target_facing=target.facing, mirrored_frames=int(record.mirrored.sum()))
    info["headed_frames"] = int(record.changed("head").sum())
    if record.ran("legs"):
        info["uncrossed_frames"] = int(record.changed("legs").sum())
    return info


def chain_log(record: ChainRecord, target: TargetSpace) -> list[str]:
    """One log line per correcting step, in the chain's order."""
    n = record.frames
    lines = []
    if record.ran("facing"):
        way = {"front": "the camera", "back": "away"}.get(target.facing or "", "both ways (none mirrored)")
        lines.append(f"facing: the target faces {way}; {int(record.mirrored.sum())} of {n} source frames "
                     "mirrored to match")
    lines.append(f"head: {int(record.changed('head').sum())} of {n} source frames got the target's head "
                 "(labels.transfer.head)")
    if record.ran("legs"):
        lines.append(f"legs: {int(record.changed('legs').sum())} of {n} source frames had crossed legs; "
                     "they are named by their side of the hips")
    if record.bone_ratios is not None:
        lines.append("retarget: bone ratios " + ", ".join(f"{b} {r:.3f}" for b, r in record.bone_ratios.items()))
    return lines


def run_labels(
    kind: Kind, poses: str | Path, frames_dir: str | Path, out: str | Path, cfg: LabelsConfig,
    norm: str | Path | None = None, profile: str | Path | None = None,
    progress: Callable[[int], None] | None = None, coverage_of: CoverageOf | None = None,
) -> dict[str, Any]:
    """Write ``out/`` for ``kind``: PNG labels, ``index.parquet`` and ``contact_sheet.png``.

    ``train`` reads the target pose table; ``transfer`` reads the source pose table and
    needs ``norm`` (normfit's stats.json) and ``profile`` (the target's profile). Labels
    are the size of the target frames. With ``coverage_of`` a transfer also writes
    ``coverage.json``: how much of the dance the target's footage covers
    (:mod:`dancepipe.advice.coverage`), with a warning logged when too little.
    """
    if kind not in ("train", "transfer"):
        raise DancepipeError(f"labels: unknown kind '{kind}'; choose train or transfer")
    transform, frame_index = load_target_frames(frames_dir)
    transfer_info: dict[str, Any] = {}
    df, kps = _load_poses(poses)
    headed = np.zeros(len(df), dtype=bool)  # transfer frames given the target's head
    if kind == "train":
        sub_cfg: TrainLabelsConfig | TransferLabelsConfig = cfg.train
        if len(frame_index) != len(df) or not np.array_equal(frame_index["frame"].to_numpy(), df["frame"].to_numpy()):
            raise DancepipeError(
                f"{poses}: the pose table ({len(df)} rows) and {frames_dir} ({len(frame_index)} frames) "
                "disagree; rerun the frames stage"
            )
        target_px = kps
    else:
        if norm is None or profile is None:
            raise DancepipeError("transfer labels need the normfit stats (--norm) and the target's profile (--profile)")
        sub_cfg = cfg.transfer
        target = target_space(norm, profile, cfg.transfer)
        if cfg.transfer.head != "source" and target.head is None:
            log.warning("head: the target shows no whole face in any frame; source heads are left as found")
        target_px, record = transfer_keypoints(kps, cfg.transfer, target)
        headed = record.changed("head")
        transfer_info = chain_summary(record, target)
        for line in chain_log(record, target):
            log.info(line)
    w, h = transform.width, transform.height
    label_kps = target_px.copy()
    label_kps[..., :2] = transform.apply_points(target_px[..., :2])
    style = DrawStyle.for_height(h, cfg.draw.line_width, cfg.draw.joint_radius, cfg.draw.min_conf)
    visible = visible_mask(label_kps, style.min_conf)
    # the target's head never makes a person of a frame: where it was placed, count the face
    # points the source showed itself (none for a lost head, a profile's for a turned one)
    placed = np.flatnonzero(headed)
    visible[np.ix_(placed, list(FACE))] = visible_mask(kps[placed][:, list(FACE)], style.min_conf)
    found = visible.sum(axis=1) >= cfg.draw.min_joints
    if kind == "transfer" and not found.any():
        raise DancepipeError(
            f"{poses}: no frame of the source shows a person ({len(df)} frames), so there is no motion to transfer"
        )
    label_kps[~found] = np.nan
    frames = df["frame"].to_numpy(np.int64)
    files = [f"{f:06d}.png" for f in frames]
    faces = compute_face_boxes(label_kps, w, h, fraction=cfg.draw.face_box_fraction, min_conf=style.min_conf)
    index = pd.DataFrame({
        "frame": frames, "file": files, "timestamp": df["timestamp"].to_numpy(np.float64), "person_found": found,
        **keypoints_to_columns(label_kps), **{c: faces[c].to_numpy() for c in FACE_COLUMNS},
    })

    coverage_info: dict[str, Any] = {}
    coverage = None
    if kind == "transfer" and coverage_of is not None:
        repertoire = target_repertoire(coverage_of.train_labels, coverage_of.holdout_fraction)
        if repertoire is None:
            log.warning("coverage: %s's held-out tail shows nobody to calibrate on, so the coverage of %s is not "
                        "measured", coverage_of.target, coverage_of.dance)
        else:
            coverage = measure_coverage(label_kps, repertoire)
            summary_c, warning = coverage.summary(), coverage.warning(coverage_of.dance, coverage_of.target)
            coverage_info = {"coverage": summary_c, "coverage_warning": warning}
            log.info("coverage: %d of %s's %d frames with a person ask for a pose %s's footage covers, %d for one far "
                     "from all of them", summary_c["covered_frames"], coverage_of.dance, summary_c["coverage_frames"],
                     coverage_of.target, summary_c["far_frames"])
            if warning:
                log.warning("%s", warning)
    with atomic_path(out, directory=True) as tmp:
        extra: dict[str, Any] = {}
        if coverage is not None:
            write_coverage(tmp, coverage)
            # the index stands for every file a later stage reads (dvc.yaml names only it)
            extra["coverage_sha256"] = file_digest((tmp / COVERAGE_FILE).read_bytes())
        index[DIGEST_COLUMN] = write_label_images(label_kps, files, tmp, w, h, style, cfg.draw.workers, progress)
        write_table(index, tmp / "index.parquet", {
            "kind": kind, "width": w, "height": h, "poses": str(poses), "frames": str(frames_dir),
            "norm": None if norm is None else str(norm),
            **({"profile": str(profile)} if kind == "transfer" else {}), "draw": cfg.draw.model_dump(),
            kind: sub_cfg.model_dump(), **transfer_info, **extra,
        }, schema=INDEX_SCHEMA)
        _write_contact_sheet(tmp, kind, sub_cfg.contact_sheet_frames, found, frames, files, Path(frames_dir),
                             frame_index, w, h)
    summary: dict[str, Any] = {"kind": kind, "frames": len(df), "drawn": int(found.sum()), "width": w, "height": h}
    summary.update(transfer_info)
    summary.update(coverage_info)
    return summary

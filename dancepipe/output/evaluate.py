"""The evaluate stage: how good is the generator, measured where the truth is known.

**Self-reenactment** on the held-out tail of the target video (``split.holdout_frames``
in the generator checkpoint; the train stage never showed these frames to the
networks): the target's own labels go through the generator sequentially, exactly as
in rendering, and the result is compared with the real frames:

* ``ssim`` / ``psnr``: whole frame; ``ssim_box`` / ``psnr_box``: inside the subject's
  box (the label keypoints' extent padded by 15 % of the body height), where the
  person is and where errors matter; ``ssim_face`` / ``psnr_face``: inside the face
  box the labels stage recorded (clipped to the picture; null/NaN for frames without
  a face box, ``face_frames`` counts those with one) — the paper reports body and face
  apart;
* ``pose_distance``: the pose model runs on each generated frame; the mean distance of
  its keypoints to the conditioning keypoints, divided by the body height (keypoint
  extent), averaged over frames where a person was found; ``no_person_rate``: share of
  frames where the pose model found nobody;
* ``warp_error``: temporal consistency — the previous generated frame is warped onto
  the current one with Farnebäck flow estimated on the *real* frames (occlusions
  excluded by a forward-backward check) and the mean absolute difference taken
  (0..1). ``warp_error_real`` is the same measure on the real frames, the floor a
  perfect generator would reach with that flow.

The **nearest-neighbour baseline** of the paper is scored beside it with the same code
(:class:`_Scorer`): for each held-out frame, the real *training* frame
(``split.train_frames``) whose label pose is closest (:mod:`dancepipe.output.baseline` states
the distance) stands in for the generated frame. Its keys carry a ``baseline_``
prefix; ``baseline_frames`` counts held-out frames that had a pose to match,
``baseline_match_distance`` is the mean retrieval distance (how far the held-out poses
are from anything seen in training), and the per-frame table names the chosen
training frame (``baseline_frame``).

**Transfer** (the rendered transfer video, no ground truth): render shows no generated
frame for a source label without a person (``render.empty``: hold, trim or blank,
:mod:`dancepipe.output.personless`), so the video is mapped back to its labels through the same
frame plan. On the generated frames: ``pose_distance`` to the normalised source
keypoints they were generated from, ``detection_rate`` (share of the video frames whose
label has a person — ``person_frames`` of them — in which the pose model found the
subject) and ``warp_error`` between consecutive generated frames with the flow
estimated on the generated frames themselves (there are no real frames of the target
doing this motion; this measures flicker that a smooth motion field cannot explain, so
it is a lower bound). Bookkeeping: ``person_less_frames`` (source labels without a
person), ``substituted_frames`` (held or blank video frames), ``trimmed_frames``
(dropped from the ends) and ``empty_label_frames_generated`` (video frames generated
from a label without a person: 0 by construction, counted from the plan). The pose
distance is also given per part of the body (``pose_distance_head``, ``_torso``,
``_arms``, ``_legs``; each over the same body height). Coverage, as the labels stage
measured it (:mod:`dancepipe.advice.coverage`, ``coverage.json`` in the labels directory):
each label's distance to the nearest training pose of the target, ``covered_frames``
within the threshold its own held-out poses set, ``pose_distance_covered`` /
``pose_distance_uncovered`` on either side, and the share of frames far from every
training pose (``far_share``, with the labels stage's warning when it is too high).
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

from dancepipe.advice.coverage import COVERAGE_PERCENTILE, FAR_DISTANCE, Coverage, read_coverage
from dancepipe.atomic import atomic_path
from dancepipe.cli import figure
from dancepipe.config import StageConfig
from dancepipe.errors import DancepipeError
from dancepipe.hardware.devices import check_device, resolve_device
from dancepipe.hardware.precision import PRECISION_HELP, Precision, resolve_precision
from dancepipe.model.face_networks import Box
from dancepipe.output import metrics as M
from dancepipe.output.baseline import nearest_poses
from dancepipe.output.personless import EMPTY_RULES
from dancepipe.output.render import (
    face_boxes,
    generate_sequence,
    load_face,
    plan_for,
)
from dancepipe.output.report import Evaluation
from dancepipe.pose.keypoints import columns_to_keypoints, read_index
from dancepipe.video.decode import iter_frames, prefetch
from dancepipe.video.images import read_rgb

log = logging.getLogger(__name__)

ProgressFn = Callable[[int], None]

# Declared in dvc.yaml as metrics (JSON) and plots (CSV, x = frame).
EVAL_JSON = "eval.json"
TRANSFER_JSON = "transfer.json"
EVAL_CSV = "eval_per_frame.csv"
TRANSFER_CSV = "transfer_per_frame.csv"

# Per-frame scores of one image against the real frame, shared by the generator and the
# baseline (whose columns carry BASELINE_PREFIX).
SCORE_COLUMNS = ("ssim", "psnr", "ssim_box", "psnr_box", "ssim_face", "psnr_face", "pose_distance", "person_found",
                 "warp_error")
BASELINE_PREFIX = "baseline_"

EVAL_COLUMNS = ("frame", *SCORE_COLUMNS, "warp_error_real", "baseline_frame", "baseline_match_distance",
                *(BASELINE_PREFIX + c for c in SCORE_COLUMNS))
# The pose distance of each part of the body (metrics.JOINT_GROUPS), in the transfer's CSV and JSON.
PART_COLUMNS = tuple(f"pose_distance_{part}" for part in M.JOINT_GROUPS)
TRANSFER_COLUMNS = ("frame", "label_person", "generated", "pose_distance", *PART_COLUMNS, "person_found",
                    "warp_error", "nearest_training_pose", "covered")


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
    precision: Precision = Field("auto", description=f"the generator's: {PRECISION_HELP}")
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
    """Collects images and runs the pose model on full batches (constant memory).

    Each image is queued with the row it belongs to and a column ``prefix``, so the
    generated and the baseline images of one held-out frame share batches and land in
    ``<prefix>person_found`` / ``<prefix>pose_distance`` of the same row. With ``parts``
    the pose distance of each part of the body goes to ``<prefix>pose_distance_<part>`` too.
    """

    def __init__(self, model: Any, cfg: EvaluateConfig, rows: list[dict[str, Any]], parts: bool = False) -> None:
        self.model, self.cfg, self.rows, self.parts = model, cfg, rows, parts
        self.pending: list[tuple[int, str, np.ndarray, np.ndarray]] = []

    def add(self, row_index: int, image: np.ndarray, ref: np.ndarray, prefix: str = "") -> None:
        self.pending.append((row_index, prefix, image, ref))
        if len(self.pending) >= self.cfg.batch:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        found = detect_subjects(
            self.model, [p[2] for p in self.pending], [p[3] for p in self.pending],
            imgsz=self.cfg.imgsz, det_conf=self.cfg.det_conf, kp_conf=self.cfg.kp_conf, match_iou=self.cfg.match_iou,
        )
        for (i, prefix, _img, ref), kps in zip(self.pending, found, strict=True):
            self.rows[i][prefix + "person_found"] = int(kps is not None)
            self.rows[i][prefix + "pose_distance"] = M.pose_distance(kps, ref)
            for part, joints in (M.JOINT_GROUPS.items() if self.parts else ()):
                self.rows[i][f"{prefix}pose_distance_{part}"] = M.pose_distance(kps, ref, joints)
        self.pending = []


# ---------------------------------------------------------------------------- scoring

# Real-frame flow between consecutive held-out frames: (backward flow t → t−1, occlusion mask).
Flow = tuple[np.ndarray, np.ndarray]


class _Scorer:
    """The one scoring path for every image compared with a real held-out frame.

    :meth:`score` writes the image metrics into the row at once and queues the image
    for the pose model (:class:`_PoseBatcher`); the generator's images are scored with
    ``prefix=""`` and the baseline's with ``prefix="baseline_"``, so both get exactly
    the same measures.
    """

    def __init__(self, pose_model: Any, cfg: EvaluateConfig, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.poses = _PoseBatcher(pose_model, cfg, rows)

    def score(self, i: int, image: np.ndarray, real: np.ndarray, ref: np.ndarray, face_box: Box | None,
              prev: np.ndarray | None, flow: Flow | None, prefix: str = "") -> None:
        """Score ``image`` against ``real`` into row ``i``.

        Whole frame, the subject box of ``ref`` (the held-out pose), the recorded face
        box, the warping error from ``prev`` (this image's predecessor, in the same
        sequence) with the real frames' ``flow``, and the pose re-detected on ``image``
        against ``ref``.
        """
        h, w = real.shape[:2]
        row = self.rows[i]
        row[prefix + "ssim"], row[prefix + "psnr"] = M.ssim(image, real), M.psnr(image, real)
        row[prefix + "ssim_box"], row[prefix + "psnr_box"] = M.region_scores(image, real, M.subject_box(ref, w, h))
        row[prefix + "ssim_face"], row[prefix + "psnr_face"] = M.region_scores(
            image, real, M.face_region(face_box, w, h))
        row[prefix + "warp_error"] = (M.warp_error(prev, image, *flow) if prev is not None and flow is not None
                                      else math.nan)
        self.poses.add(i, image, ref, prefix)

    def flush(self) -> None:
        self.poses.flush()


def _rate(values: pd.Series) -> float | None:
    """Mean of a 0/1 column over its defined entries; None when none is defined."""
    v = pd.to_numeric(values, errors="coerce").dropna()
    return float(v.mean()) if len(v) else None


def _summarise(df: pd.DataFrame, prefix: str = "") -> dict[str, Any]:
    """Mean scores of one image sequence (generator or baseline) in the per-frame table."""
    out: dict[str, Any] = {prefix + k: M.nanmean(df[prefix + k])
                           for k in ("ssim", "psnr", "ssim_box", "psnr_box", "ssim_face", "psnr_face",
                                     "pose_distance")}
    found = _rate(df[prefix + "person_found"])
    out[prefix + "no_person_rate"] = None if found is None else 1.0 - found
    out[prefix + "warp_error"] = M.nanmean(df[prefix + "warp_error"])
    return out


# ---------------------------------------------------------------------------- evaluation


def _sample_positions(n: int, k: int) -> set[int]:
    if k <= 0 or n == 0:
        return set()
    return {int(round(x)) for x in np.linspace(0, n - 1, min(k, n))}


def _rows_for(index: pd.DataFrame, frames: list[int], what: str, where: str) -> None:
    """Raise when some of ``frames`` are not in ``index`` (the checkpoint was trained on other data)."""
    missing = [f for f in frames if f not in index.index]
    if missing:
        raise DancepipeError(
            f"{where}: {len(missing)} {what} frames are missing, e.g. frame {missing[0]}; "
            "the checkpoint was trained on other data"
        )


def evaluate_holdout(
    generator: torch.nn.Module,
    pose_model: Any,
    cfg: EvaluateConfig,
    *,
    frames_dir: str | Path,
    labels_dir: str | Path,
    holdout_frames: Iterable[int],
    train_frames: Iterable[int],
    face: Any | None = None,
    device: torch.device | str = "cpu",
    progress: ProgressFn | None = None,
) -> Evaluation:
    """Self-reenactment metrics on ``holdout_frames``, for the generator and the nearest-neighbour baseline.

    The baseline's image for a held-out frame is the real frame of the ``train_frames``
    whose label pose is closest (:func:`dancepipe.output.baseline.nearest_poses`); it is
    scored by the same :class:`_Scorer` as the generated frame.
    """
    device = torch.device(device) if isinstance(device, str) else device
    wanted = sorted({int(f) for f in holdout_frames})
    if not wanted:
        raise DancepipeError("the generator checkpoint has no held-out frames (train.holdout_fraction is 0?)")
    train = sorted({int(f) for f in train_frames} - set(wanted))
    if not train:
        raise DancepipeError("the generator checkpoint lists no training frames (split.train_frames); "
                             "the nearest-neighbour baseline needs them, retrain the generator")
    labels = read_index(labels_dir, "labels").set_index("frame", drop=False)
    frames = read_index(frames_dir, "frames").set_index("frame", drop=False)
    for what, fs in (("held-out", wanted), ("training", train)):
        _rows_for(labels, fs, what, str(labels_dir))
        _rows_for(frames, fs, what, str(frames_dir))
    lab = labels.loc[wanted].reset_index(drop=True)
    kps = columns_to_keypoints(lab)
    boxes = face_boxes(lab)
    match = nearest_poses(kps, columns_to_keypoints(labels.loc[train]))
    base_frames = [train[j] if j >= 0 else None for j in match.index]
    label_paths = [Path(labels_dir) / f for f in lab["file"]]
    real_paths = [Path(frames_dir) / frames.loc[f, "file"] for f in wanted]
    base_paths = [None if f is None else Path(frames_dir) / frames.loc[f, "file"] for f in base_frames]

    def read_inputs() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        for lp, rp, bp in zip(label_paths, real_paths, base_paths, strict=True):
            yield read_rgb(lp), read_rgb(rp), None if bp is None else read_rgb(bp)

    source = prefetch(read_inputs(), size=8)
    current: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []

    def labels_iter() -> Iterator[np.ndarray]:
        for item in source:
            current.append(item)
            yield item[0]

    rows: list[dict[str, Any]] = []
    scorer = _Scorer(pose_model, cfg, rows)
    sample_at = _sample_positions(len(wanted), cfg.sample_frames)
    samples: list[tuple[int, list[np.ndarray]]] = []
    prev_gen = prev_real = prev_base = None
    precision = resolve_precision(cfg.precision, device, "evaluate.precision")
    gen_iter = generate_sequence(generator, labels_iter(), device=device, face=face, boxes=boxes,
                                 precision=precision)
    for i, gen in enumerate(gen_iter):
        label, real, base = current.pop(0)
        for path, what, img in ((real_paths[i], "the generator made", gen),
                                (base_paths[i], f"training frame {base_frames[i]} is", base)):
            if img is not None and real.shape != img.shape:
                raise DancepipeError(
                    f"{path}: real frame {wanted[i]} is {real.shape[1]}x{real.shape[0]} but {what} "
                    f"{img.shape[1]}x{img.shape[0]}"
                )
        flow: Flow | None = None
        row: dict[str, Any] = {"frame": wanted[i], "warp_error_real": math.nan,
                               "baseline_frame": base_frames[i], "baseline_match_distance": match.distance[i]}
        if prev_real is not None and wanted[i] == wanted[i - 1] + 1:
            back = M.farneback_flow(real, prev_real)
            flow = (back, M.consistency_mask(back, M.farneback_flow(prev_real, real)))
            row["warp_error_real"] = M.warp_error(prev_real, real, *flow)
        rows.append(row)
        scorer.score(i, gen, real, kps[i], boxes[i], prev_gen, flow)
        if base is not None:
            scorer.score(i, base, real, kps[i], boxes[i], prev_base, flow, prefix=BASELINE_PREFIX)
        if i in sample_at:
            samples.append((wanted[i], [label, gen, base if base is not None else np.zeros_like(real), real]))
        prev_gen, prev_real, prev_base = gen, real, base
        if progress is not None:
            progress(1)
    scorer.flush()
    df = pd.DataFrame(rows, columns=list(EVAL_COLUMNS))
    for c in ("person_found", "baseline_person_found", "baseline_frame"):
        df[c] = df[c].astype("Int64")
    summary: dict[str, Any] = {"frames": len(df), "face_frames": int(sum(b is not None for b in boxes))}
    summary |= _summarise(df)
    summary["warp_error_real"] = M.nanmean(df["warp_error_real"])
    summary["baseline_frames"] = int(df["baseline_frame"].notna().sum())
    summary["baseline_match_distance"] = M.nanmean(df["baseline_match_distance"])
    summary |= _summarise(df, BASELINE_PREFIX)
    notes = [f"Baseline: for each held-out frame, the real training frame (of {len(train)}) whose pose is closest "
             f"(hip-centred mean joint distance / body height); {summary['baseline_frames']} of {len(df)} held-out "
             "frames had a pose to match."]
    if summary["face_frames"] < len(df):
        notes.append(f"Face metrics cover the {summary['face_frames']} held-out frames with a recorded face box.")
    return Evaluation(summary, df, samples, notes)


def evaluate_transfer(
    pose_model: Any,
    cfg: EvaluateConfig,
    *,
    labels_dir: str | Path,
    video: str | Path,
    empty_rule: str = "trim",
    side_by_side: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> Evaluation:
    """Pose distance, detection rate and flicker of the rendered transfer video.

    Where the labels stage measured the dance's coverage (``coverage.json``), each label's
    distance to the target's nearest training pose is recorded, and the pose distance is
    also given apart for the generated frames whose pose the target's footage covers and
    for the rest (the generator extrapolating); without it those figures are null.

    The sample frames are label | generated, or, with ``side_by_side`` (render's
    source | stick figure | generated video), that video's frames at the same positions.

    Render never generates a frame from a label with no person (``render.empty``,
    :mod:`dancepipe.output.personless`); ``empty_rule`` must be the rule the video was rendered
    with, so that the same :func:`~dancepipe.output.personless.plan_frames` maps each video frame
    to its label row. Detection and pose distance are measured on generated frames
    only; ``warp_error`` between two consecutive video frames that are both generated
    (a held frame repeats its predecessor, a blank one is a deliberate cut: neither
    says anything about the generator's flicker).
    """
    if side_by_side is not None and not Path(side_by_side).is_file():  # before the long pass, not after it
        raise DancepipeError(f"{side_by_side}: side-by-side video does not exist (run the render stage first)")
    labels = read_index(labels_dir, "labels")
    plan = plan_for(labels, empty_rule, labels_dir)  # the plan render followed
    person = labels["person_found"].to_numpy(dtype=bool)
    kps = columns_to_keypoints(labels)
    coverage = read_coverage(labels_dir)
    if coverage is not None and len(coverage.nearest) != len(kps):
        raise DancepipeError(f"{labels_dir}: coverage.json has {len(coverage.nearest)} rows for {len(kps)} labels; "
                             "rerun the labels_transfer stage")
    nearest = coverage.nearest if coverage is not None else np.full(len(kps), np.nan)
    generated_at = np.flatnonzero(plan.generated)
    sample_at = {int(generated_at[p]) for p in _sample_positions(len(generated_at), cfg.sample_frames)}
    rows: list[dict[str, Any]] = []
    poses = _PoseBatcher(pose_model, cfg, rows, parts=True)
    samples: list[tuple[int, list[np.ndarray]]] = []
    prev: np.ndarray | None = None
    prev_generated = False
    count = 0
    h, w = read_rgb(Path(labels_dir) / labels["file"].iloc[0]).shape[:2]
    for j, fr in enumerate(prefetch(iter_frames(video), size=8)):
        count = j + 1
        if j >= plan.frames:
            continue  # counted for the error below
        r, generated = int(plan.rows[j]), bool(plan.generated[j])
        image = np.ascontiguousarray(fr.image[:h, :w])  # drop the encoder's even-size padding, if any
        row: dict[str, Any] = {"frame": int(labels["frame"].iloc[r]), "label_person": int(person[r]),
                               "generated": int(generated), "nearest_training_pose": float(nearest[r])}
        if coverage is not None and generated and np.isfinite(nearest[r]):
            row["covered"] = int(nearest[r] <= coverage.threshold)
        both = generated and prev_generated and prev is not None
        row["warp_error"] = M.temporal_error(prev, image, (prev, image)) if both else math.nan
        rows.append(row)
        if generated:
            poses.add(j, image, kps[r])
        if j in sample_at:
            samples.append((row["frame"], [read_rgb(Path(labels_dir) / labels["file"].iloc[r]), image]))
        prev, prev_generated = image, generated
        if progress is not None:
            progress(1)
    poses.flush()
    if count != plan.frames:
        raise DancepipeError(
            f"{video}: has {count} frames but {labels_dir} gives {plan.frames} output frames under "
            f"render.empty = {empty_rule} ({plan.total} labels, {plan.empty} without a person); "
            "rerun the render stage"
        )
    if side_by_side is not None:
        samples = _side_by_side_samples(side_by_side, samples, sample_at, plan.frames)
    df = pd.DataFrame(rows, columns=list(TRANSFER_COLUMNS))
    df["person_found"] = df["person_found"].astype("Int64")
    df["covered"] = df["covered"].astype("Int64")
    label_person = df["label_person"].to_numpy(dtype=bool)
    generated = df["generated"].to_numpy(dtype=bool)
    detected = (df["person_found"].fillna(0).to_numpy(dtype=int) == 1) & label_person
    person_frames = int(label_person.sum())
    summary = {
        "frames": plan.frames,
        "pose_distance": M.nanmean(df["pose_distance"]),
        **{c: M.nanmean(df[c]) for c in PART_COLUMNS},
        "detection_rate": float(detected.sum() / person_frames) if person_frames else None,
        "warp_error": M.nanmean(df["warp_error"]),
        "person_frames": person_frames,
        "person_less_frames": plan.empty,
        "substituted_frames": plan.substituted,
        "trimmed_frames": plan.trimmed,
        "empty_label_frames_generated": int((generated & ~label_person).sum()),
        **_coverage_summary(df, coverage),
    }
    notes = [f"render.empty = {empty_rule}: {plan.empty} of {plan.total} source labels show no person and were not "
             f"generated ({plan.substituted} held or blank video frames, {plan.trimmed} trimmed from the ends); "
             "detection and pose distance are measured on the generated frames only."]
    if coverage is not None:
        notes.append(
            f"Coverage: {summary['covered_frames']} of {int(generated.sum())} generated frames ask for a pose within "
            f"{coverage.threshold:.3f} of a training pose (hip-centred mean joint distance / body height; "
            f"{COVERAGE_PERCENTILE:g} % of the target's own held-out poses are that close). Pose distance on them: "
            f"{figure(summary['pose_distance_covered'])}; on the others: "
            f"{figure(summary['pose_distance_uncovered'])}. {summary['far_frames']} ask for a pose further than "
            f"{FAR_DISTANCE:g} from every training pose.")
    return Evaluation(summary, df, samples, notes)


COVERAGE_KEYS = ("coverage_threshold", "coverage_frames", "covered_frames", "pose_distance_covered",
                 "pose_distance_uncovered", "far_frames", "far_share", "far_parts")


def _coverage_summary(df: pd.DataFrame, coverage: Coverage | None) -> dict[str, Any]:
    """The coverage figures of the generated frames (``COVERAGE_KEYS``; all null without a coverage)."""
    if coverage is None:
        return dict.fromkeys(COVERAGE_KEYS)
    covered = df["covered"]
    generated = df["generated"].to_numpy(dtype=bool)
    far = generated & (df["nearest_training_pose"].to_numpy(dtype=np.float64) > FAR_DISTANCE)
    n = int((generated & np.isfinite(df["nearest_training_pose"].to_numpy(dtype=np.float64))).sum())
    return {
        "coverage_threshold": coverage.threshold,
        "coverage_frames": n,
        "covered_frames": int((covered == 1).sum()),
        "pose_distance_covered": M.nanmean(df.loc[(covered == 1).fillna(False), "pose_distance"]),
        "pose_distance_uncovered": M.nanmean(df.loc[(covered == 0).fillna(False), "pose_distance"]),
        "far_frames": int(far.sum()),
        "far_share": float(far.sum() / n) if n else None,
        "far_parts": coverage.summary()["far_parts"],
    }


def _side_by_side_samples(
    path: str | Path, samples: list[tuple[int, list[np.ndarray]]], positions: set[int], frames: int,
) -> list[tuple[int, list[np.ndarray]]]:
    """Replace each sample's panels by the side-by-side video's frame at the same position."""
    order = sorted(positions)
    picked: dict[int, np.ndarray] = {}
    count = 0
    for j, fr in enumerate(iter_frames(path)):
        count = j + 1
        if j in positions:
            picked[j] = fr.image
    if count != frames:
        raise DancepipeError(f"{path}: has {count} frames but the transfer video has {frames}; rerun the render stage")
    return [(frame, [picked[j]]) for (frame, _), j in zip(samples, order, strict=True)]


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
    evaluation: Evaluation
    face_note: str
    outputs: list[str]


def _pose_model(cfg: EvaluateConfig, device: Any, pose_model: Any | None) -> Any:
    if pose_model is not None:
        return pose_model
    from dancepipe.pose.estimator import load_pose_model

    return load_pose_model(cfg.pose_model, str(device), "evaluate.device")


def pose_weights_note(cfg: EvaluateConfig, pose_model: Any) -> str:
    """The page's line naming the pose weights that ran (the file the model was loaded from), and the
    name ``evaluate.pose_model`` asked for when that differs (the pinned offline copy stood in)."""
    path = getattr(pose_model, "ckpt_path", None)
    ran = Path(path).name if path else cfg.pose_model
    asked = "" if ran == Path(cfg.pose_model).name else f" (evaluate.pose_model names {cfg.pose_model})"
    return f"pose model: {ran}{asked}"


def _write_metrics(mdir: Path, evaluation: Evaluation, json_name: str, csv_name: str) -> list[str]:
    """Write one evaluation's summary JSON and per-frame CSV under ``mdir``; their paths."""
    write_json(mdir / json_name, evaluation.summary)
    write_csv(mdir / csv_name, evaluation.per_frame)
    return [str(mdir / json_name), str(mdir / csv_name)]


def run_holdout(
    cfg: EvaluateConfig,
    *,
    generator_path: str | Path,
    face_path: str | Path | None,
    frames_dir: str | Path,
    labels_dir: str | Path,
    metrics_dir: str | Path,
    report_path: str | Path,
    train_curves: str | Path | None = None,
    title: str = "dancepipe report",
    progress: ProgressFn | None = None,
    pose_model: Any | None = None,
) -> EvaluateResult:
    """The evaluate stage of one target: held-out metrics (eval.json, per-frame CSV) and its report page."""
    from dancepipe.model.checkpoint import load_generator
    from dancepipe.output.report import write_report  # matplotlib and friends: only when a report is written

    device = resolve_device(cfg.device, "evaluate.device")
    if not Path(generator_path).is_file():
        raise DancepipeError(f"{generator_path}: generator checkpoint does not exist (run the train stage first)")
    generator, meta = load_generator(generator_path, device)
    split = meta.get("split", {})
    face, note = load_face(face_path, cfg.face, device)
    pose_model = _pose_model(cfg, device, pose_model)
    held = evaluate_holdout(generator, pose_model, cfg, frames_dir=frames_dir,
                            labels_dir=labels_dir, holdout_frames=split.get("holdout_frames", []),
                            train_frames=split.get("train_frames", []), face=face, device=device, progress=progress)
    outputs = _write_metrics(Path(metrics_dir), held, EVAL_JSON, EVAL_CSV) + [str(report_path)]
    write_report(report_path, holdout=held, train_curves=train_curves, title=title,
                 notes=[note, f"generator: {generator_path} (step {meta.get('step')})",
                        pose_weights_note(cfg, pose_model)])
    return EvaluateResult(held, note, outputs)


def run_transfer(
    cfg: EvaluateConfig,
    *,
    labels_dir: str | Path,
    video: str | Path,
    metrics_dir: str | Path,
    report_path: str | Path,
    side_by_side: str | Path | None = None,
    empty_rule: str = "trim",
    title: str = "dancepipe transfer",
    progress: ProgressFn | None = None,
    pose_model: Any | None = None,
) -> EvaluateResult:
    """The transfer evaluation of one (target, source) pair: transfer.json, per-frame CSV and its page.

    ``empty_rule`` is the ``render.empty`` rule the video was rendered with (see
    :func:`evaluate_transfer`). The dance's coverage comes from the labels stage.
    """
    from dancepipe.output.report import write_report

    device = resolve_device(cfg.device, "evaluate.device")
    if empty_rule not in EMPTY_RULES:
        raise DancepipeError(f"render.empty = {empty_rule!r}: choose one of {', '.join(EMPTY_RULES)}")
    if not Path(video).is_file():
        raise DancepipeError(f"{video}: transfer video does not exist (run the render stage first)")
    pose_model = _pose_model(cfg, device, pose_model)
    trans = evaluate_transfer(pose_model, cfg, labels_dir=labels_dir, video=video,
                              empty_rule=empty_rule, side_by_side=side_by_side, progress=progress)
    outputs = _write_metrics(Path(metrics_dir), trans, TRANSFER_JSON, TRANSFER_CSV) + [str(report_path)]
    write_report(report_path, transfer=trans, title=title, video=side_by_side or video,
                 notes=[f"video: {video}", pose_weights_note(cfg, pose_model)])
    return EvaluateResult(trans, "", outputs)

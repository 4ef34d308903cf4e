"""The subject stage: follow one named person through their posed video.

Input: the video's ingest directory and its detection table (every person of every
frame, written once per video by the poses stage). Output: a subject directory that
later stages read as the person's own video, ``data/subjects/<name>/``, holding

- ``video.<ext>`` and ``meta.json``, copied from the ingest directory, so the frames
  and render stages of a subject can name one input path per subject in dvc.yaml
  (DVC stores equal content once in its cache, so the copy costs no cache space);
- ``poses.parquet``, the subject's keypoint table (:data:`dancepipe.pose.keypoints.SCHEMA`,
  one row per frame, NaN where the subject is not seen).

Who the subject is comes from ``subjects.<name>.person`` (see
:class:`dancepipe.catalog.Subject`): a rule for :func:`dancepipe.pose.tracks.select_subject`
or a point given as fractions of the picture, turned into pixels here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dancepipe.atomic import atomic_path
from dancepipe.catalog import Subject, TrackingConfig
from dancepipe.errors import DancepipeError
from dancepipe.pose.keypoints import (
    COCO_NAMES,
    KEYPOINT_COLUMNS,
    SCHEMA,
    columns_to_keypoints,
    keypoints_to_columns,
    read_table,
    write_table,
)
from dancepipe.pose.tracks import Detections, select_subject
from dancepipe.video.decode import INGEST_META, resolve_video

POSES_FILE = "poses.parquet"


def frames_of(table: pd.DataFrame) -> tuple[list[int], list[float], list[Detections]]:
    """Per-frame :class:`Detections` of a detection table, with frame indices and timestamps."""
    indices: list[int] = []
    timestamps: list[float] = []
    detections: list[Detections] = []
    table = table.sort_values(["frame", "person"], kind="stable")
    for frame, rows in table.groupby("frame", sort=True):
        indices.append(int(frame))
        timestamps.append(float(rows["timestamp"].iloc[0]))
        rows = rows[rows["person"] >= 0]
        if len(rows) == 0:
            detections.append(Detections.empty(len(COCO_NAMES)))
            continue
        detections.append(Detections(
            rows[["box_x0", "box_y0", "box_x1", "box_y1"]].to_numpy(np.float32),
            rows["score"].to_numpy(np.float32),
            columns_to_keypoints(rows),
        ))
    return indices, timestamps, detections


def subject_table(
    indices: list[int], timestamps: list[float], detections: list[Detections], chosen: np.ndarray,
) -> pd.DataFrame:
    """The keypoint table (one row per frame) of the detections ``chosen`` picks (-1: not seen)."""
    n = len(detections)
    boxes = np.full((n, 4), np.nan, np.float32)
    scores = np.full(n, np.nan, np.float32)
    kps = np.full((n, len(COCO_NAMES), 3), np.nan, np.float32)
    for t, k in enumerate(chosen):
        if k >= 0:
            boxes[t] = detections[t].boxes[k]
            scores[t] = detections[t].scores[k]
            kps[t] = detections[t].keypoints[k]
    data: dict[str, Any] = {
        "frame": np.asarray(indices, dtype=np.int64),
        "timestamp": np.asarray(timestamps, dtype=np.float64),
        "person_found": np.asarray(chosen) >= 0,
        "box_x0": boxes[:, 0], "box_y0": boxes[:, 1], "box_x1": boxes[:, 2], "box_y1": boxes[:, 3],
        "score": scores,
    }
    data.update(keypoints_to_columns(kps))
    return pd.DataFrame(data, columns=SCHEMA.names)


def follow(table: pd.DataFrame, width: int, height: int, subject: Subject, cfg: TrackingConfig,
           name: str = "subject") -> pd.DataFrame:
    """The keypoint table of ``subject`` in a detection table of a ``width`` × ``height`` video."""
    missing = [c for c in ("frame", "timestamp", "person", *KEYPOINT_COLUMNS) if c not in table.columns]
    if missing:
        raise DancepipeError(f"not a detection table: column '{missing[0]}' is missing (rerun the poses stage)")
    indices, timestamps, detections = frames_of(table)
    person = subject.person
    point = None
    if not isinstance(person, str):
        point = (float(person[0]) * width, float(person[1]) * height)
    try:
        chosen = select_subject(
            detections, iou_threshold=cfg.iou, max_gap=cfg.max_gap,
            rule=person if isinstance(person, str) else "auto", point=point, point_frames=cfg.point_frames,
        )
    except ValueError as e:
        raise DancepipeError(f"subjects.{name}.person = {list(person) if point else person!r}: {e}") from e
    return subject_table(indices, timestamps, detections, chosen)


def run_subject(
    name: str, subject: Subject, video_dir: str | Path, detections: str | Path, out_dir: str | Path,
    cfg: TrackingConfig,
) -> dict[str, Any]:
    """Write the subject directory ``out_dir`` (see the module docstring); returns a summary."""
    video_dir = Path(video_dir)
    if not (video_dir / INGEST_META).is_file():
        raise DancepipeError(f"{video_dir}: not an ingested video directory (run the ingest stage first)")
    video = resolve_video(video_dir)
    if not video.is_file():
        raise DancepipeError(f"{video_dir}: ingested video does not exist (run the ingest stage first)")
    table, meta = read_table(detections)
    width, height = int(meta.get("width", 0)), int(meta.get("height", 0))
    if width <= 0 or height <= 0:
        raise DancepipeError(f"{detections}: the detection table does not record the video's size")
    df = follow(table, width, height, subject, cfg, name)
    found = int(df["person_found"].sum())
    if found == 0:
        raise DancepipeError(f"subjects.{name}: the chosen person is not seen in any frame of {video_dir}")
    meta = dict(meta, subject=name, person=subject.person if isinstance(subject.person, str) else list(subject.person),
                tracking=cfg.model_dump(), detections=str(detections))
    with atomic_path(out_dir, directory=True) as tmp:
        shutil.copyfile(video, tmp / video.name)
        shutil.copyfile(video_dir / INGEST_META, tmp / INGEST_META)
        info = json.loads((tmp / INGEST_META).read_text(encoding="utf-8"))
        info["path"] = str(Path(out_dir) / video.name)
        (tmp / INGEST_META).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        write_table(df, tmp / POSES_FILE, meta)
    return {"frames": len(df), "frames_with_subject": found, "video": str(video)}

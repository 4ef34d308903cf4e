"""The keypoint and detection tables: COCO-17 names, schemas, and Parquet read/write.

A keypoint table (one subject) has one row per decoded frame. Missing keypoints are
NaN (never (0, 0)); a frame with no person has ``person_found = False`` and NaN
everywhere. A detection table holds every person of every frame (see
:data:`DETECTION_SCHEMA`). File-level metadata (source
video, size, fps, model file and hash, library versions) is stored as JSON under the
Parquet schema metadata key ``dancepipe``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dancepipe.atomic import atomic_path
from dancepipe.errors import DancepipeError

COCO_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
KP = {name: i for i, name in enumerate(COCO_NAMES)}
# The five face points (nose, eyes, ears), in COCO order.
FACE_POINTS: tuple[int, ...] = tuple(KP[n] for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear"))

META_KEY = b"dancepipe"

BASE_FIELDS: list[pa.Field] = [
    pa.field("frame", pa.int64()),
    pa.field("timestamp", pa.float64()),
    pa.field("person_found", pa.bool_()),
    pa.field("box_x0", pa.float32()),
    pa.field("box_y0", pa.float32()),
    pa.field("box_x1", pa.float32()),
    pa.field("box_y1", pa.float32()),
    pa.field("score", pa.float32()),
]
KEYPOINT_COLUMNS: list[str] = [f"{n}_{c}" for n in COCO_NAMES for c in ("x", "y", "conf")]
SCHEMA = pa.schema(BASE_FIELDS + [pa.field(c, pa.float32()) for c in KEYPOINT_COLUMNS])

# The detection table (poses@<video>): every person the model found, one row per
# (frame, person); ``person`` numbers the people of one frame from 0, and a frame with
# nobody has one row with person -1 and NaN elsewhere, so every decoded frame and its
# timestamp is listed. The subject stage turns it into a keypoint table (SCHEMA).
DETECTION_SCHEMA = pa.schema(
    [BASE_FIELDS[0], BASE_FIELDS[1], pa.field("person", pa.int32())] + BASE_FIELDS[3:]
    + [pa.field(c, pa.float32()) for c in KEYPOINT_COLUMNS]
)


def keypoints_to_columns(kps: np.ndarray) -> dict[str, np.ndarray]:
    """(N, 17, 3) array of x, y, conf → the 51 float32 keypoint columns."""
    kps = np.asarray(kps, dtype=np.float32)
    if kps.ndim != 3 or kps.shape[1:] != (17, 3):
        raise ValueError(f"expected keypoints of shape (N, 17, 3), got {kps.shape}")
    return {f"{n}_{c}": kps[:, i, j] for i, n in enumerate(COCO_NAMES) for j, c in enumerate(("x", "y", "conf"))}


def columns_to_keypoints(df: pd.DataFrame) -> np.ndarray:
    """The 51 keypoint columns of ``df`` → (N, 17, 3) float32 array (x, y, conf)."""
    return df[KEYPOINT_COLUMNS].to_numpy(dtype=np.float32).reshape(len(df), 17, 3)


def write_table(df: pd.DataFrame, path: str | Path, metadata: dict[str, Any], schema: pa.Schema = SCHEMA) -> None:
    """Write ``df`` with an explicit schema and JSON metadata, atomically."""
    table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[META_KEY] = json.dumps(metadata, sort_keys=True).encode()
    table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_table(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a keypoint (or index) table and its dancepipe metadata."""
    try:
        table = pq.read_table(path)
    except FileNotFoundError as e:
        raise DancepipeError(f"{path}: table does not exist (run the stage that writes it first)") from e
    except pa.ArrowInvalid as e:
        raise DancepipeError(f"{path}: not a readable Parquet table") from e
    raw = (table.schema.metadata or {}).get(META_KEY)
    meta = json.loads(raw) if raw else {}
    return table.to_pandas(), meta


def read_keypoints(path: str | Path) -> np.ndarray:
    """A keypoint table's keypoints (N, 17, 3) as float64, NaN where missing, with a one-sentence error."""
    df, _ = read_table(path)
    try:
        return columns_to_keypoints(df).astype(np.float64)
    except KeyError as e:
        raise DancepipeError(f"{path}: not a keypoint table (missing keypoint columns)") from e


# The column of a frames or labels index holding each listed file's sha256. With it the index
# changes whenever any of its files does, so a stage that reads the files can list just the
# index as its dvc.yaml dep: DVC then hashes one small file instead of walking thousands.
DIGEST_COLUMN = "sha256"


def file_digest(data: bytes) -> str:
    """The :data:`DIGEST_COLUMN` entry of a file with these bytes."""
    return hashlib.sha256(data).hexdigest()


def read_index(directory: str | Path, what: str, check_files: bool = True) -> pd.DataFrame:
    """``<directory>/index.parquet`` of a frames or labels directory, sorted by frame.

    The one reader of those indexes (train, train_face, render and evaluate all use
    it): the directory must exist, the table must have ``frame`` and ``file`` columns
    and at least one row, and, with ``check_files``, every listed file must exist.
    ``what`` names the directory in errors ("frames", "labels", "target frames").
    """
    d = Path(directory)
    if not d.is_dir():
        raise DancepipeError(f"{d}: {what} directory does not exist (run the stage that writes it first)")
    index = d / "index.parquet"
    if not index.is_file():
        raise DancepipeError(f"{index}: the {what} index does not exist (rerun the stage that writes it)")
    df, _ = read_table(index)
    for col in ("frame", "file"):
        if col not in df.columns:
            raise DancepipeError(f"{index}: column '{col}' is missing")
    if len(df) == 0:
        raise DancepipeError(f"{index}: the {what} index is empty")
    df = df.sort_values("frame").reset_index(drop=True)
    if check_files:
        missing = [f for f in df["file"] if not (d / f).is_file()]
        if missing:
            raise DancepipeError(f"{d}: {len(missing)} {what} files listed in index.parquet are missing, "
                                 f"e.g. {missing[0]}")
    return df

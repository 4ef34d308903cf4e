"""The frames stage: crop each subject's video to its training images.

One crop box per video is fitted to the subject's boxes in the pose table (padded,
grown to the training aspect ratio) or, with ``full_frame``, the whole frame is
letterboxed. Every decoded frame is cropped, resized to ``width x height`` and written
as ``<frame index>.jpg``. The output directory also holds ``index.parquet`` (one row per
pose-table row) and ``transform.json`` (the :class:`~dancepipe.video.crop.CropTransform`
that the labels stage reuses, so frames and stick figures line up pixel for pixel).

Speed: the decoder hands over YUV 4:2:0 planes without converting the full frame to
RGB; only the crop is resized (area filter) and converted, at output size. Resizing,
colour conversion and JPEG encoding run in a thread pool (OpenCV releases the GIL)
while the main thread keeps decoding; at most a few frames are in flight, so memory
does not grow with the length of the video.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import Field

from dancepipe.atomic import atomic_path
from dancepipe.config import StageConfig
from dancepipe.errors import DancepipeError
from dancepipe.pose.keypoints import DIGEST_COLUMN, file_digest, read_table, write_table
from dancepipe.video.crop import TRANSFORM_NAME, CropTransform, fit_crop, full_frame_transform
from dancepipe.video.decode import DecodeReport, PlanarFrame, iter_planes

log = logging.getLogger(__name__)

INDEX_NAME = "index.parquet"
INDEX_SCHEMA = pa.schema(
    [
        pa.field("frame", pa.int64()),
        pa.field("file", pa.string()),
        pa.field("timestamp", pa.float64()),
        pa.field("person_found", pa.bool_()),
        pa.field(DIGEST_COLUMN, pa.string()),
    ]
)
_POSE_COLUMNS = ("frame", "timestamp", "person_found", "box_x0", "box_y0", "box_x1", "box_y1")

# Black in limited-range YUV: the padding colour for crops that reach past the frame.
_BLACK_Y, _BLACK_UV = 16, 128


class FramesConfig(StageConfig):
    """``frames`` section: the training image size and how the crop is chosen."""

    width: int = Field(128, ge=64, le=2048, multiple_of=16, description="training width in pixels")
    height: int = Field(192, ge=64, le=2048, multiple_of=16, description="training height in pixels")
    padding: float = Field(0.1, ge=0.0, le=1.0, description="margin around the subject box, share of its size")
    full_frame: bool = Field(False, description="letterbox the whole frame instead of cropping to the subject")
    jpeg_quality: int = Field(95, ge=1, le=100, description="JPEG quality of the written frames")
    workers: int = Field(2, ge=1, le=64, description="threads resizing and encoding frames")


@dataclasses.dataclass(frozen=True)
class FramesResult:
    """What :func:`extract_frames` wrote."""

    out_dir: Path
    frames: int
    persons_found: int
    transform: CropTransform


def frame_file(index: int) -> str:
    """The file name of frame ``index`` inside a frames directory."""
    return f"{index:06d}.jpg"


def count_rows(poses: str | Path) -> int:
    """Number of rows (hence frames to write) in a pose table, read from its footer only."""
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(poses).metadata.num_rows
    except FileNotFoundError as e:
        raise DancepipeError(f"{poses}: pose table does not exist (run the poses stage first)") from e
    except pa.ArrowInvalid as e:
        raise DancepipeError(f"{poses}: not a readable Parquet table") from e


def _load_poses(poses: str | Path | pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any], str]:
    if isinstance(poses, pd.DataFrame):
        df, meta, name = poses, {}, "pose table"
    else:
        df, meta = read_table(poses)
        name = str(poses)
    missing = [c for c in _POSE_COLUMNS if c not in df.columns]
    if missing:
        raise DancepipeError(f"{name}: not a pose table (missing column{'s' * (len(missing) > 1)} {', '.join(missing)})")
    df = df.sort_values("frame", kind="stable").reset_index(drop=True)
    if df["frame"].duplicated().any():
        raise DancepipeError(f"{name}: frame {int(df['frame'][df['frame'].duplicated()].iloc[0])} appears twice")
    return df, meta, name


def plan_transform(df: pd.DataFrame, src_width: int, src_height: int, cfg: FramesConfig) -> CropTransform:
    """The crop for one video: fitted to the subject's boxes, or the letterboxed full frame."""
    if cfg.full_frame:
        return full_frame_transform(src_width, src_height, cfg.width, cfg.height)
    found = df["person_found"].to_numpy(dtype=bool)
    boxes = df.loc[found, ["box_x0", "box_y0", "box_x1", "box_y1"]].to_numpy(dtype=np.float64)
    return fit_crop(boxes, src_width, src_height, cfg.width, cfg.height, padding=cfg.padding)


def _crop_plane(plane: np.ndarray, box: tuple[int, int, int, int], size: tuple[int, int], fill: int) -> np.ndarray:
    """Crop ``plane`` to ``box`` = (x0, y0, x1, y1) (may reach outside; filled) and resize to ``size``.

    Only the part of the box inside the picture is resized, straight to its share of the
    output, and pasted into a canvas of ``fill``: padding a crop that reaches far past
    the frame at full resolution would cost more than decoding it.
    """
    h, w = plane.shape
    x0, y0, x1, y1 = box
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if (cx0, cy0, cx1, cy1) == (x0, y0, x1, y1):
        crop = plane[y0:y1, x0:x1]
        if crop.strides[1] != 1:  # rotated view: copy just the crop into a plain array
            crop = np.ascontiguousarray(crop)
        return area_resize(crop, size)
    out_w, out_h = size
    sx, sy = out_w / (x1 - x0), out_h / (y1 - y0)
    ox0, ox1 = int(round((cx0 - x0) * sx)), int(round((cx1 - x0) * sx))
    oy0, oy1 = int(round((cy0 - y0) * sy)), int(round((cy1 - y0) * sy))
    canvas = np.full((out_h, out_w), fill, dtype=plane.dtype)
    if cx1 > cx0 and cy1 > cy0 and ox1 > ox0 and oy1 > oy0:
        crop = plane[cy0:cy1, cx0:cx1]
        if crop.strides[1] != 1:
            crop = np.ascontiguousarray(crop)
        canvas[oy0:oy1, ox0:ox1] = area_resize(crop, (ox1 - ox0, oy1 - oy0))
    return canvas


def area_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Shrink ``image`` to ``size`` = (width, height) with an area (box) filter, fast.

    OpenCV's area filter is several times faster for integer ratios, so a large
    reduction is done as an integer step (dropping at most k-1 edge pixels, split
    between both sides: a sub-pixel shift at output size) followed by an area
    resize by the remaining factor below 2.
    """
    h, w = image.shape[:2]
    k = int(min(w / size[0], h / size[1]))
    if k >= 2:
        tw, th = w // k * k, h // k * k
        ox, oy = (w - tw) // 2, (h - th) // 2
        image = cv2.resize(image[oy:oy + th, ox:ox + tw], (tw // k, th // k), interpolation=cv2.INTER_AREA)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def render_planes(frame: PlanarFrame, t: CropTransform) -> np.ndarray:
    """Crop + resize one YUV 4:2:0 frame with ``t``; returns the (H, W, 3) BGR output image.

    Equivalent to ``t.apply_image`` on the RGB frame (to within colour-conversion
    rounding), but only the crop is touched: the luma plane is cut at full resolution,
    the chroma planes at half, each resized to its output size, and the small I420
    image converted to BGR.
    """
    if (frame.y.shape[1], frame.y.shape[0]) != (t.src_width, t.src_height):
        raise DancepipeError(
            f"frame {frame.index} is {frame.y.shape[1]}x{frame.y.shape[0]} "
            f"but the crop was fitted for {t.src_width}x{t.src_height}"
        )
    x0, y0 = int(round(t.x0)), int(round(t.y0))
    x1, y1 = int(round(t.x0 + t.crop_w)), int(round(t.y0 + t.crop_h))
    w, h = t.width, t.height
    out = np.empty((h * 3 // 2, w), dtype=np.uint8)
    out[:h] = _crop_plane(frame.y, (x0, y0, x1, y1), (w, h), _BLACK_Y)
    cbox = (x0 // 2, y0 // 2, (x1 + 1) // 2, (y1 + 1) // 2)
    quarter = (h // 2) * (w // 2)
    chroma = out[h:].reshape(-1)
    chroma[:quarter] = _crop_plane(frame.u, cbox, (w // 2, h // 2), _BLACK_UV).reshape(-1)
    chroma[quarter:] = _crop_plane(frame.v, cbox, (w // 2, h // 2), _BLACK_UV).reshape(-1)
    return cv2.cvtColor(out, cv2.COLOR_YUV2BGR_I420)


def _transform_for(
    df: pd.DataFrame, meta: dict[str, Any], name: str, video: str | Path, first: PlanarFrame, cfg: FramesConfig
) -> CropTransform:
    height, width = first.y.shape
    if meta.get("width") and (meta.get("width"), meta.get("height")) != (width, height):
        raise DancepipeError(
            f"{name}: pose table is for a {meta['width']}x{meta['height']} video but {video} is {width}x{height}"
        )
    return plan_transform(df, width, height, cfg)


def _write_jpeg(frame: PlanarFrame, t: CropTransform, path: Path, quality: int) -> str:
    """Write one frame's JPEG; its digest for the index."""
    ok, buf = cv2.imencode(".jpg", render_planes(frame, t), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise DancepipeError(f"{path}: JPEG encoding failed")
    data = buf.tobytes()
    path.write_bytes(data)
    return file_digest(data)


def extract_frames(
    video: str | Path,
    poses_table: str | Path | pd.DataFrame,
    out_dir: str | Path,
    cfg: FramesConfig,
    progress: Callable[[int], None] | None = None,
) -> FramesResult:
    """Write the cropped, resized JPEG frames of ``video`` plus index and transform to ``out_dir``.

    ``poses_table`` (path or DataFrame with the :data:`dancepipe.pose.keypoints.SCHEMA`
    columns) must describe exactly the frames the video decodes to: one row per frame
    index. Raises :class:`DancepipeError` when it does not, when no frame has a person
    (there is no subject to crop to), or when the video cannot be read. The directory
    appears only when complete. ``progress(n)`` is called as frames are written.
    """
    df, meta, name = _load_poses(poses_table)
    if len(df) == 0:
        raise DancepipeError(f"{name}: pose table has no rows")
    if not df["person_found"].any():
        raise DancepipeError(f"{name}: no person was found in any frame, so there is no subject to crop to")
    expected = df["frame"].to_numpy(dtype=np.int64)
    files = [frame_file(int(i)) for i in expected]
    report = DecodeReport()
    with atomic_path(out_dir, directory=True) as tmp:
        t, digests = _write_jpegs(video, df, meta, name, tmp, files, cfg, report, progress)
        index = pd.DataFrame(
            {
                "frame": expected,
                "file": files,
                "timestamp": df["timestamp"].to_numpy(dtype=np.float64),
                "person_found": df["person_found"].to_numpy(dtype=bool),
                DIGEST_COLUMN: digests,
            }
        )
        write_table(
            index, tmp / INDEX_NAME,
            {"video": str(video), "poses": name, "transform": t.to_dict(), "params": cfg.model_dump()},
            schema=INDEX_SCHEMA,
        )
        t.save(tmp / TRANSFORM_NAME)
    if report.damaged:
        log.warning(
            "%s: %d packets could not be decoded and %d announced frames are missing (damaged file)",
            video, report.errors, report.missing,
        )
    return FramesResult(
        out_dir=Path(out_dir), frames=len(files), persons_found=int(df["person_found"].sum()), transform=t
    )


def _write_jpegs(
    video: str | Path, df: pd.DataFrame, meta: dict[str, Any], name: str, out: Path, files: list[str],
    cfg: FramesConfig, report: DecodeReport, progress: Callable[[int], None] | None,
) -> tuple[CropTransform, list[str]]:
    """Decode ``video`` and write one JPEG per pose-table row into ``out``; the crop used and the JPEGs' digests.

    The main thread decodes; a pool of ``cfg.workers`` threads crops, resizes, encodes
    and writes. At most ``2 * workers + 2`` frames are queued, which bounds memory.
    """
    expected = df["frame"].to_numpy(dtype=np.int64)
    pending: deque[Future[str]] = deque()
    digests: list[str] = []  # in row order: futures are drained in the order they were submitted
    max_pending = 2 * cfg.workers + 2
    t: CropTransform | None = None

    def drain(keep: int) -> None:
        while len(pending) > keep:
            digests.append(pending.popleft().result())
            if progress is not None:
                progress(1)

    count = 0
    with ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix="dancepipe-jpeg") as pool:
        try:
            for frame in iter_planes(video, report=report):
                if t is None:  # the upright size is known once the first frame is decoded
                    t = _transform_for(df, meta, name, video, frame, cfg)
                if count >= len(expected):
                    raise DancepipeError(
                        f"{video}: decodes to more frames than the {len(expected)} rows of {name}; "
                        "the pose table was made from a different video (rerun the poses stage)"
                    )
                if frame.index != expected[count]:
                    raise DancepipeError(
                        f"{name}: row {count} is frame {expected[count]} but {video} decodes frame "
                        f"{frame.index} there; the pose table does not match the video"
                    )
                pending.append(pool.submit(_write_jpeg, frame, t, out / files[count], cfg.jpeg_quality))
                count += 1
                drain(max_pending)
            drain(0)
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise
    if t is None or count != len(expected):
        raise DancepipeError(
            f"{video}: decodes to {count} frames but {name} has {len(expected)} rows; "
            "the pose table does not match the video"
        )
    return t, digests

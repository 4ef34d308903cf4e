"""The source panel of the side-by-side video: the source dancer, cropped and steadied.

The side-by-side video shows source | stick figure | generated. Showing the source's
whole frame there makes the dancer tiny whenever they use the whole picture (in the
Sports2D demo a person walks across a 1768x994 frame). So each panel is a crop of the
ingested source video centred on the source subject's box (from the source pose
table: original pixel coordinates of the upright video, one row per decoded frame),
at the panel's aspect ratio, and scaled so that the source dancer is as tall as the
stick figure beside it, which is as tall as the generated target:

* the **scale** (label pixels per source pixel) is measured per frame from the
  keypoints the two tables share: the labels are the source keypoints normalised by
  a scale and a shift, so the ratio of the two point clouds' RMS spreads about their
  centroids is that scale (at least :data:`MIN_JOINTS` joints, visible in both);
* where no frame gives a scale (labels without keypoints, say) the crop is the
  subject's box padded by :data:`FALLBACK_PADDING` of its size, as the frames stage
  crops the target.

Raw boxes and scales jump from frame to frame, so the crop's centre and size are
treated as time series: frames without a measurement are interpolated linearly
between their neighbours (frames before the first or after the last take the nearest
value), then each series is smoothed by a centred moving average of ``window`` frames
(a straight-line fit near the ends, i.e. a first-order Savitzky-Golay filter; the
scale first goes through a running median, as a few joints can mislead it), so the
crop glides instead of jittering. A crop that reaches past the picture is shifted
back inside it (the subject then drifts off-centre, as when a camera stops at the
edge), and one larger than the picture is centred on it, with black around.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from scipy.ndimage import median_filter
from scipy.signal import savgol_filter

from dancepipe.errors import DancepipeError
from dancepipe.pose.keypoints import KEYPOINT_COLUMNS, columns_to_keypoints, read_table
from dancepipe.video.decode import iter_frames

BOX_COLUMNS: tuple[str, ...] = ("box_x0", "box_y0", "box_x1", "box_y1")
MIN_JOINTS = 4  # joints visible in both tables needed to measure a frame's scale
FALLBACK_PADDING = 0.1  # margin around the box (share of its size) when no scale can be measured


@dataclasses.dataclass(frozen=True)
class PanelTrack:
    """The smoothed crop around the source subject, per pose-table frame.

    ``frames`` are the pose table's frame indices (increasing); ``cx``/``cy`` the crop
    centre and ``crop_h`` its height in source pixels; the width is
    ``crop_h * aspect`` with ``aspect`` the panel's width / height.
    """

    frames: np.ndarray  # (N,) int64
    cx: np.ndarray      # (N,) float64
    cy: np.ndarray      # (N,) float64
    crop_h: np.ndarray  # (N,) float64
    aspect: float

    def box(self, frame: int) -> tuple[float, float, float, float]:
        """Crop ``(x0, y0, width, height)`` in source pixels for ``frame`` (nearest track end outside it)."""
        f = float(frame)
        h = float(np.interp(f, self.frames, self.crop_h))
        w = h * self.aspect
        cx = float(np.interp(f, self.frames, self.cx))
        cy = float(np.interp(f, self.frames, self.cy))
        return cx - w / 2, cy - h / 2, w, h


def _fill(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Linear interpolation over the positions where ``ok`` is False; nearest value at the ends."""
    idx = np.arange(len(values), dtype=np.float64)
    return np.interp(idx, idx[ok], values[ok])


def smooth_series(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over ``window`` frames with a line fit at the ends (window <= 2: unchanged)."""
    v = np.asarray(values, dtype=np.float64)
    w = min(int(window), len(v) if len(v) % 2 else len(v) - 1)
    if w % 2 == 0:
        w -= 1
    if w < 3:
        return v.copy()
    return savgol_filter(v, w, 1, mode="interp")


def label_scale(poses: pd.DataFrame, labels: pd.DataFrame) -> np.ndarray:
    """Label pixels per source pixel for each row of ``poses`` (NaN where it cannot be measured).

    Rows are matched by ``frame``; a frame is measured when at least :data:`MIN_JOINTS`
    joints have finite x and y in both tables.
    """
    out = np.full(len(poses), np.nan)
    if not set(KEYPOINT_COLUMNS) <= set(poses.columns) or not set(KEYPOINT_COLUMNS) <= set(labels.columns):
        return out
    by_frame = {int(f): i for i, f in enumerate(labels["frame"].to_numpy(np.int64))}
    src = columns_to_keypoints(poses)[..., :2].astype(np.float64)
    lab = columns_to_keypoints(labels)[..., :2].astype(np.float64)
    for t, frame in enumerate(poses["frame"].to_numpy(np.int64)):
        j = by_frame.get(int(frame))
        if j is None:
            continue
        both = np.isfinite(src[t]).all(axis=1) & np.isfinite(lab[j]).all(axis=1)
        if both.sum() < MIN_JOINTS:
            continue
        s, m = src[t, both], lab[j, both]
        spread = float(((s - s.mean(axis=0)) ** 2).sum())
        if spread > 0:
            out[t] = np.sqrt(float(((m - m.mean(axis=0)) ** 2).sum()) / spread)
    return out


def subject_track(poses: pd.DataFrame, *, width: int, height: int, labels: pd.DataFrame | None = None,
                  window: int = 15) -> PanelTrack:
    """Fit the ``width x height`` source panel's crop to a pose table (and the labels' scale).

    ``poses`` needs ``frame``, ``person_found`` and the box columns; with ``labels`` (a
    labels index: ``frame`` and keypoint columns in label pixels) and keypoints in
    both, the crop is ``height / scale`` source pixels tall so the dancer matches the
    stick figure (see the module docstring); otherwise it is the box padded by
    :data:`FALLBACK_PADDING`, grown to the panel's aspect ratio. Raises
    :class:`DancepipeError` when no frame has a box.
    """
    missing = [c for c in ("frame", "person_found", *BOX_COLUMNS) if c not in poses.columns]
    if missing:
        raise DancepipeError(f"the pose table has no '{missing[0]}' column; rerun the poses stage")
    if width < 1 or height < 1:
        raise DancepipeError(f"a {width}x{height} panel is empty")
    aspect = width / height
    df = poses.sort_values("frame").reset_index(drop=True)
    boxes = df[list(BOX_COLUMNS)].to_numpy(np.float64)
    ok = df["person_found"].to_numpy(bool) & np.isfinite(boxes).all(axis=1)
    ok &= (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    if not ok.any():
        raise DancepipeError("the source pose table has no subject box in any frame: nothing to crop the panel to")
    cx, cy = (smooth_series(_fill(c, ok), window) for c in ((boxes[:, 0] + boxes[:, 2]) / 2,
                                                            (boxes[:, 1] + boxes[:, 3]) / 2))
    scale = label_scale(df, labels) if labels is not None else np.full(len(df), np.nan)
    measured = ok & np.isfinite(scale) & (scale > 0)
    if measured.any():
        log_scale = _fill(np.log(np.where(measured, scale, 1.0)), measured)
        log_scale = median_filter(log_scale, size=max(1, int(window)), mode="nearest")
        crop_h = height / np.exp(smooth_series(log_scale, window))
    else:
        bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        padded = np.maximum(bh, bw / aspect) * (1 + 2 * FALLBACK_PADDING)
        crop_h = smooth_series(_fill(padded, ok), window)
    return PanelTrack(frames=df["frame"].to_numpy(np.int64), cx=cx, cy=cy, crop_h=np.maximum(crop_h, 1.0),
                      aspect=aspect)


def load_track(path: str | Path, *, width: int, height: int, labels: pd.DataFrame | None = None,
               window: int = 15) -> PanelTrack:
    """:func:`subject_track` of the pose table at ``path`` (data/subjects/<source>/poses.parquet)."""
    df, _ = read_table(path)
    if len(df) == 0:
        raise DancepipeError(f"{path}: the pose table has no rows")
    try:
        return subject_track(df, width=width, height=height, labels=labels, window=window)
    except DancepipeError as e:
        raise DancepipeError(f"{path}: {e}") from e


def keep_inside(box: tuple[float, float, float, float], width: int, height: int) -> tuple[float, float, float, float]:
    """Shift ``box`` = (x0, y0, w, h) into a ``width x height`` picture; centre it on an axis where it is larger."""
    x0, y0, w, h = box

    def shift(start: float, size: float, limit: int) -> float:
        return (limit - size) / 2 if size >= limit else min(max(start, 0.0), limit - size)

    return shift(x0, w, width), shift(y0, h, height), w, h


def crop_panel(image: np.ndarray, box: tuple[float, float, float, float], width: int, height: int) -> np.ndarray:
    """Cut ``box`` = (x0, y0, w, h) out of ``image`` and scale it to ``width x height``; black outside the image."""
    x0, y0, bw, bh = box
    panel = np.zeros((height, width, 3), np.uint8)
    H, W = image.shape[:2]
    sx, sy = width / bw, height / bh
    ix0, iy0 = max(0, int(round(x0))), max(0, int(round(y0)))
    ix1, iy1 = min(W, int(round(x0 + bw))), min(H, int(round(y0 + bh)))
    if ix1 <= ix0 or iy1 <= iy0:
        return panel
    # ix0 rounds x0, so ix0 - x0 may be slightly negative; scaled up more than 2x (a 512x1024
    # panel of a small source subject) it would round to -1, an empty slice
    px0, py0 = max(0, int(round((ix0 - x0) * sx))), max(0, int(round((iy0 - y0) * sy)))
    px1 = min(width, int(round((ix1 - x0) * sx)))
    py1 = min(height, int(round((iy1 - y0) * sy)))
    if px1 <= px0 or py1 <= py0:
        return panel
    patch = image[iy0:iy1, ix0:ix1]
    shrink = (px1 - px0) < patch.shape[1]
    panel[py0:py1, px0:px1] = cv2.resize(patch, (px1 - px0, py1 - py0),
                                         interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return panel


def source_panels(video: str | Path, track: PanelTrack, frames: Iterable[int], width: int,
                  height: int) -> Iterator[np.ndarray]:
    """Yield the ``width x height`` source panel of each of ``frames`` (increasing decoded-frame indices).

    The video is decoded once, upright (:func:`dancepipe.video.decode.iter_frames`), and
    frames not asked for are skipped. Raises :class:`DancepipeError` when the video
    ends before a requested frame.
    """
    wanted = iter(frames)
    target = next(wanted, None)
    last = -1
    decoded = iter_frames(video)
    try:
        for frame in decoded:
            last = frame.index
            while target is not None and int(target) == frame.index:
                h, w = frame.image.shape[:2]
                yield crop_panel(frame.image, keep_inside(track.box(int(target)), w, h), width, height)
                nxt = next(wanted, None)
                if nxt is not None and int(nxt) < int(target):
                    raise DancepipeError(f"source panel frames must increase, got {nxt} after {target}")
                target = nxt
            if target is None:
                return
    finally:
        decoded.close()
    if target is not None:
        raise DancepipeError(f"{video}: the video ends at frame {last}, before label frame {int(target)}")

"""Temporal clean-up of keypoint tracks before drawing transfer labels.

Pose detectors jitter from frame to frame and drop joints for a frame or two; drawn
as-is the stick figures flicker, and the generator copies the flicker. Two steps run
per coordinate series (each joint's x, y and confidence over time):

1. :func:`interpolate_gaps` fills runs of NaN no longer than ``gap_max`` frames that
   have a valid value on both sides, linearly. Longer gaps and gaps at the start or end
   stay NaN: inventing a limb for a second is worse than leaving it out.
2. :func:`smooth` filters x and y of each contiguous valid run (NaN splits runs, so a
   filter never mixes values across a gap) with a registered method.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.ndimage import median_filter
from scipy.signal import savgol_filter


def _runs(valid: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) index pairs of the True runs of a 1-D boolean array."""
    padded = np.concatenate([[False], valid, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def interpolate_gaps(kps: np.ndarray, gap_max: int) -> np.ndarray:
    """Fill interior NaN gaps of at most ``gap_max`` frames in (N, 17, 3) keypoints.

    Each of the 51 series is handled on its own, confidences included (a filled joint
    gets a confidence between its neighbours', so ``min_conf`` still applies). Returns a
    new float64 array; the input is not modified.
    """
    out = np.array(kps, dtype=np.float64, copy=True)
    if gap_max <= 0 or len(out) < 3:
        return out
    flat = out.reshape(len(out), -1)
    idx = np.arange(len(out), dtype=np.float64)
    for j in range(flat.shape[1]):
        series = flat[:, j]
        valid = np.isfinite(series)
        if valid.all() or valid.sum() < 2:
            continue
        for start, stop in _runs(~valid):
            if start == 0 or stop == len(series) or stop - start > gap_max:
                continue
            series[start:stop] = np.interp(idx[start:stop], [start - 1, stop], [series[start - 1], series[stop]])
    return out


def _savgol(series: np.ndarray, window: int, polyorder: int) -> np.ndarray:
    w = min(window, len(series) if len(series) % 2 else len(series) - 1)
    if w <= polyorder:
        return series
    return savgol_filter(series, w, polyorder, mode="interp")


def _median(series: np.ndarray, window: int, polyorder: int) -> np.ndarray:
    del polyorder
    return median_filter(series, size=min(window, len(series)), mode="nearest")


def _none(series: np.ndarray, window: int, polyorder: int) -> np.ndarray:
    del window, polyorder
    return series


# name -> filter applied to one contiguous valid run of one coordinate
SMOOTHERS: dict[str, Callable[[np.ndarray, int, int], np.ndarray]] = {
    "savgol": _savgol,
    "median": _median,
    "none": _none,
}


def smooth(kps: np.ndarray, method: str, window: int, polyorder: int = 2) -> np.ndarray:
    """Temporally smooth x and y of (N, 17, 3) keypoints run by run; NaN stays NaN.

    ``method`` is a key of :data:`SMOOTHERS`. Runs shorter than the window use the
    longest odd window that fits (Savitzky-Golay) or a shorter median.
    """
    try:
        fn = SMOOTHERS[method]
    except KeyError as e:
        raise ValueError(f"unknown smoothing method '{method}'; choose one of {', '.join(SMOOTHERS)}") from e
    out = np.array(kps, dtype=np.float64, copy=True)
    if method == "none" or window <= 1:
        return out
    for joint in range(out.shape[1]):
        for c in (0, 1):
            series = out[:, joint, c]
            for start, stop in _runs(np.isfinite(series)):
                if stop - start >= 2:
                    series[start:stop] = fn(series[start:stop], window, polyorder)
    return out

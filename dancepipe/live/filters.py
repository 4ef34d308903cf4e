"""Causal clean-up of live keypoints: the gap hold and the One Euro filter.

The pipeline's transfer labels fill short gaps by interpolating between the frames on
either side and smooth with a centred window (:mod:`dancepipe.pose.smoothing`); both
look at frames that have not been filmed yet when the camera is live. Their causal
stand-ins:

* :class:`GapHold` keeps a joint that drops out at its last seen place for at most
  ``gap_max`` frames (the same limit as ``labels.transfer.gap_max``), then lets it go;
* :class:`OneEuroFilter` (Casiez, Roussel and Vogel, CHI 2012) is a low-pass filter whose
  cut-off rises with the signal's speed: a still joint is smoothed hard (the detector's
  jitter disappears), a moving one hardly at all (no lag on a fast arm). It needs only
  the past, one sample of state per value.
"""

from __future__ import annotations

import math

import numpy as np


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Smoothing factor of a first-order low-pass filter with ``cutoff`` Hz sampled every ``dt`` s."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """The One Euro filter over an array of values filtered independently (e.g. (17, 2) keypoints).

    ``min_cutoff`` (Hz) is the cut-off of a still value, ``beta`` how fast the cut-off
    rises with speed (per value unit per second), ``d_cutoff`` (Hz) the cut-off of the
    speed estimate. Values are divided by ``scale`` before filtering, so ``beta`` can be
    given per frame height and holds for any camera size. A NaN input gives NaN out and
    forgets that value's state: when it comes back it starts afresh, never pulled
    towards where it was before the gap.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 20.0, d_cutoff: float = 1.0,
                 scale: float = 1.0) -> None:
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0 or scale <= 0:
            raise ValueError("min_cutoff, d_cutoff and scale must be positive and beta non-negative")
        self.min_cutoff, self.beta, self.d_cutoff, self.scale = min_cutoff, beta, d_cutoff, scale
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next sample passes through unchanged."""
        self._x: np.ndarray | None = None  # last filtered value (scaled), NaN where unknown
        self._dx: np.ndarray | None = None  # last filtered speed (scaled units per second)
        self._t: float | None = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """Filter one sample ``x`` taken at time ``t`` (seconds, increasing); returns a new array."""
        v = np.asarray(x, dtype=np.float64) / self.scale
        if self._x is None or self._t is None or self._x.shape != v.shape or t <= self._t:
            # first sample, a new shape, or a clock that did not advance: start from here
            self._x, self._dx, self._t = v.copy(), np.zeros_like(v), t
            return v * self.scale
        dt = t - self._t
        self._t = t
        known = np.isfinite(self._x) & np.isfinite(v)
        dx = np.where(known, (v - self._x) / dt, 0.0)
        dx_hat = self._dx + _alpha(self.d_cutoff, dt) * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(dx_hat)
        filtered = self._x + _alpha(cutoff, dt) * (v - self._x)
        out = np.where(known, filtered, v)  # a value with no past (or none now) passes through
        self._x = out
        self._dx = np.where(known, dx_hat, 0.0)
        return out * self.scale


class GapHold:
    """Keep each missing keypoint at its last seen place for at most ``gap_max`` frames.

    Works on (17, 3) keypoints (x, y, conf; NaN where not seen), joint by joint, as
    :func:`dancepipe.pose.smoothing.interpolate_gaps` does offline, but with the last
    value held instead of a line to the next one (which is not known yet). A gap longer
    than ``gap_max`` frames stays a gap: inventing a limb for a second is worse than
    leaving it out.
    """

    def __init__(self, gap_max: int) -> None:
        self.gap_max = int(gap_max)
        self.reset()

    def reset(self) -> None:
        self._last: np.ndarray | None = None
        self._age: np.ndarray | None = None  # frames since each joint was last seen

    def __call__(self, kps: np.ndarray) -> np.ndarray:
        kps = np.array(kps, dtype=np.float64, copy=True)
        seen = np.isfinite(kps[:, 0]) & np.isfinite(kps[:, 1])
        if self._last is None or self._age is None:
            self._last, self._age = kps.copy(), np.where(seen, 0, self.gap_max + 1)
            return kps
        self._age = np.where(seen, 0, self._age + 1)
        hold = ~seen & (self._age <= self.gap_max) & np.isfinite(self._last[:, 0])
        kps[hold] = self._last[hold]
        self._last = np.where(seen[:, None], kps, self._last)
        return kps

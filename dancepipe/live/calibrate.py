"""Global pose normalisation, calibrated live.

The normfit stage fits a source's depth statistics over its whole video
(:func:`dancepipe.transfer.normalize.fit_subject`): the far and close ends of its ankle
height in the picture and its body height near each. A person in front of a webcam
has no whole video yet, so the same statistics are collected while they move:

1. every frame in which the person's head and both ankles are seen (normfit's *usable*
   frames, :func:`dancepipe.transfer.normalize.frame_measures`) is kept, the newest
   ``keep`` of them (about a minute at live frame rates);
2. every ``refit_every`` new usable frames the person's statistics are refitted on what
   is kept, with normfit's own percentiles and bands (params ``normfit``), and combined
   with the target's statistics (fitted once, the same way, on the target's keypoint
   table) into the mapping (:func:`dancepipe.transfer.normalize.fit_mapping`);
3. before ``normfit.min_frames`` usable frames the mapping is provisional (fitted on the
   few frames there are); a person who has not yet walked towards or away from the
   camera has a degenerate depth range, and normfit's rule then applies a constant
   scale, exactly as it does for a source that stands still. Walking forwards and back
   once turns it into the paper's interpolation.

No mapping exists before the first usable frame: until the camera has seen the person's
head and both ankles, there is nothing to scale against, and no label is drawn.
:meth:`LiveCalibration.reset` (the page's *recalibrate* button) starts the collection
again, for a new person or a moved camera. The bone ratios of the retarget step
(:func:`dancepipe.transfer.retarget.bone_ratios`) are refitted with the mapping, from the
kept frames carried into the target's space.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

import numpy as np

from dancepipe.errors import DancepipeError
from dancepipe.transfer.normalize import (
    NormfitConfig,
    NormMapping,
    SubjectStats,
    apply_mapping,
    fit_mapping,
    fit_subject,
    frame_measures,
)
from dancepipe.transfer.retarget import bone_ratios


@dataclasses.dataclass(frozen=True)
class CalibrationState:
    """What the page shows about the calibration."""

    usable: int  # usable frames kept
    needed: int  # normfit.min_frames
    mode: str | None  # the mapping's mode (interpolate / constant), None before the first usable frame
    far: float | None  # the person's far and close ankle y (camera pixels)
    close: float | None

    @property
    def ready(self) -> bool:
        return self.mode is not None and self.usable >= self.needed

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ready": self.ready}


class LiveCalibration:
    """The person's statistics and the mapping into the target's space, refitted as frames come in."""

    def __init__(self, target: SubjectStats, cfg: NormfitConfig, *, bones: dict[str, dict[str, Any]] | None = None,
                 keep: int = 600, refit_every: int = 10) -> None:
        if keep < cfg.min_frames:
            raise DancepipeError(f"live calibration keeps {keep} frames, fewer than normfit.min_frames = {cfg.min_frames}")
        self.target, self.cfg, self.bones = target, cfg, bones
        self.keep, self.refit_every = int(keep), max(1, int(refit_every))
        self.reset()

    def reset(self) -> None:
        """Forget the person: collect again from the next frame."""
        self._frames: collections.deque[np.ndarray] = collections.deque(maxlen=self.keep)
        self._since_fit = 0
        self.mapping: NormMapping | None = None
        self.stats: SubjectStats | None = None
        self.ratios: dict[str, float] | None = None
        self.fits = 0

    def add(self, kps: np.ndarray) -> bool:
        """Offer one frame's (17, 3) camera-pixel keypoints; True when the mapping was refitted."""
        kps = np.asarray(kps, dtype=np.float64)
        if not frame_measures(kps[None])["usable"][0]:
            return False
        self._frames.append(kps)
        self._since_fit += 1
        # every frame while provisional (a fit on a few frames is cheap), then every refit_every
        if self.mapping is None or len(self._frames) <= self.cfg.min_frames or self._since_fit >= self.refit_every:
            self._fit()
            return True
        return False

    def _fit(self) -> None:
        kept = np.stack(self._frames)
        # provisional fits (fewer frames than normfit needs) use what there is
        cfg = self.cfg if len(kept) >= self.cfg.min_frames else self.cfg.model_copy(update={"min_frames": 1})
        self.stats = fit_subject(kept, cfg, name="the live camera")
        self.mapping = fit_mapping(self.stats, self.target)
        if self.bones is not None:
            self.ratios = bone_ratios(self.bones, apply_mapping(kept, self.mapping))
        self._since_fit = 0
        self.fits += 1

    @property
    def state(self) -> CalibrationState:
        s = self.stats
        return CalibrationState(
            usable=len(self._frames), needed=self.cfg.min_frames, mode=None if self.mapping is None else self.mapping.mode,
            far=None if s is None else round(s.ankle_far, 1), close=None if s is None else round(s.ankle_close, 1),
        )

"""Which way a person faces the camera, read from 2-D keypoints, and mirroring a pose's sides.

The pose model names each keypoint's side (left wrist, right wrist). Seen from the
front, a person's left shoulder is on the right of the picture; seen from the back,
on the left; side-on, the two nearly coincide. The signed, height-normalised
shoulder and hip widths (:func:`facing_score`) tell the three apart.

Two things make this matter for motion transfer. The pose model often swaps a
person's sides for a run of frames while the person faces the camera throughout
(docs/labels.md, "Facing", shows it on the demo), and a
stick figure whose colours say "seen from the back" then asks the generator for a
view of the target it has never seen if the target always faced the camera. A
transfer label whose facing disagrees with the one way the target was filmed is
therefore mirrored in its sides (:func:`match_facing`): every left keypoint trades
places with its right twin. The figure's outline does not move; only which limb is
called left changes, so the generator draws the view of the target it knows.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from dancepipe.pose.keypoints import COCO_NAMES, FACE_POINTS, KP

Facing = Literal["front", "back"]

# Each keypoint's twin on the other side (the nose is its own).
MIRROR: tuple[int, ...] = tuple(
    KP[n.replace("left_", "right_")] if n.startswith("left_")
    else KP[n.replace("right_", "left_")] if n.startswith("right_") else KP[n]
    for n in COCO_NAMES
)
# The same with the face points left in place: mirrors a body and not its head.
BODY_MIRROR: tuple[int, ...] = tuple(i if i in FACE_POINTS else m for i, m in enumerate(MIRROR))
_PAIRS = ((KP["left_shoulder"], KP["right_shoulder"]), (KP["left_hip"], KP["right_hip"]))

# |score| below this share of the body height is a side view (or a pose the model
# collapsed onto one line): no facing is read from it.
CLEAR_FACING = 0.05
# A subject faces one way when at least this share of its clearly facing frames do.
DOMINANT_SHARE = 0.9


def facing_score(kps: np.ndarray) -> np.ndarray:
    """Per frame, the mean signed width (left x − right x) of the visible shoulder and hip pairs, over the body height.

    ``kps`` is (N, 17, 2+) in image pixels, NaN where not seen. Positive: the person
    faces the camera; negative: their back is to it; near zero: side-on. NaN where
    neither pair is visible or the keypoints span no height.
    """
    kps = np.asarray(kps, dtype=np.float64)
    widths = np.stack([kps[:, a, 0] - kps[:, b, 0] for a, b in _PAIRS], axis=1)  # (N, 2)
    seen = np.isfinite(widths)
    width = np.where(seen.any(axis=1), np.nansum(widths, axis=1) / np.maximum(seen.sum(axis=1), 1), np.nan)
    y = kps[..., 1]
    has_y = np.isfinite(y).any(axis=1)
    height = np.full(len(kps), np.nan)
    height[has_y] = np.nanmax(y[has_y], axis=1) - np.nanmin(y[has_y], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = width / height
    score[~(height > 0)] = np.nan
    return score


def facing_counts(kps: np.ndarray) -> dict[str, int]:
    """Frames facing the camera (``front``), facing away (``back``) and side-on or unclear (``side``)."""
    s = facing_score(kps)
    ok = np.isfinite(s)
    front = int((s[ok] >= CLEAR_FACING).sum())
    back = int((s[ok] <= -CLEAR_FACING).sum())
    return {"front": front, "back": back, "side": int(ok.sum()) - front - back}


def dominant_facing(counts: dict[str, Any]) -> Facing | None:
    """The way a subject faces in at least :data:`DOMINANT_SHARE` of its clearly facing frames; None if mixed or unseen."""
    front, back = int(counts.get("front", 0)), int(counts.get("back", 0))
    if front + back == 0:
        return None
    if front >= DOMINANT_SHARE * (front + back):
        return "front"
    if back >= DOMINANT_SHARE * (front + back):
        return "back"
    return None


def mirror_sides(kps: np.ndarray, frames: np.ndarray, body_only: bool = False) -> np.ndarray:
    """A copy of ``kps`` (N, 17, C) with every left keypoint and its right twin exchanged in the ``frames`` mask.

    With ``body_only`` the face points keep their names.
    """
    out = np.array(kps, copy=True)
    out[frames] = out[frames][:, list(BODY_MIRROR if body_only else MIRROR)]
    return out


def match_facing(kps: np.ndarray, facing: Facing | None, body_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Mirror the sides of the frames that clearly face opposite to ``facing``.

    Returns the keypoints and the (N,) mask of mirrored frames. With ``facing`` None
    (a target seen both ways, or never clearly) nothing changes. Side-on frames are
    left alone: their sides cannot be read from the picture this way. With
    ``body_only`` the face points keep their names (a head already turned the
    target's way stays so).
    """
    s = facing_score(kps)
    if facing is None:
        return np.array(kps, copy=True), np.zeros(len(s), dtype=bool)
    with np.errstate(invalid="ignore"):
        wrong = s <= -CLEAR_FACING if facing == "front" else s >= CLEAR_FACING
    return mirror_sides(kps, wrong, body_only), wrong

"""Giving a source pose the target's head where the pose model lost the source's, or saw it turned.

The generator draws the target's head only from the five face points of the stick
figure (nose, eyes, ears). A source whose face the pose model cannot read (the
Pose2Sim clip blurs it) gets frames with a lone nose, often at shoulder height, and
the generator then paints a body without a head. Such frames get the target's own
head instead: the median position of each face point measured on the target in
*torso coordinates* (origin at the mid-shoulder, one axis up the spine from the
mid-hip, the other across it, both in spine lengths), put back on the source's torso
in that frame. The head therefore leans and scales with the source's torso, and a
frame whose face the pose model did read keeps it, unless that face is turned from the
way the target was filmed (:func:`turned_heads`): a side-on face asks the generator
for a view of the target's head it never saw.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dancepipe.pose.keypoints import FACE_POINTS, KP
from dancepipe.transfer.retarget import NECK, ROOT, extended_xy

FACE = FACE_POINTS
_SHOULDERS = (KP["left_shoulder"], KP["right_shoulder"])

# A source head is kept when it shows at least this many face points...
MIN_FACE_POINTS = 3
# ...and its nose rises above the mid-shoulder by at least this share of the target's rise.
MIN_RISE = 0.5
# A face counts as turned from the target's view below this share of the target's eye spacing.
MIN_EYE_SPACING = 0.5


def torso_frames(kps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: the mid-shoulder (N, 2), the unit vector up the spine (N, 2) and the spine length (N,).

    ``kps`` is (N, 17, 2+) in pixels, NaN where not seen. All three are NaN in a frame
    missing a shoulder or a hip, or whose spine has no length.
    """
    xy = extended_xy(kps)
    shoulder = xy[:, NECK]
    spine = shoulder - xy[:, ROOT]
    length = np.linalg.norm(spine, axis=1)
    length[~(length > 0)] = np.nan
    return shoulder, spine / length[:, None], length


def _across(up: np.ndarray) -> np.ndarray:
    """The unit vector across the spine: image-right for an upright person (y grows downwards)."""
    return np.stack([-up[:, 1], up[:, 0]], axis=1)


def head_shape(kps: np.ndarray) -> dict[str, Any] | None:
    """The target's median face points in torso coordinates, from frames showing all five and the torso.

    Returns ``{"points": [[up, across] × 5] (nose, left eye, right eye, left ear, right
    ear), "frames": n}``, JSON-ready, or None when no frame shows the whole face and
    torso (a target filmed from behind, say).
    """
    kps = np.asarray(kps, dtype=np.float64)
    origin, up, length = torso_frames(kps)
    face = kps[:, FACE, :2]
    ok = np.isfinite(length) & np.isfinite(face).all(axis=(1, 2))
    if not ok.any():
        return None
    rel = (face[ok] - origin[ok, None]) / length[ok, None, None]  # (n, 5, 2)
    along = np.einsum("nkd,nd->nk", rel, up[ok])
    across = np.einsum("nkd,nd->nk", rel, _across(up[ok]))
    points = np.stack([np.median(along, axis=0), np.median(across, axis=0)], axis=1)
    return {"points": [[round(float(a), 5), round(float(b), 5)] for a, b in points], "frames": int(ok.sum())}


def lost_heads(kps: np.ndarray, shape: dict[str, Any]) -> np.ndarray:
    """(N,) bool: frames with a torso whose head the pose model lost.

    Lost means fewer than :data:`MIN_FACE_POINTS` face points, or a nose that rises above
    the mid-shoulder by less than :data:`MIN_RISE` of the target's rise (``shape``):
    a nose found at the neck is a misread head, not a bowed one.
    """
    kps = np.asarray(kps, dtype=np.float64)
    origin, up, length = torso_frames(kps)
    face = kps[:, FACE, :2]
    seen = np.isfinite(face).all(axis=2)
    rise = np.einsum("nd,nd->n", face[:, 0] - origin, up) / length  # NaN without a nose or a torso
    target_rise = float(shape["points"][0][0])
    with np.errstate(invalid="ignore"):
        bad_nose = ~(rise >= MIN_RISE * target_rise)
    return np.isfinite(length) & ((seen.sum(axis=1) < MIN_FACE_POINTS) | bad_nose)


def turned_heads(kps: np.ndarray, shape: dict[str, Any]) -> np.ndarray:
    """(N,) bool: frames with a torso whose face is not seen the way the target's was.

    The target's head shape holds its eyes' spacing across the spine (left eye minus
    right eye, in spine lengths): positive for a target facing the camera. A source
    face turned side-on shows its eyes (nearly) on top of each other, or one eye only,
    and asks the generator for a view of the head it never saw. Such a face, one whose
    signed eye spacing is under :data:`MIN_EYE_SPACING` of the target's (or with an
    eye missing), counts as turned. Nothing counts when the target's own spacing is
    not positive.
    """
    kps = np.asarray(kps, dtype=np.float64)
    pts = np.asarray(shape["points"], dtype=np.float64)
    target = pts[1, 1] - pts[2, 1]
    if not target > 0:
        return np.zeros(len(kps), dtype=bool)
    _, up, length = torso_frames(kps)
    gap = np.einsum("nd,nd->n", kps[:, KP["left_eye"], :2] - kps[:, KP["right_eye"], :2], _across(up)) / length
    with np.errstate(invalid="ignore"):
        return np.isfinite(length) & ~(gap >= MIN_EYE_SPACING * target)


def complete_heads(kps: np.ndarray, shape: dict[str, Any], turned: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Replace the face points of :func:`lost_heads` frames with the target's head on the frame's torso.

    With ``turned``, so are those of :func:`turned_heads` frames.

    ``kps`` is (N, 17, 3); a placed point gets the lower of the two shoulder
    confidences, so the drawing's ``min_conf`` treats it like the torso it hangs on.
    Returns a new array and the (N,) mask of frames changed.
    """
    out = np.array(kps, dtype=np.float64, copy=True)
    lost = lost_heads(out, shape)
    if turned:
        lost |= turned_heads(out, shape)
    if not lost.any():
        return out, lost
    origin, up, length = torso_frames(out[lost])
    pts = np.asarray(shape["points"], dtype=np.float64)  # (5, 2)
    offsets = pts[None, :, 0, None] * up[:, None] + pts[None, :, 1, None] * _across(up)[:, None]  # (n, 5, 2)
    rows = np.flatnonzero(lost)
    face = list(FACE)
    out[np.ix_(rows, face, [0, 1])] = origin[:, None] + offsets * length[:, None, None]
    conf = np.fmin(out[rows, _SHOULDERS[0], 2], out[rows, _SHOULDERS[1], 2])  # (n,)
    out[np.ix_(rows, face, [2])] = conf[:, None, None]
    return out, lost

"""Stick-figure rasteriser: COCO-17 keypoints → an RGB label image.

The generator learns the mapping label → person, so the label must tell it
unambiguously which limb is where: every limb has its own fixed colour (left limbs
warm, right limbs cool, so the figure's facing is never ambiguous), joints are dots,
and the face points (nose, eyes, ears) are drawn thinner and in their own colours so
the face GAN has something to follow. Sizes are fractions of the image height, so a
label looks the same at every training resolution.

A joint that is missing (NaN, non-finite, implausibly far away, or under ``min_conf``)
draws nothing, nor does any limb touching it. Segments are clipped to the image
before they reach OpenCV, so coordinates far outside the frame are cut, never
wrapped by integer overflow.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from dancepipe.pose.keypoints import KP

RGB = tuple[int, int, int]

# limb name -> (joint a, joint b, colour)
LIMBS: dict[str, tuple[int, int, RGB]] = {
    "shoulders": (KP["left_shoulder"], KP["right_shoulder"], (255, 255, 0)),
    "left_upper_arm": (KP["left_shoulder"], KP["left_elbow"], (255, 80, 0)),
    "left_forearm": (KP["left_elbow"], KP["left_wrist"], (255, 170, 60)),
    "right_upper_arm": (KP["right_shoulder"], KP["right_elbow"], (0, 120, 255)),
    "right_forearm": (KP["right_elbow"], KP["right_wrist"], (60, 200, 255)),
    "left_torso": (KP["left_shoulder"], KP["left_hip"], (200, 0, 60)),
    "right_torso": (KP["right_shoulder"], KP["right_hip"], (60, 0, 200)),
    "hips": (KP["left_hip"], KP["right_hip"], (150, 0, 255)),
    "left_thigh": (KP["left_hip"], KP["left_knee"], (255, 0, 140)),
    "left_shin": (KP["left_knee"], KP["left_ankle"], (255, 120, 200)),
    "right_thigh": (KP["right_hip"], KP["right_knee"], (0, 200, 90)),
    "right_shin": (KP["right_knee"], KP["right_ankle"], (120, 255, 160)),
}
# thin face lines, drawn at half the limb thickness
FACE_LINES: dict[str, tuple[int, int, RGB]] = {
    "nose_left_eye": (KP["nose"], KP["left_eye"], (255, 200, 200)),
    "nose_right_eye": (KP["nose"], KP["right_eye"], (200, 200, 255)),
    "left_eye_ear": (KP["left_eye"], KP["left_ear"], (255, 150, 150)),
    "right_eye_ear": (KP["right_eye"], KP["right_ear"], (150, 150, 255)),
}
# face point -> colour (drawn last, on top)
FACE_POINTS: dict[int, RGB] = {
    KP["nose"]: (255, 255, 255),
    KP["left_eye"]: (255, 0, 0),
    KP["right_eye"]: (0, 0, 255),
    KP["left_ear"]: (255, 255, 128),
    KP["right_ear"]: (128, 255, 255),
}
BODY_JOINT_COLOUR: dict[int, RGB] = {
    KP["left_shoulder"]: (255, 40, 40), KP["right_shoulder"]: (40, 40, 255),
    KP["left_elbow"]: (255, 130, 40), KP["right_elbow"]: (40, 160, 255),
    KP["left_wrist"]: (255, 210, 40), KP["right_wrist"]: (40, 230, 230),
    KP["left_hip"]: (230, 40, 130), KP["right_hip"]: (130, 40, 230),
    KP["left_knee"]: (255, 60, 255), KP["right_knee"]: (40, 255, 40),
    KP["left_ankle"]: (255, 160, 255), KP["right_ankle"]: (160, 255, 120),
}
MAX_COORD = 1e6  # beyond this a coordinate is treated as garbage, not as a far point
_SHIFT = 4  # OpenCV fixed-point bits: sub-pixel accurate anti-aliased drawing
_ONE = 1 << _SHIFT


@dataclasses.dataclass(frozen=True)
class DrawStyle:
    """Pixel sizes for one label resolution (see :meth:`for_height`)."""

    line_px: int
    radius_px: int
    face_line_px: int
    face_radius_px: int
    min_conf: float = 0.0

    @classmethod
    def for_height(cls, height: int, line_width: float, joint_radius: float, min_conf: float = 0.0) -> DrawStyle:
        """Thicknesses as fractions of the label height, at least one pixel."""
        line = max(1, round(line_width * height))
        radius = max(1, round(joint_radius * height))
        return cls(line_px=line, radius_px=radius, face_line_px=max(1, line // 2),
                   face_radius_px=max(1, round(radius * 0.75)), min_conf=min_conf)


def visible_mask(kps: np.ndarray, min_conf: float = 0.0) -> np.ndarray:
    """(..., 17, 3) → (..., 17) bool: finite, plausible coordinates and conf ≥ min_conf (NaN conf passes)."""
    kps = np.asarray(kps, dtype=np.float64)
    xy = kps[..., :2]
    ok = np.all(np.isfinite(xy), axis=-1) & np.all(np.abs(np.nan_to_num(xy, nan=np.inf)) < MAX_COORD, axis=-1)
    return ok & ~(kps[..., 2] < min_conf)


def clip_segment(
    p: tuple[float, float], q: tuple[float, float], x_min: float, y_min: float, x_max: float, y_max: float
) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """Liang-Barsky: the part of segment p→q inside the rectangle, or None if it misses."""
    (x0, y0), (x1, y1) = p, q
    dx, dy = x1 - x0, y1 - y0
    t0, t1 = 0.0, 1.0
    for pk, qk in ((-dx, x0 - x_min), (dx, x_max - x0), (-dy, y0 - y_min), (dy, y_max - y0)):
        if pk == 0:
            if qk < 0:
                return None
            continue
        r = qk / pk
        if pk < 0:
            t0 = max(t0, r)
        else:
            t1 = min(t1, r)
        if t0 > t1:
            return None
    return (x0 + t0 * dx, y0 + t0 * dy), (x0 + t1 * dx, y0 + t1 * dy)


def _fixed(pt: tuple[float, float]) -> tuple[int, int]:
    return int(round(pt[0] * _ONE)), int(round(pt[1] * _ONE))


def _draw_lines(img: np.ndarray, kps: np.ndarray, vis: np.ndarray, lines: dict, thickness: int) -> None:
    h, w = img.shape[:2]
    m = thickness + 2
    for a, b, colour in lines.values():
        if not (vis[a] and vis[b]):
            continue
        seg = clip_segment((kps[a, 0], kps[a, 1]), (kps[b, 0], kps[b, 1]), -m, -m, w - 1 + m, h - 1 + m)
        if seg is not None:
            cv2.line(img, _fixed(seg[0]), _fixed(seg[1]), colour, thickness, cv2.LINE_AA, _SHIFT)


def _draw_dots(img: np.ndarray, kps: np.ndarray, vis: np.ndarray, colours: dict[int, RGB], radius: int) -> None:
    h, w = img.shape[:2]
    for j, colour in colours.items():
        x, y = kps[j, 0], kps[j, 1]
        if vis[j] and -radius - 1 <= x <= w + radius and -radius - 1 <= y <= h + radius:
            cv2.circle(img, _fixed((x, y)), radius * _ONE, colour, -1, cv2.LINE_AA, _SHIFT)


def draw_skeleton(kps: np.ndarray, width: int, height: int, style: DrawStyle) -> np.ndarray:
    """Draw one (17, 3) keypoint set (label pixels) on a black (height, width, 3) RGB image."""
    kps = np.asarray(kps, dtype=np.float64)
    img = np.zeros((height, width, 3), dtype=np.uint8)
    vis = visible_mask(kps, style.min_conf)
    if not vis.any():
        return img
    _draw_lines(img, kps, vis, LIMBS, style.line_px)
    _draw_dots(img, kps, vis, BODY_JOINT_COLOUR, style.radius_px)
    _draw_lines(img, kps, vis, FACE_LINES, style.face_line_px)
    _draw_dots(img, kps, vis, FACE_POINTS, style.face_radius_px)
    return img

"""Face boxes from keypoints, shared by the labels stage (which records them) and the
face GAN (which trains and renders with them).

A box is a fixed-size square centred on the nose, or on the midpoint of the visible
eyes/ears when the nose is missing. At an image border it is shifted inside, never
shrunk, so every face crop has the same size.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dancepipe.pose.keypoints import KP

_FALLBACK = ("left_eye", "right_eye", "left_ear", "right_ear")


def face_box_size(height: int, fraction: float) -> int:
    """Side of the face box in label pixels: ``fraction`` of the height, a multiple of 8."""
    return max(16, int(round(height * fraction / 8.0)) * 8)


def face_centres(keypoints: np.ndarray, min_conf: float = 0.0) -> np.ndarray:
    """(N, 17, 3) keypoints → (N, 2) face centres, NaN where no face point is visible."""
    kps = np.asarray(keypoints, dtype=np.float64)
    valid = np.isfinite(kps[..., 0]) & np.isfinite(kps[..., 1]) & ~(kps[..., 2] < min_conf)
    centres = np.full((len(kps), 2), np.nan)
    nose = KP["nose"]
    has_nose = valid[:, nose]
    centres[has_nose] = kps[has_nose, nose, :2]
    idx = [KP[n] for n in _FALLBACK]
    fb_valid = valid[:, idx]
    fb_xy = np.where(fb_valid[..., None], kps[:, idx, :2], 0.0)
    count = fb_valid.sum(axis=1)
    use_fb = ~has_nose & (count > 0)
    centres[use_fb] = fb_xy[use_fb].sum(axis=1) / count[use_fb, None]
    return centres


def compute_face_boxes(
    keypoints: np.ndarray, width: int, height: int, fraction: float = 1 / 6, min_conf: float = 0.0
) -> pd.DataFrame:
    """Per-frame face boxes in label pixels: columns face_x0, face_y0, face_size, face_ok.

    ``face_x0/face_y0`` are integer top-left corners (0 where ``face_ok`` is False).
    """
    size = face_box_size(height, fraction)
    size = min(size, width, height)
    centres = face_centres(keypoints, min_conf)
    ok = np.all(np.isfinite(centres), axis=1)
    # a centre far outside the picture is not a usable face
    ok &= (centres[:, 0] > -size / 2) & (centres[:, 0] < width + size / 2)
    ok &= (centres[:, 1] > -size / 2) & (centres[:, 1] < height + size / 2)
    x0 = np.zeros(len(centres), dtype=np.int32)
    y0 = np.zeros(len(centres), dtype=np.int32)
    c = np.nan_to_num(centres[ok])
    x0[ok] = np.clip(np.round(c[:, 0] - size / 2), 0, width - size).astype(np.int32)
    y0[ok] = np.clip(np.round(c[:, 1] - size / 2), 0, height - size).astype(np.int32)
    return pd.DataFrame({
        "face_x0": x0, "face_y0": y0, "face_size": np.full(len(centres), size, dtype=np.int32), "face_ok": ok,
    })

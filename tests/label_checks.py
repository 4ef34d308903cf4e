"""Content checks of stick-figure label images, written from the drawing spec (docs/labels.md),
not from dancepipe.pose.skeleton's tables."""

from __future__ import annotations

import numpy as np

from dancepipe.pose.keypoints import KP

# The dot colour (RGB) of each body joint: left warm, right cool, one colour per joint.
JOINT_COLOURS: dict[str, tuple[int, int, int]] = {
    "left_shoulder": (255, 40, 40), "right_shoulder": (40, 40, 255),
    "left_elbow": (255, 130, 40), "right_elbow": (40, 160, 255),
    "left_wrist": (255, 210, 40), "right_wrist": (40, 230, 230),
    "left_hip": (230, 40, 130), "right_hip": (130, 40, 230),
    "left_knee": (255, 60, 255), "right_knee": (40, 255, 40),
    "left_ankle": (255, 160, 255), "right_ankle": (160, 255, 120),
}


def joint_colour_errors(label: np.ndarray, kps: np.ndarray) -> dict[str, int]:
    """For each visible body joint of ``kps`` (17, >=2, label pixels) inside the (H, W, 3) RGB ``label``:
    the smallest per-channel colour error between the joint's colour and a pixel within 1 px of it."""
    h, w = label.shape[:2]
    errors = {}
    for name, colour in JOINT_COLOURS.items():
        x, y = kps[KP[name], 0], kps[KP[name], 1]
        if not (np.isfinite(x) and np.isfinite(y)) or not (1 <= x < w - 1 and 1 <= y < h - 1):
            continue
        c, r = int(round(x)), int(round(y))  # OpenCV draws pixel (c, r) centred on (c, r)
        patch = label[r - 1:r + 2, c - 1:c + 2].reshape(-1, 3).astype(int)
        errors[name] = int(np.abs(patch - np.array(colour)).max(axis=1).min())
    return errors


def assert_joints_drawn(label: np.ndarray, kps: np.ndarray, min_joints: int = 8, tol: int = 20) -> None:
    errors = joint_colour_errors(label, kps)
    assert len(errors) >= min_joints, errors
    assert max(errors.values()) <= tol, errors

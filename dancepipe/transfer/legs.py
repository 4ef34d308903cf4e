"""Crossed legs: naming a figure's knees and ankles by their side of the hips.

A transfer label keeps the pose model's names for the legs. Seen side-on, a stride
draws the feet in the opposite order to the hips half of the time, and once the hips
have the target's width (:mod:`dancepipe.transfer.retarget`) the label would ask a
target filmed from the front to cross her legs: a stance the generator never saw.
"""

from __future__ import annotations

import numpy as np

from dancepipe.pose.keypoints import KP

_LEGS = ((KP["left_knee"], KP["right_knee"]), (KP["left_ankle"], KP["right_ankle"]))


def uncross_legs(kps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exchange the knees and ankles of the frames whose legs cross in the picture.

    A frame's legs cross when its ankles (its knees, where an ankle is missing) lie in
    the opposite order across the picture to its hips: the left foot on the right
    hip's side. Seen side-on, a stride draws that half of the time (the hips nearly
    coincide, and which one is in front is the pose model's guess), and once the hips
    have the target's width the label asks a target filmed from the front to cross
    her legs. The generator has never seen that and draws two legs apart; the pose
    model then names them by the side of the body they are on. Naming the legs by
    their side of the hips asks for the same feet in the same places, in a stance the
    target has shown. Frames missing a hip, or an ankle and a knee, are left alone.
    Returns the keypoints and the (N,) mask of frames changed.
    """
    kps = np.array(kps, dtype=np.float64, copy=True)
    hips = kps[:, KP["left_hip"], 0] - kps[:, KP["right_hip"], 0]
    (lk, rk), (la, ra) = _LEGS
    feet = kps[:, la, 0] - kps[:, ra, 0]
    knees = kps[:, lk, 0] - kps[:, rk, 0]
    legs = np.where(np.isfinite(feet), feet, knees)
    with np.errstate(invalid="ignore"):
        crossed = np.sign(legs) * np.sign(hips) < 0
    for a, b in _LEGS:
        kps[crossed, a], kps[crossed, b] = kps[crossed, b], kps[crossed, a].copy()
    return kps, crossed

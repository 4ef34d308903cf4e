"""The footage stage: what a target's video offers the generator, and one sentence of advice.

A per-person GAN can only draw what its target showed it. The first complaint about
every implementation of this method, "my results are blurry", nearly always comes from
footage that is too short or too uniform; this stage says so before anything is trained.
From the subject's keypoint table and video facts it measures (docs/footage.md gives the
rules and the study the thresholds come from):

* ``seconds`` and ``frames``: how long the footage is;
* ``person_frames``: frames showing the subject (at least ``min_joints`` keypoints, the
  labels' rule for a person);
* ``full_body_frames``: frames showing every body joint (shoulders, elbows, wrists,
  hips, knees, ankles) and some of the face; a part that is often cut off is drawn from
  few examples;
* ``body_px`` and ``fill``: the median height of the whole body in the video, in pixels
  and as a share of the picture's height; a body smaller than the training frames is
  upsampled, and detail it never had cannot be learnt;
* ``distinct_poses``: how varied the poses are, as the number of poses it takes to come
  within :data:`DISTINCT_RADIUS` of every posed frame (a greedy cover in frame order under
  the baseline's retrieval distance: hip-centred mean joint distance over body height,
  :mod:`dancepipe.output.baseline`). One movement repeated for a minute counts a handful;
  the demo dancer's minute of dancing counts dozens.

``advice`` is None when nothing is thin, else one sentence naming what is and what to film.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from dancepipe.atomic import atomic_write_text
from dancepipe.errors import DancepipeError
from dancepipe.output.baseline import retrieval_distances
from dancepipe.output.metrics import body_height, valid_points
from dancepipe.pose.keypoints import KP, read_keypoints

# Two poses closer than this (mean joint distance over body height) count as one: about the
# precision the demo generator reaches on poses it was trained on (docs/results.md).
DISTINCT_RADIUS = 0.05
# Measured in docs/footage.md: the 18-s repetitive study target (23 distinct poses) smears
# the demo dances; the demo dancer (63 s, 73 distinct poses) renders them within the goals.
MIN_DISTINCT_POSES = 50
MIN_SECONDS = 60.0
# A rule of thumb, not a measurement: below it a body part is cut off in every fifth frame.
MIN_FULL_BODY_SHARE = 0.8

BODY_JOINTS = tuple(KP[n] for n in (
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
))
FACE_JOINTS = tuple(KP[n] for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear"))


def distinct_poses(kps: np.ndarray, radius: float = DISTINCT_RADIUS) -> int:
    """Size of a greedy cover of the poses ``kps`` (N, 17, 3): each pose farther than ``radius``
    from every pose kept so far is kept. Poses without a body height are skipped."""
    kept: list[int] = []
    for i in range(len(kps)):
        if valid_points(kps[i]).sum() < 2:
            continue
        if kept:
            d, _ = retrieval_distances(kps[i:i + 1], kps[kept])
            if np.nanmin(d, initial=np.inf) <= radius:
                continue
        kept.append(i)
    return len(kept)


def full_body(kps: np.ndarray) -> np.ndarray:
    """(N,) bool: every body joint visible and at least one face point."""
    ok = valid_points(kps)
    return ok[:, list(BODY_JOINTS)].all(axis=1) & ok[:, list(FACE_JOINTS)].any(axis=1)


def footage_figures(kps: np.ndarray, fps: float, video_height: int, min_joints: int) -> dict[str, Any]:
    """The footage figures (module docstring) of one subject's keypoints (N, 17, 3), in video pixels."""
    if fps <= 0 or video_height <= 0:
        raise DancepipeError(f"footage: the video facts are unusable (fps {fps}, height {video_height})")
    person = valid_points(kps).sum(axis=1) >= min_joints
    whole = full_body(kps) & person
    heights = np.array([body_height(k) for k in kps[whole]], dtype=np.float64)
    body_px = float(np.median(heights)) if len(heights) else None
    return {
        "frames": int(len(kps)),
        "seconds": float(len(kps) / fps),
        "person_frames": int(person.sum()),
        "full_body_frames": int(whole.sum()),
        "full_body_share": float(whole.sum() / len(kps)) if len(kps) else 0.0,
        "body_px": body_px,
        "fill": None if body_px is None else body_px / video_height,
        "distinct_poses": distinct_poses(kps[person]),
    }


def advise(figures: dict[str, Any], train_height: int) -> str | None:
    """One sentence of advice when the footage is thin (None when it is not).

    Thin: shorter than :data:`MIN_SECONDS`, fewer than :data:`MIN_DISTINCT_POSES` distinct
    poses, the whole body in under :data:`MIN_FULL_BODY_SHARE` of the frames, or a body
    shorter in the video than the ``train_height`` it is trained at.
    """
    found: list[str] = []
    film: list[str] = []
    if figures["seconds"] < MIN_SECONDS or figures["distinct_poses"] < MIN_DISTINCT_POSES:
        found.append(f"{figures['seconds']:.0f} s of footage with {figures['distinct_poses']} distinct poses")
        film.append(f"at least {MIN_SECONDS / 60:.0f} minute{'s' if MIN_SECONDS > 60 else ''} of varied motion "
                    f"(at least {MIN_DISTINCT_POSES} distinct poses)")
    if figures["full_body_share"] < MIN_FULL_BODY_SHARE:
        found.append(f"the whole body in only {figures['full_body_share']:.0%} of the frames")
        film.append("the whole body, head to feet, in every frame")
    if figures["body_px"] is not None and figures["body_px"] < train_height:
        found.append(f"a body {figures['body_px']:.0f} px tall, smaller than the {train_height}-px training frames")
        film.append("closer or at a higher resolution")
    if figures["body_px"] is None:
        found.append("no frame with the whole body")
        film.append("the whole body, head to feet")
    if not found:
        return None
    whole = "" if any("whole body" in f for f in film) else ", the whole body in view"
    return f"{_join(found)}: film {_join(film)}{whole}, with a static camera."


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def run_footage(subject_dir: str | Path, out: str | Path, *, min_joints: int, train_height: int) -> dict[str, Any]:
    """Measure ``subject_dir`` (the subject stage's ``poses.parquet`` and ``meta.json``), write ``out``."""
    d = Path(subject_dir)
    meta_path = d / "meta.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        fps, height = float(meta["fps"]), int(meta["height"])
    except FileNotFoundError as e:
        raise DancepipeError(f"{meta_path}: the subject's video facts do not exist (run the subject stage)") from e
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise DancepipeError(f"{meta_path}: the subject's video facts lack fps or height; rerun the subject stage") from e
    figures = footage_figures(read_keypoints(d / "poses.parquet"), fps, height, min_joints)
    result = {**figures, "advice": advise(figures, train_height)}  # a DVC metrics file: figures, no format tag
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    return result

"""Limb retargeting: give the normalised source figure the target's bone lengths.

Global normalisation (:mod:`dancepipe.transfer.normalize`) only scales and shifts a source frame,
so a source with longer legs than the target still reaches the generator with long legs:
stick figures it never saw. Retargeting fixes the proportions bone by bone.

The skeleton is a tree rooted at the mid-hip (the mean of both hips). Two of its joints
are virtual: the *root* (mid-hip) and the *neck* (mid-shoulder); each exists in a frame
only where both of its hips (shoulders) are visible. Bones, left and right pooled::

    root ─ hip ─ thigh ─ shin          (hips, knees, ankles)
    root ─ spine ─ neck ─ shoulder ─ upper_arm ─ forearm
                   neck ─ head ─ eye ─ ear   (nose, eyes, ears)

Each bone's length is its median 2D length over its own video (the target's in its own
pixels, the source's after normalisation into the target's pixels); the bone's ratio is
target median / source median. Per frame the skeleton is walked outward from the root:
a visible joint whose parent is visible is placed at ``parent' + ratio * (joint - parent)``
(its direction, and so every joint angle, is kept); a visible joint whose parent is
missing moves with its nearest placed ancestor. Missing joints stay missing.

A 2D bone is a projection: it is never longer than the bone itself. A ratio applied to a
source bone that the source shows unusually long (a side-on walker turning her shoulders
towards the camera, times the shoulder ratio of 3.4 that her narrow side-on shoulders need)
would still draw a bone the target never shows and the generator never learnt. So each
retargeted bone is also capped at the target's own long end, the :data:`CAP_PERCENTILE`-th
percentile of its 2D lengths (``cap`` in :func:`bone_stats`): the bone as long as the target
ever shows it, robust to a few wrong detections.

The root stays where normalisation put it, so the hip trajectory keeps the source's
shape. Shorter or longer legs would then lift the feet off the target's floor or push
them through it, so the whole sequence is finally moved by one vertical offset (the
median over frames of how far the ankles moved): one constant, so the hip trajectory
and the angles stay the source's.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from dancepipe.errors import DancepipeError
from dancepipe.pose.keypoints import KP

log = logging.getLogger(__name__)

ROOT = 17  # virtual joint: mid-hip
NECK = 18  # virtual joint: mid-shoulder
N_EXT = 19

# child -> (parent, bone). Listed parents first, so one pass places every joint.
TREE: dict[int, tuple[int, str]] = {
    KP["left_hip"]: (ROOT, "hip"),
    KP["right_hip"]: (ROOT, "hip"),
    NECK: (ROOT, "spine"),
    KP["left_knee"]: (KP["left_hip"], "thigh"),
    KP["right_knee"]: (KP["right_hip"], "thigh"),
    KP["left_shoulder"]: (NECK, "shoulder"),
    KP["right_shoulder"]: (NECK, "shoulder"),
    KP["nose"]: (NECK, "head"),
    KP["left_ankle"]: (KP["left_knee"], "shin"),
    KP["right_ankle"]: (KP["right_knee"], "shin"),
    KP["left_elbow"]: (KP["left_shoulder"], "upper_arm"),
    KP["right_elbow"]: (KP["right_shoulder"], "upper_arm"),
    KP["left_eye"]: (KP["nose"], "eye"),
    KP["right_eye"]: (KP["nose"], "eye"),
    KP["left_wrist"]: (KP["left_elbow"], "forearm"),
    KP["right_wrist"]: (KP["right_elbow"], "forearm"),
    KP["left_ear"]: (KP["left_eye"], "ear"),
    KP["right_ear"]: (KP["right_eye"], "ear"),
}
BONES: tuple[str, ...] = tuple(dict.fromkeys(bone for _, bone in TREE.values()))
# The face's small bones. A target facing the camera often shows an ear (or an eye) in
# fewer than half of its frames: the pose model's confidence in it falls under kp_conf
# whenever hair or the angle hides it (49 of the first 100 frames of the demo dancer). Such
# a bone is not retargeted, the source keeps its own length for it; the body bones are needed.
OPTIONAL_BONES: tuple[str, ...] = ("eye", "ear")
ANKLES = (KP["left_ankle"], KP["right_ankle"])
# A retargeted bone is never longer than this percentile of the target's own 2D lengths.
CAP_PERCENTILE = 99.0


def _bone_joints(bone: str) -> str:
    """Human-readable endpoints of a bone, for messages (e.g. 'hip→knee')."""
    names = {ROOT: "mid-hip", NECK: "mid-shoulder"}
    child, parent = next((c, p) for c, (p, b) in TREE.items() if b == bone)

    def name(j: int) -> str:
        return names.get(j) or [k for k, v in KP.items() if v == j][0].removeprefix("left_").removeprefix("right_")

    return f"{name(parent)}→{name(child)}"


def extended_xy(kps: np.ndarray) -> np.ndarray:
    """(N, 17, ≥2) keypoints → (N, 19, 2) xy with the root and neck appended (NaN where missing)."""
    kps = np.asarray(kps, dtype=np.float64)
    xy = np.full((len(kps), N_EXT, 2), np.nan)
    xy[:, :17] = kps[:, :, :2]
    bad = ~np.all(np.isfinite(xy[:, :17]), axis=-1)
    xy[:, :17][bad] = np.nan
    xy[:, ROOT] = (xy[:, KP["left_hip"]] + xy[:, KP["right_hip"]]) / 2
    xy[:, NECK] = (xy[:, KP["left_shoulder"]] + xy[:, KP["right_shoulder"]]) / 2
    return xy


def bone_samples(kps: np.ndarray) -> dict[str, np.ndarray]:
    """Per bone, (N, sides) lengths in each frame, NaN where an endpoint is missing."""
    xy = extended_xy(kps)
    out: dict[str, list[np.ndarray]] = {b: [] for b in BONES}
    for child, (parent, bone) in TREE.items():
        out[bone].append(np.linalg.norm(xy[:, child] - xy[:, parent], axis=-1))
    return {b: np.stack(v, axis=1) for b, v in out.items()}


def bone_stats(kps: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per bone: ``median`` and ``cap`` length (sides pooled; None if never seen), ``frames`` that show it, ``joints``.

    ``cap`` is the :data:`CAP_PERCENTILE`-th percentile of the lengths: the longest the
    subject shows that bone, short of a few wrong detections.
    """
    stats: dict[str, dict[str, Any]] = {}
    for bone, lengths in bone_samples(kps).items():
        seen = np.isfinite(lengths)
        stats[bone] = {
            "median": float(np.median(lengths[seen])) if seen.any() else None,
            "cap": float(np.percentile(lengths[seen], CAP_PERCENTILE)) if seen.any() else None,
            "frames": int(seen.any(axis=1).sum()),
            "joints": _bone_joints(bone),
        }
    return stats


def person_frames(kps: np.ndarray) -> int:
    """Frames with at least one visible keypoint."""
    xy = np.asarray(kps, dtype=np.float64)[..., :2]
    return int(np.all(np.isfinite(xy), axis=-1).any(axis=1).sum())


def check_target_bones(target: dict[str, dict[str, Any]], frames: int, where: str) -> dict[str, dict[str, Any]]:
    """The target's bone statistics to retarget to, checked: each bone seen in at least half its frames with a person.

    A body bone seen less often refuses (one sentence naming it). An eye or ear bone
    (:data:`OPTIONAL_BONES`) seen less often is returned without a median, so that
    :func:`bone_ratios` leaves it at the source's length; a warning says so.
    """
    checked: dict[str, dict[str, Any]] = {}
    for bone in BONES:
        info = dict(target.get(bone, {}))
        seen = int(info.get("frames", 0))
        checked[bone] = info
        if info.get("median") is not None and 2 * seen >= frames:
            continue
        if bone in OPTIONAL_BONES:
            log.warning("retarget: the target shows its %s (%s) in only %d of %d frames with a person; "
                        "sources keep their own %s length", bone, _bone_joints(bone), seen, frames, bone)
            info["median"] = None
        else:
            raise DancepipeError(
                f"{where}: labels.transfer.retarget = bones needs the target's {bone} ({_bone_joints(bone)}) "
                f"in most frames, but it is seen in only {seen} of {frames} frames with a person; "
                "use retarget: none or film the target with that limb in view"
            )
    return checked


def bone_ratios(target: dict[str, dict[str, Any]], source_kps: np.ndarray) -> dict[str, float]:
    """target median / source median per bone; 1.0 where either never shows the bone (or the target's was left out)."""
    ratios = {}
    source = bone_stats(source_kps)
    for bone in BONES:
        t, s = target[bone]["median"], source[bone]["median"]
        ratios[bone] = float(t / s) if (t is not None and s is not None and s > 0) else 1.0
    return ratios


def bone_caps(target: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """The target's ``cap`` length per bone (None: no cap), as :func:`retarget` takes them.

    A bone left at the source's length (no target ``median``, see :func:`check_target_bones`)
    is not capped either: the target's few sightings of it say little about its length.
    """
    return {bone: (target[bone].get("cap") if target[bone].get("median") is not None else None) for bone in BONES}


def retarget(kps: np.ndarray, ratios: dict[str, float], caps: dict[str, float | None] | None = None) -> np.ndarray:
    """Scale each bone of (N, 17, 3) keypoints by ``ratios[bone]``, walking out from the mid-hip.

    With ``caps``, no scaled bone is longer than ``caps[bone]`` (target pixels; None or a
    missing key: no cap). Confidences and missing joints pass through unchanged; see the
    module docstring for the rule at a missing parent and for the one vertical offset
    applied at the end.
    """
    caps = caps or {}
    kps = np.asarray(kps, dtype=np.float64)
    old = extended_xy(kps)
    new = np.full_like(old, np.nan)
    disp = np.zeros_like(old)  # how far each joint (or its nearest placed ancestor) moved
    new[:, ROOT] = old[:, ROOT]
    for child, (parent, bone) in TREE.items():
        vis_c = np.isfinite(old[:, child, 0])
        vis_p = np.isfinite(new[:, parent, 0])
        bone_vec = old[:, child] - old[:, parent]
        scale = np.full(len(old), ratios[bone])
        cap = caps.get(bone)
        if cap is not None:
            length = np.linalg.norm(bone_vec, axis=-1)
            with np.errstate(divide="ignore", invalid="ignore"):
                scale = np.where(ratios[bone] * length > cap, cap / length, scale)
        chained = new[:, parent] + scale[:, None] * bone_vec
        carried = old[:, child] + disp[:, parent]
        new[:, child] = np.where((vis_c & vis_p)[:, None], chained, np.where(vis_c[:, None], carried, np.nan))
        disp[:, child] = np.where(vis_c[:, None], new[:, child] - old[:, child], disp[:, parent])
    out = kps.copy()
    out[..., :2] = np.where(np.isfinite(old[:, :17]), new[:, :17], kps[..., :2])
    moved = (new[:, list(ANKLES), 1] - old[:, list(ANKLES), 1]).ravel()
    moved = moved[np.isfinite(moved)]
    if len(moved):
        out[..., 1] -= float(np.median(moved))
    return out

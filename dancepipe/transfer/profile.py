"""The target's profile: what every dance transferred onto a target needs to know of her body.

Computed once per target (the ``profile`` stage, from her keypoint table) and read by
every ``labels_transfer`` pair of hers, so adding a dance never measures her again:

* ``bones``: each bone's length statistics in her pixels (:func:`dancepipe.transfer.retarget.bone_stats`)
  and her number of frames with a person; ``labels.transfer.retarget`` gives sources these lengths;
* ``facing``: how many of her frames face the camera, face away or are side-on
  (:func:`dancepipe.transfer.facing.facing_counts`); ``labels.transfer.facing`` reads it;
* ``head``: her face points placed on her torso (:func:`dancepipe.transfer.head.head_shape`,
  None when she never showed a whole face); ``labels.transfer.head`` reads it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from dancepipe.atomic import atomic_write_text
from dancepipe.errors import DancepipeError
from dancepipe.jsonfiles import read_json_file
from dancepipe.pose.keypoints import read_keypoints
from dancepipe.transfer.facing import facing_counts
from dancepipe.transfer.head import head_shape
from dancepipe.transfer.retarget import bone_stats, person_frames

FORMAT = "dancepipe.profile/1"


def build_profile(kps: np.ndarray) -> dict[str, Any]:
    """The profile of one subject's keypoints (N, 17, 3), as a plain JSON-ready dict."""
    return {
        "format": FORMAT,
        "bones": bone_stats(kps),
        "person_frames": person_frames(kps),
        "facing": facing_counts(kps),
        "head": head_shape(kps),
    }


def run_profile(poses: str | Path, out: str | Path) -> dict[str, Any]:
    """Write ``out`` (profile JSON) for the keypoint table ``poses``; returns the profile."""
    profile = build_profile(read_keypoints(poses))
    profile["poses"] = str(poses)
    atomic_write_text(out, json.dumps(profile, indent=2) + "\n")
    return profile


def read_profile(path: str | Path) -> dict[str, Any]:
    """A profile file, its format and fields checked, with a one-sentence error."""
    p = Path(path)
    data = read_json_file(p, "the target's profile", FORMAT, "profile")
    try:
        data["person_frames"] = int(data["person_frames"])
        if not isinstance(data["bones"], dict):
            raise TypeError("bones")
        data["facing"] = {k: int(v) for k, v in data["facing"].items()}
        if data["head"] is not None:
            _ = [float(v) for pt in data["head"]["points"] for v in pt]
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DancepipeError(f"{p}: the target's profile lacks or garbles {e}; rerun the profile stage") from e
    return data

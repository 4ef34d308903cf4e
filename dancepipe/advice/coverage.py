"""How much of a dance the target's footage covers, known before any frame is generated.

A dance asks the generator for poses, and the ones far from anything the target did
are extrapolation: no amount of training on the same footage teaches them, and they
come out smeared. The transfer labels stage measures it for every label with a person
(``coverage.json`` in the labels directory), so its warning comes before rendering and
the evaluation reads the same figures instead of measuring them again.

* **Repertoire.** The target's training labels, split in time as training splits them
  (:func:`dancepipe.model.split.split_point` with ``train.holdout_fraction``): the first
  part is what the generator learns from, the held-out tail is poses it never saw, from
  the same person and camera.
* **Nearest distance.** Each label's retrieval distance to its nearest training pose
  (the baseline's rule, :mod:`dancepipe.output.baseline`: hip-centred mean joint distance
  over the body height).
* **Covered** (``threshold``): within the :data:`COVERAGE_PERCENTILE`-th percentile of the
  held-out poses' own nearest distances, i.e. as well covered as the target's own unseen
  moves. The pose distance of covered frames is the generator's precision.
* **Far** (:data:`FAR_DISTANCE`, the same for every target): the nearest training pose is
  so far away that the generated frame typically misses the pose by more than the
  transfer goal (docs/footage.md has the measurement). A dance with more than
  :data:`FAR_SHARE` of its frames far, or with less than :data:`MIN_COVERED_SHARE`
  covered (a target whose footage repeats itself, so that even her own held-out moves are
  all within a hair of her training poses), gets a warning naming it, the share, and the body
  parts that are far in those frames (:data:`dancepipe.output.metrics.JOINT_GROUPS`, each
  part's joints' mean distance to the same nearest pose, over the body height, beyond
  :data:`FAR_DISTANCE` too).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from dancepipe.errors import DancepipeError
from dancepipe.jsonfiles import read_json_file
from dancepipe.model.split import split_point
from dancepipe.output.baseline import nearest_poses, pose_centres
from dancepipe.output.metrics import JOINT_GROUPS, body_height, valid_points
from dancepipe.pose.keypoints import columns_to_keypoints, read_index

FORMAT = "dancepipe.coverage/1"
FILE = "coverage.json"

# A pose is "covered" by the target's footage when its retrieval distance to the nearest
# training pose is at most this percentile of the held-out frames' own distances.
COVERAGE_PERCENTILE = 95.0
# Measured in docs/footage.md (two targets, the three demo dances): beyond this distance to the
# nearest training pose the rendered frames miss the pose by the 0.06 goal or more on average,
# and the demo dancer's dances have no more than 15 % of their frames there.
FAR_DISTANCE = 0.125
# A dance with more than this share of far frames is warned.
FAR_SHARE = 0.25
# A dance with fewer covered frames than this (as close to her footage as her own held-out
# moves came) is warned too: her footage repeats itself, and every dance blurs on it.
MIN_COVERED_SHARE = 0.05
# A body part is named in the warning when it is far in at least this share of the frames.
PART_SHARE = 0.10


@dataclasses.dataclass(frozen=True)
class Repertoire:
    """The poses a target was trained on, and how close to them its own unseen poses come.

    ``threshold`` is the :data:`COVERAGE_PERCENTILE`-th percentile of the held-out poses'
    distances to their nearest training pose.
    """

    poses: np.ndarray  # (C, 17, 3) training poses
    threshold: float

    def distances(self, queries: np.ndarray) -> np.ndarray:
        """(Q,) retrieval distance of each query pose to its nearest training pose (NaN: no match)."""
        return nearest_poses(queries, self.poses).distance


def build_repertoire(train_kps: np.ndarray, holdout_kps: np.ndarray) -> Repertoire | None:
    """A :class:`Repertoire` from the training poses and the held-out poses that calibrate its threshold.

    None when no held-out pose has a training pose to compare with (no held-out tail, or
    nobody in it): there is then nothing to calibrate the threshold on.
    """
    d = nearest_poses(holdout_kps, train_kps).distance
    d = d[np.isfinite(d)]
    if not len(d):
        return None
    return Repertoire(np.asarray(train_kps, dtype=np.float64), float(np.percentile(d, COVERAGE_PERCENTILE)))


def target_repertoire(train_labels: str | Path, holdout_fraction: float) -> Repertoire | None:
    """The target's repertoire from her training labels (``data/labels/<t>/train``), split as training splits them."""
    labels = read_index(train_labels, "target's training labels", check_files=False)
    kps = columns_to_keypoints(labels)
    n_train = split_point(len(labels), holdout_fraction)
    return build_repertoire(kps[:n_train], kps[n_train:])


def part_distances(queries: np.ndarray, matches: np.ndarray) -> dict[str, np.ndarray]:
    """Per body part, each query's mean joint distance to its matched pose over the query's body height.

    ``queries`` and ``matches`` are (Q, 17, 3), both centred as the retrieval rule centres
    them. NaN where the part shares no visible joint with its match.
    """
    q = np.asarray(queries, dtype=np.float64)
    m = np.asarray(matches, dtype=np.float64)
    d = np.linalg.norm((q[..., :2] - pose_centres(q)[:, None]) - (m[..., :2] - pose_centres(m)[:, None]), axis=-1)
    both = valid_points(q) & valid_points(m)
    heights = np.array([body_height(p) for p in q], dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    for part, joints in JOINT_GROUPS.items():
        j = list(joints)
        n = both[:, j].sum(axis=1)
        total = np.where(both[:, j], d[:, j], 0.0).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[part] = np.where(n > 0, total / n, np.nan) / heights
    return out


@dataclasses.dataclass
class Coverage:
    """One dance's coverage by the target's footage, per label row and in sum."""

    threshold: float
    nearest: np.ndarray                 # (N,) per label row: distance to the nearest training pose (NaN: no person)
    parts: dict[str, np.ndarray]        # part -> (N,) that part's distance to the same pose

    @property
    def person(self) -> np.ndarray:
        return np.isfinite(self.nearest)

    @property
    def covered(self) -> np.ndarray:
        return self.person & (self.nearest <= self.threshold)

    @property
    def far(self) -> np.ndarray:
        return self.person & (self.nearest > FAR_DISTANCE)

    def part_far_shares(self) -> dict[str, float]:
        """Per body part, the share of the frames that are far and where that part is far too."""
        n = max(int(self.person.sum()), 1)
        return {p: float((self.far & (np.nan_to_num(v, nan=0.0) > FAR_DISTANCE)).sum() / n)
                for p, v in self.parts.items()}

    def summary(self) -> dict[str, Any]:
        n = int(self.person.sum())
        return {
            "coverage_threshold": self.threshold,
            "coverage_frames": n,
            "covered_frames": int(self.covered.sum()),
            "far_frames": int(self.far.sum()),
            "far_share": float(self.far.sum() / n) if n else None,
            "far_parts": self.part_far_shares(),
        }

    def warning(self, dance: str, target: str) -> str | None:
        """One sentence when more than :data:`FAR_SHARE` of the dance is far from the target's footage,
        or less than :data:`MIN_COVERED_SHARE` of it is covered."""
        s = self.summary()
        if s["far_share"] is None:
            return None
        if s["far_share"] <= FAR_SHARE:
            covered = s["covered_frames"] / s["coverage_frames"]
            if covered >= MIN_COVERED_SHARE:
                return None
            return (f"only {covered:.0%} of {dance}'s frames ask for a pose as close to {target}'s footage as her own "
                    f"held-out moves came: her footage repeats itself, so all of {dance} will blur; film {target} "
                    "making more varied moves for a sharper result")
        parts = sorted(((v, p) for p, v in s["far_parts"].items() if v >= PART_SHARE), reverse=True)
        named = ", ".join(f"{p} in {v:.0%}" for v, p in parts)
        smear = f"{_join([p for _, p in parts])} will smear" if parts else "those frames will smear"
        return (f"{s['far_share']:.0%} of {dance}'s frames ask for poses further than {FAR_DISTANCE:g} of the body "
                f"height from any pose {target} made{f' ({named})' if named else ''}: {smear}; film {target} "
                "making these moves for a sharper result")

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **self.summary(),
                "far_distance": FAR_DISTANCE, "far_share_limit": FAR_SHARE,
                "nearest": _listed(self.nearest), "parts": {p: _listed(v) for p, v in self.parts.items()}}


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _listed(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else round(float(v), 6) for v in values]


def measure_coverage(label_kps: np.ndarray, repertoire: Repertoire) -> Coverage:
    """The coverage of the label poses ``label_kps`` (N, 17, 3; NaN rows: no person) by ``repertoire``."""
    match = nearest_poses(label_kps, repertoire.poses)
    found = match.index >= 0
    matches = np.full_like(np.asarray(label_kps, dtype=np.float64), np.nan)
    matches[found] = repertoire.poses[match.index[found]]
    parts = part_distances(label_kps, matches)
    return Coverage(repertoire.threshold, match.distance, parts)


def write_coverage(directory: str | Path, coverage: Coverage) -> None:
    (Path(directory) / FILE).write_text(json.dumps(coverage.to_dict(), indent=1) + "\n", encoding="utf-8")


def read_coverage(labels_dir: str | Path) -> Coverage | None:
    """The coverage the labels stage wrote into ``labels_dir`` (None when it measured none)."""
    path = Path(labels_dir) / FILE
    if not path.is_file():
        return None
    data = read_json_file(path, "the dance's coverage", FORMAT, "labels_transfer")
    try:
        nearest = np.array([np.nan if v is None else v for v in data["nearest"]], dtype=np.float64)
        parts = {p: np.array([np.nan if v is None else v for v in vs], dtype=np.float64)
                 for p, vs in data["parts"].items()}
        return Coverage(float(data["coverage_threshold"]), nearest, parts)
    except (KeyError, TypeError, ValueError) as e:
        raise DancepipeError(f"{path}: the dance's coverage lacks or garbles {e}; rerun the labels_transfer stage") from e

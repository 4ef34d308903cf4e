"""The paper's nearest-neighbour baseline: show the training frame whose pose is closest.

"Everybody Dance Now" compares its generator with a baseline that, for each pose to
be rendered, retrieves the training frame of the target with the most similar pose
and shows that real frame. A generator that does not beat it has learnt nothing a
lookup table could not do. The evaluate stage scores the retrieved frames with the
same code as the generated ones (:mod:`dancepipe.output.evaluate`).

Retrieval distance (the rule, as docs/render-evaluate.md states it): both poses are centred on
their hip midpoint — the mean of ``left_hip`` and ``right_hip`` when both are visible,
otherwise the mean of all of that pose's visible keypoints. The distance is the mean
Euclidean distance between the centred keypoints visible in both poses, divided by
the body height of the query pose (vertical extent of its visible keypoints,
:func:`dancepipe.output.metrics.body_height`). Candidates are ranked by this distance, except
that a candidate sharing fewer than ``required = min(MIN_SHARED_JOINTS, joints visible
in the query)`` joints with the query ranks after every candidate that shares at least
``required`` (among themselves, again by distance); a candidate sharing no joint is
never chosen. Ties go to the earliest candidate (the lowest training frame number, as
candidates are passed in frame order). A query with fewer than two visible keypoints
has no body height and gets no match.

Only centring, no scaling: the target is the same person at a similar distance from the
camera in training and held-out frames, so size differences are real pose differences
(crouching, stepping towards the camera). The subject's position in the picture is
ignored by the retrieval, so a retrieved frame where the person stands elsewhere is
penalised by the image metrics — as it should be, since that is what the baseline shows.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dancepipe.output.metrics import body_height, valid_points
from dancepipe.pose.keypoints import KP

MIN_SHARED_JOINTS = 8

# Bound on the (queries × candidates × 17) intermediate arrays of one chunk.
_CHUNK_ELEMENTS = 1 << 22

_HIPS = (KP["left_hip"], KP["right_hip"])


@dataclasses.dataclass(frozen=True)
class NearestPoses:
    """For each query pose: the chosen candidate and how it was chosen.

    ``index[q]`` is the candidate row (−1: no match), ``distance[q]`` its retrieval
    distance (NaN without a match) and ``shared[q]`` the joints visible in both (0
    without a match).
    """

    index: np.ndarray     # (Q,) int64
    distance: np.ndarray  # (Q,) float64
    shared: np.ndarray    # (Q,) int64


def pose_centres(kps: np.ndarray) -> np.ndarray:
    """(N, 17, 3) keypoints → (N, 2) centres: hip midpoint, else mean of the visible points.

    NaN for a pose without any visible keypoint.
    """
    k = np.asarray(kps, dtype=np.float64)
    ok = valid_points(k)  # (N, 17)
    xy = np.where(ok[..., None], k[..., :2], 0.0)
    count = ok.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        centres = xy.sum(axis=1) / count[:, None]
    hips = ok[:, _HIPS[0]] & ok[:, _HIPS[1]]
    centres[hips] = (k[hips, _HIPS[0], :2] + k[hips, _HIPS[1], :2]) / 2.0
    return centres


def retrieval_distances(queries: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All pairwise retrieval distances (see the module docstring) and shared-joint counts.

    ``queries`` (Q, 17, 3) and ``candidates`` (C, 17, 3) → distance (Q, C) float64 (NaN
    where no joint is shared or the query has no body height) and shared (Q, C) int64.
    Memory is bounded by working through the queries in chunks.
    """
    q = np.asarray(queries, dtype=np.float64)
    c = np.asarray(candidates, dtype=np.float64)
    q_ok, c_ok = valid_points(q), valid_points(c)  # (Q, 17), (C, 17)
    q_xy = q[..., :2] - pose_centres(q)[:, None, :]  # (Q, 17, 2)
    c_xy = c[..., :2] - pose_centres(c)[:, None, :]  # (C, 17, 2)
    heights = np.array([body_height(p) for p in q], dtype=np.float64)  # (Q,)
    n_q, n_c = len(q), len(c)
    distance = np.full((n_q, n_c), np.nan)
    shared = np.zeros((n_q, n_c), dtype=np.int64)
    step = max(1, _CHUNK_ELEMENTS // max(1, n_c * 17))
    for s in range(0, n_q, step):
        e = min(n_q, s + step)
        both = q_ok[s:e, None, :] & c_ok[None, :, :]  # (q, C, 17)
        d = np.linalg.norm(q_xy[s:e, None] - c_xy[None], axis=-1)  # (q, C, 17), NaN where a point is missing
        total = np.where(both, d, 0.0).sum(axis=-1)  # (q, C)
        n = both.sum(axis=-1)
        shared[s:e] = n
        with np.errstate(invalid="ignore", divide="ignore"):
            distance[s:e] = np.where(n > 0, total / n, np.nan) / heights[s:e, None]
    return distance, shared


def nearest_poses(queries: np.ndarray, candidates: np.ndarray,
                  min_shared: int = MIN_SHARED_JOINTS) -> NearestPoses:
    """The closest candidate pose for each query pose, by the rule in the module docstring."""
    q = np.asarray(queries, dtype=np.float64)
    n_q = len(q)
    if len(candidates) == 0:
        return NearestPoses(np.full(n_q, -1, np.int64), np.full(n_q, np.nan), np.zeros(n_q, np.int64))
    distance, shared = retrieval_distances(q, candidates)
    required = np.minimum(min_shared, valid_points(q).sum(axis=1))[:, None]  # (Q, 1)
    usable = np.isfinite(distance)
    # rank: (not enough shared joints, distance); argmin takes the first of equal values
    enough = np.where(usable & (shared >= required), distance, np.inf)
    fallback = np.where(usable, distance, np.inf)
    best = np.argmin(enough, axis=1)
    rows = np.arange(n_q)
    short = ~np.isfinite(enough[rows, best])
    best[short] = np.argmin(fallback[short], axis=1)
    found = np.isfinite(fallback[rows, best])
    index = np.where(found, best, -1).astype(np.int64)
    return NearestPoses(
        index=index,
        distance=np.where(found, distance[rows, best], np.nan),
        shared=np.where(found, shared[rows, best], 0).astype(np.int64),
    )

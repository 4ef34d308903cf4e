"""Nearest-neighbour retrieval on hand-built poses whose right answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dancepipe.output import baseline as B
from dancepipe.pose.keypoints import KP

# A standing figure in pixels relative to its hip midpoint (image y grows downwards):
# highest point the eyes at y = -63, lowest the ankles at y = 60, so body height 123.
STAND = np.array([
    (0, -60), (-3, -63), (3, -63), (-6, -62), (6, -62),
    (-15, -45), (15, -45), (-20, -25), (20, -25), (-22, -5), (22, -5),
    (-10, 0), (10, 0), (-10, 30), (10, 30), (-10, 60), (10, 60),
], dtype=np.float64)
HEIGHT = 123.0


def pose(xy: np.ndarray = STAND, at: tuple[float, float] = (0.0, 0.0), missing: tuple[str, ...] = ()) -> np.ndarray:
    """(17, 3) keypoints: ``xy`` moved to ``at``, confidence 0.9, the ``missing`` joints NaN."""
    k = np.zeros((17, 3))
    k[:, :2] = xy + np.asarray(at)
    k[:, 2] = 0.9
    for name in missing:
        k[KP[name]] = np.nan
    return k


def arms(lift: float) -> np.ndarray:
    """STAND with both arms raised: elbows up by ``lift`` / 2, wrists by ``lift`` px."""
    xy = STAND.copy()
    for name, dy in (("left_elbow", lift / 2), ("right_elbow", lift / 2), ("left_wrist", lift),
                     ("right_wrist", lift)):
        xy[KP[name], 1] -= dy
    return xy


def only(names: tuple[str, ...], xy: np.ndarray = STAND) -> np.ndarray:
    """A pose where just ``names`` are visible."""
    return pose(xy, missing=tuple(n for n in KP if n not in names))


SEVEN = ("left_hip", "right_hip", "left_shoulder", "right_shoulder", "left_knee", "right_knee", "nose")


def test_centre_is_the_hip_midpoint_or_the_mean_of_the_visible_points():
    k = pose(at=(100, 200))
    k[KP["left_hip"], :2] = (80, 190)  # hips at (80, 190) and (110, 200)
    one_hip = np.full((17, 3), np.nan)
    one_hip[KP["left_hip"]] = (10, 20, 1)
    one_hip[KP["nose"]] = (16, 2, 1)
    one_hip[KP["left_ankle"]] = (13, 50, 1)
    centres = B.pose_centres(np.stack([k, one_hip, np.full((17, 3), np.nan)]))
    np.testing.assert_allclose(centres[0], (95, 195))
    np.testing.assert_allclose(centres[1], (13, 24))  # (10+16+13)/3, (20+2+50)/3
    assert np.isnan(centres[2]).all()


def test_the_same_pose_elsewhere_in_the_picture_is_found_at_distance_zero():
    candidates = np.stack([pose(arms(30), at=(50, 100)), pose(at=(200, 90)), pose(arms(60), at=(120, 100))])
    m = B.nearest_poses(pose(at=(130, 140))[None], candidates)
    assert m.index.tolist() == [1] and m.shared.tolist() == [17]
    assert m.distance[0] == pytest.approx(0.0, abs=1e-12)


def test_distance_is_the_mean_joint_offset_over_shared_joints_divided_by_the_query_height():
    moved = STAND.copy()
    moved[KP["right_wrist"]] += (6, 8)  # 10 px; hips unchanged, so the centre stays
    d, shared = B.retrieval_distances(pose()[None], np.stack([pose(moved), pose(moved, missing=("nose",))]))
    assert shared.tolist() == [[17, 16]]
    np.testing.assert_allclose(d[0], [10 / 17 / HEIGHT, 10 / 16 / HEIGHT])
    # the query's height divides, not the candidate's: a candidate twice the size is far away
    big = pose(STAND * 2)
    expected = np.linalg.norm(STAND, axis=1).mean() / HEIGHT  # every joint is off by its own offset from the hips
    assert B.retrieval_distances(pose()[None], big[None])[0][0, 0] == pytest.approx(expected)


def test_a_candidate_sharing_too_few_joints_ranks_after_every_one_sharing_enough():
    off = arms(20)  # every arm joint off: distance > 0, all 17 joints shared
    exact_but_partial = only(SEVEN)  # matches exactly on 7 joints
    m = B.nearest_poses(pose()[None], np.stack([exact_but_partial, pose(off)]))
    assert m.index.tolist() == [1] and m.shared.tolist() == [17] and m.distance[0] > 0
    # with an 8th joint it shares enough and wins on distance
    m = B.nearest_poses(pose()[None], np.stack([only((*SEVEN, "left_ankle")), pose(off)]))
    assert m.index.tolist() == [0] and m.shared.tolist() == [8] and m.distance[0] == pytest.approx(0.0, abs=1e-12)
    # the threshold is a parameter
    assert B.nearest_poses(pose()[None], np.stack([exact_but_partial, pose(off)]), min_shared=7).index.tolist() == [0]


def test_a_query_with_few_joints_needs_candidates_covering_all_of_them():
    five = ("left_hip", "right_hip", "nose", "left_wrist", "right_wrist")
    query = only(five)
    slightly_off = arms(5)  # wrists 5 px, all five joints shared
    four_exact = pose(missing=("right_wrist",))  # exact on the 4 it shares
    m = B.nearest_poses(query[None], np.stack([four_exact, pose(slightly_off)]))
    assert m.index.tolist() == [1] and m.shared.tolist() == [5]
    # two wrists 5 px off over 5 shared joints; the query's height is nose (y = -60) to hips (y = 0)
    assert m.distance[0] == pytest.approx((5 + 5) / 5 / 60.0)


def test_when_no_candidate_shares_enough_the_closest_of_the_rest_is_taken():
    names = ("left_hip", "right_hip", "left_shoulder", "right_shoulder", "left_wrist", "right_wrist")
    candidates = np.stack([only(names, arms(40)), only(names, arms(10)), only(names, arms(25))])
    m = B.nearest_poses(pose()[None], candidates)
    assert m.index.tolist() == [1] and m.shared.tolist() == [6]


def test_empty_poses_are_never_matched_and_ties_go_to_the_earliest_candidate():
    empty = np.full((17, 3), np.nan)
    m = B.nearest_poses(np.stack([pose(), empty]), np.stack([empty, pose(at=(5, 0)), pose(at=(9, 3))]))
    assert m.index.tolist() == [1, -1]
    assert m.shared.tolist() == [17, 0] and math.isnan(m.distance[1])
    m = B.nearest_poses(pose()[None], np.stack([empty, empty]))
    assert m.index.tolist() == [-1] and math.isnan(m.distance[0])
    assert B.nearest_poses(pose()[None], np.empty((0, 17, 3))).index.tolist() == [-1]


def _reference_distance(q: np.ndarray, c: np.ndarray) -> tuple[float, int]:
    """The README's rule written out pair by pair, independent of the module's vectorised code."""
    def centre(k: np.ndarray) -> np.ndarray:
        ok = ~np.isnan(k[:, :2]).any(axis=1)
        lh, rh = KP["left_hip"], KP["right_hip"]
        if ok[lh] and ok[rh]:
            return (k[lh, :2] + k[rh, :2]) / 2
        return k[ok, :2].mean(axis=0)

    q_ok = ~np.isnan(q[:, :2]).any(axis=1)
    c_ok = ~np.isnan(c[:, :2]).any(axis=1)
    both = q_ok & c_ok
    if q_ok.sum() < 2 or not both.any():
        return math.nan, int(both.sum())
    height = max(q[q_ok, 1].max() - q[q_ok, 1].min(), 1.0)
    qc, cc = centre(q), centre(c)
    dists = [math.dist(q[j, :2] - qc, c[j, :2] - cc) for j in range(17) if both[j]]
    return sum(dists) / len(dists) / height, int(both.sum())


def _random_poses(rng: np.random.Generator, n: int) -> np.ndarray:
    k = np.zeros((n, 17, 3))
    k[..., :2] = STAND + rng.normal(0, 8, (n, 17, 2)) + rng.uniform(-50, 50, (n, 1, 2))
    k[..., 2] = 0.9
    k[rng.random((n, 17)) < rng.uniform(0, 0.7, (n, 1))] = np.nan
    return k


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_vectorised_distances_and_choice_match_a_pair_by_pair_reference(seed):
    rng = np.random.default_rng(seed)
    queries, candidates = _random_poses(rng, 6), _random_poses(rng, 9)
    d, shared = B.retrieval_distances(queries, candidates)
    m = B.nearest_poses(queries, candidates)
    for i, q in enumerate(queries):
        ref = [_reference_distance(q, c) for c in candidates]
        np.testing.assert_allclose(d[i], [r[0] for r in ref], rtol=1e-9, equal_nan=True)
        assert shared[i].tolist() == [r[1] for r in ref]
        required = min(B.MIN_SHARED_JOINTS, int((~np.isnan(q[:, :2]).any(axis=1)).sum()))
        ranked = sorted((r[1] < required, r[0], j) for j, r in enumerate(ref) if not math.isnan(r[0]))
        assert m.index[i] == (ranked[0][2] if ranked else -1)


def test_chunked_computation_gives_the_same_distances(monkeypatch):
    rng = np.random.default_rng(7)
    queries, candidates = _random_poses(rng, 23), _random_poses(rng, 11)
    whole = B.retrieval_distances(queries, candidates)
    monkeypatch.setattr(B, "_CHUNK_ELEMENTS", 11 * 17 * 3)  # 3 queries per chunk
    chunked = B.retrieval_distances(queries, candidates)
    np.testing.assert_array_equal(whole[1], chunked[1])
    np.testing.assert_allclose(whole[0], chunked[0], equal_nan=True)

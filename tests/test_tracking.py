"""Main-person selection on synthetic detections: bystanders, crossings, misses."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dancepipe.pose.tracks import Detections, box_iou, link_tracks, select_subject


def det(boxes: list[list[float]], scores: list[float] | None = None) -> Detections:
    """Detections for one frame; keypoints carry the box index so tests can tell people apart."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    s = np.asarray(scores if scores is not None else [0.9] * len(b), dtype=np.float32)
    kps = np.zeros((len(b), 17, 3), np.float32)
    return Detections(b, s, kps)


def subject_box(t: int) -> list[float]:
    """A large person drifting right and growing slowly (walking towards the camera)."""
    x = 300.0 + 4.0 * t
    return [x, 200.0, x + 300.0 + t, 1100.0 + t]


BYSTANDER = [20.0, 300.0, 140.0, 700.0]  # small, static, in the background


def test_box_iou_known_values():
    a = np.array([[0, 0, 10, 10]], float)
    assert box_iou(a, a)[0, 0] == pytest.approx(1.0)
    assert box_iou(a, np.array([[20, 20, 30, 30]], float))[0, 0] == 0.0
    assert box_iou(a, np.array([[5, 0, 15, 10]], float))[0, 0] == pytest.approx(50 / 150)
    assert box_iou(a, np.zeros((0, 4))).shape == (1, 0)


@given(st.lists(st.floats(0, 500), min_size=8, max_size=8))
def test_box_iou_symmetric_and_bounded(v):
    a = np.array([[min(v[0], v[2]), min(v[1], v[3]), max(v[0], v[2]), max(v[1], v[3])]])
    b = np.array([[min(v[4], v[6]), min(v[5], v[7]), max(v[4], v[6]), max(v[5], v[7])]])
    ab, ba = box_iou(a, b)[0, 0], box_iou(b, a)[0, 0]
    assert ab == pytest.approx(ba)
    assert 0.0 <= ab <= 1.0 + 1e-12


def test_detections_reject_inconsistent_shapes():
    with pytest.raises(ValueError, match="inconsistent"):
        Detections(np.zeros((2, 4)), np.zeros(3), np.zeros((2, 17, 3)))


def test_bystander_in_every_frame_never_becomes_subject_even_when_subject_missed():
    frames = []
    missed = {10, 11, 12}
    for t in range(30):
        boxes = [BYSTANDER] if t in missed else [BYSTANDER, subject_box(t)]
        frames.append(det(boxes))
    chosen = select_subject(frames, iou_threshold=0.2, max_gap=5)
    for t in range(30):
        if t in missed:
            assert chosen[t] == -1
        else:
            assert chosen[t] == 1
            np.testing.assert_allclose(frames[t].boxes[chosen[t]], subject_box(t))


def test_long_miss_is_stitched_back_when_the_subject_reappears_in_place():
    frames = [det([BYSTANDER] if 10 <= t < 40 else [subject_box(0), BYSTANDER]) for t in range(60)]
    chosen = select_subject(frames, iou_threshold=0.2, max_gap=3)
    assert (chosen[:10] == 0).all() and (chosen[40:] == 0).all()
    assert (chosen[10:40] == -1).all()


def test_crossing_people_keep_identity():
    """Two equal-sized people walk through each other; the higher-scoring one is the subject."""
    frames = []
    for t in range(41):
        a = [100.0 + 10 * t, 200.0, 300.0 + 10 * t, 800.0]  # left → right
        b = [500.0 - 10 * t, 210.0, 700.0 - 10 * t, 810.0]  # right → left
        order = [a, b] if t % 2 else [b, a]  # detector output order is arbitrary
        scores = [0.95, 0.6] if t % 2 else [0.6, 0.95]
        frames.append(det(order, scores))
    chosen = select_subject(frames, iou_threshold=0.2, max_gap=2)
    assert (chosen >= 0).all()
    x0 = np.array([frames[t].boxes[chosen[t], 0] for t in range(41)])
    np.testing.assert_allclose(x0, 100.0 + 10 * np.arange(41))


def test_passer_by_with_larger_box_but_few_frames_loses():
    frames = []
    for t in range(50):
        boxes = [subject_box(t)]
        if 20 <= t < 25:
            boxes.append([900.0, 0.0, 1080.0, 1900.0])  # someone close to the camera, briefly
        frames.append(det(boxes))
    chosen = select_subject(frames)
    assert (chosen == 0).all()


def test_no_detections_anywhere():
    frames = [Detections.empty() for _ in range(5)]
    assert (select_subject(frames) == -1).all()
    assert link_tracks(frames, 0.2, 3) == []


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(5, 60),
    missed=st.sets(st.integers(0, 59), max_size=20),
    seed=st.integers(0, 2**31 - 1),
)
def test_property_subject_followed_bystander_never_chosen(n, missed, seed):
    """Random misses and random per-frame detection order: the subject is chosen exactly
    where it was detected, and nothing is chosen elsewhere."""
    rng = np.random.default_rng(seed)
    missed = {t for t in missed if t < n}
    if len(missed) == n:
        missed.discard(0)
    frames, truth = [], []
    for t in range(n):
        people = [("bystander", BYSTANDER)] + ([] if t in missed else [("subject", subject_box(t))])
        rng.shuffle(people)
        frames.append(det([b for _, b in people]))
        truth.append(next((i for i, (who, _) in enumerate(people) if who == "subject"), -1))
    chosen = select_subject(frames, iou_threshold=0.2, max_gap=5)
    assert chosen.shape == (n,)
    np.testing.assert_array_equal(chosen, truth)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 30), people=st.integers(0, 4), seed=st.integers(0, 2**31 - 1))
def test_property_output_indices_valid(n, people, seed):
    """Whatever the detections, each output is -1 or a valid index into that frame."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        k = int(rng.integers(0, people + 1))
        xy = rng.uniform(0, 500, size=(k, 2))
        wh = rng.uniform(1, 300, size=(k, 2))
        frames.append(det(np.concatenate([xy, xy + wh], axis=1).tolist(), rng.uniform(0.3, 1, k).tolist()))
    chosen = select_subject(frames)
    for t, c in enumerate(chosen):
        assert c == -1 or 0 <= c < len(frames[t])
        if len(frames[t]) == 0:
            assert c == -1
    # a track is one person: every frame appears at most once per track
    for tr in link_tracks(frames, 0.2, 15):
        assert len(set(tr.frames)) == len(tr.frames) and tr.frames == sorted(tr.frames)


# --------------------------------------------------------------------------- choosing the subject


def _two_people(n: int = 40) -> list[Detections]:
    """A big person seen in frames 0-19 only, a small one seen in all 40 (both at fixed places)."""
    big, small = [600.0, 100.0, 1000.0, 1000.0], [100.0, 300.0, 200.0, 500.0]
    return [det([big, small] if t < 20 else [small]) for t in range(n)]


def test_largest_and_longest_pick_by_box_size_and_by_frames_seen():
    frames = _two_people()
    big_frames = np.array([t < 20 for t in range(40)])
    largest = select_subject(frames, rule="largest")
    assert (largest[big_frames] == 0).all() and (largest[~big_frames] == -1).all()
    longest = select_subject(frames, rule="longest")
    np.testing.assert_array_equal(longest, np.where(big_frames, 1, 0))  # the small one, wherever it is listed
    # auto weighs area x score x frames: 20 frames of 360,000 px beat 40 of 20,000
    np.testing.assert_array_equal(select_subject(frames), largest)


def test_a_point_picks_the_person_standing_there():
    frames = _two_people()
    chosen = select_subject(frames, point=(150.0, 400.0))  # inside the small person's box
    np.testing.assert_array_equal(chosen, np.where(np.arange(40) < 20, 1, 0))
    chosen = select_subject(frames, point=(800.0, 500.0))  # the big person
    assert (chosen[:20] == 0).all() and (chosen[20:] == -1).all()
    with pytest.raises(ValueError, match=r"no detected person covers the point \(10, 10\) px in the first 30"):
        select_subject(frames, point=(10.0, 10.0))
    # a point covered by someone only after the first frames it may look at is on nobody
    late = [det([]) for _ in range(35)] + [det([[0.0, 0.0, 50.0, 50.0]])]
    with pytest.raises(ValueError, match="first 30 frames"):
        select_subject(late, point=(10.0, 10.0))


def test_an_overlapping_point_prefers_the_smaller_box():
    """Someone standing in front of a larger person: the point means the one it is on, the smaller."""
    frames = [det([[0.0, 0.0, 1000.0, 1000.0], [400.0, 400.0, 500.0, 600.0]]) for _ in range(10)]
    assert (select_subject(frames, point=(450.0, 500.0)) == 1).all()


def test_an_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="unknown subject rule 'tallest'"):
        select_subject(_two_people(), rule="tallest")

"""Facing from keypoints and labels.transfer.facing: sides swapped by the pose model are put back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dancepipe.pose.keypoints import COCO_NAMES, FACE_POINTS, KP, columns_to_keypoints, read_table
from dancepipe.transfer.facing import (
    MIRROR,
    dominant_facing,
    facing_counts,
    facing_score,
    match_facing,
    mirror_sides,
)
from dancepipe.transfer.labels import LabelsConfig, TransferLabelsConfig, run_labels
from dancepipe.transfer.legs import uncross_legs
from dancepipe.transfer.normalize import NormfitConfig, run_normfit
from dancepipe.transfer.profile import read_profile, run_profile
from tests.fixtures.labels import write_frames_dir, write_pose_table
from tests.test_retarget import LENGTHS, articulated

WIDTH = 1080


def _front(kps: np.ndarray) -> np.ndarray:
    """The picture mirrored: ``articulated`` puts the left side on the picture's left (a back view)."""
    out = kps.copy()
    out[..., 0] = WIDTH - out[..., 0]
    return out


def _swap_by_name(kps: np.ndarray) -> np.ndarray:
    """Left and right keypoints exchanged, written out by name (independent of MIRROR)."""
    out = kps.copy()
    for name in COCO_NAMES:
        if name.startswith("left_"):
            a, b = KP[name], KP["right_" + name[5:]]
            out[..., [a, b], :] = kps[..., [b, a], :]
    return out


def test_score_is_the_signed_shoulder_and_hip_width_over_the_height():
    back = articulated(5, LENGTHS)
    front = _front(back)
    k = front[2]
    width = ((k[KP["left_shoulder"], 0] - k[KP["right_shoulder"], 0]) + (k[KP["left_hip"], 0] - k[KP["right_hip"], 0])) / 2
    height = k[:, 1].max() - k[:, 1].min()
    assert facing_score(front)[2] == pytest.approx(width / height)
    assert (facing_score(front) > 0.05).all() and (facing_score(back) < -0.05).all()
    side = front.copy()
    for a, b in (("left_shoulder", "right_shoulder"), ("left_hip", "right_hip")):
        side[:, [KP[a], KP[b]], 0] = side[:, [KP[a], KP[b]], 0].mean(axis=1, keepdims=True)
    assert np.abs(facing_score(side)).max() < 1e-9
    hidden = front.copy()
    hidden[1, [KP["left_shoulder"], KP["left_hip"]], :2] = np.nan  # no pair visible in frame 1
    hidden[3, KP["left_hip"], :2] = np.nan  # frame 3: shoulders alone
    s = facing_score(hidden)
    k3 = front[3]
    assert np.isnan(s[1])
    assert s[3] == pytest.approx((k3[KP["left_shoulder"], 0] - k3[KP["right_shoulder"], 0])
                                 / (k3[:, 1].max() - k3[:, 1].min()))
    assert facing_counts(np.concatenate([front, back[:2], side[:1], hidden[1:2]])) == {"front": 5, "back": 2,
                                                                                      "side": 1}


def test_mirror_exchanges_every_left_keypoint_with_its_right_twin():
    assert MIRROR[KP["nose"]] == KP["nose"]
    assert all(COCO_NAMES[MIRROR[i]] == n.replace("left_", "right_") for i, n in enumerate(COCO_NAMES)
               if n.startswith("left_"))
    kps = articulated(6, LENGTHS)
    mask = np.array([False, True, True, False, False, True])
    out = mirror_sides(kps, mask)
    np.testing.assert_array_equal(out[mask], _swap_by_name(kps[mask]))
    np.testing.assert_array_equal(out[~mask], kps[~mask])
    np.testing.assert_array_equal(mirror_sides(out, mask), kps)


@pytest.mark.parametrize(("front", "back", "want"), [
    (90, 10, "front"), (89, 11, None), (5, 95, "back"), (0, 0, None), (3, 0, "front"),
])
def test_a_subject_faces_one_way_only_when_nine_in_ten_clear_frames_do(front, back, want):
    assert dominant_facing({"front": front, "back": back, "side": 40}) == want


def test_only_frames_facing_the_other_way_are_mirrored():
    front = _front(articulated(12, LENGTHS))
    kps = front.copy()
    kps[4:8] = _swap_by_name(front[4:8])
    got, mirrored = match_facing(kps, "front")
    np.testing.assert_array_equal(np.flatnonzero(mirrored), [4, 5, 6, 7])
    np.testing.assert_array_equal(got, front)
    got, mirrored = match_facing(kps, None)
    assert not mirrored.any()
    np.testing.assert_array_equal(got, kps)
    got, mirrored = match_facing(kps, "back")
    assert mirrored.sum() == 8


def _labels(tmp_path: Path, name: str, target: np.ndarray, source: np.ndarray, facing: str = "target",
            **transfer: str) -> tuple[np.ndarray, dict]:
    d = tmp_path / name
    d.mkdir()
    t = write_pose_table(d / "t.parquet", target, WIDTH, 1920)
    s = write_pose_table(d / "s.parquet", source, 1280, 720)
    frames = write_frames_dir(d / "frames", target, WIDTH, 1920)
    run_normfit(t, s, d / "stats.json", None, NormfitConfig())
    run_profile(t, d / "profile.json")
    cfg = LabelsConfig(transfer=TransferLabelsConfig(facing=facing, **transfer))
    run_labels("transfer", s, frames, d / "labels", cfg, norm=d / "stats.json", profile=d / "profile.json")
    df, meta = read_table(d / "labels" / "index.parquet")
    return columns_to_keypoints(df), meta


def test_transfer_labels_undo_a_run_of_swapped_sides(tmp_path):
    """A source facing the camera whose sides the pose model swapped in frames 20-29 (before smoothing)."""
    target = _front(articulated(60, LENGTHS))
    clean = _front(articulated(60, LENGTHS, size=300.0, seed=1))
    swapped = clean.copy()
    swapped[20:30] = _swap_by_name(clean[20:30])
    want, meta = _labels(tmp_path, "clean", target, clean, "target")
    assert meta["target_facing"] == "front" and meta["mirrored_frames"] == 0
    got, meta = _labels(tmp_path, "fixed", target, swapped, "target")
    assert meta["mirrored_frames"] == 10 and meta["transfer"]["facing"] == "target"
    np.testing.assert_allclose(got, want, atol=1e-3)
    raw, meta = _labels(tmp_path, "raw", target, swapped, "source")
    assert "mirrored_frames" not in meta
    assert (facing_score(raw[22:28]) < 0).all()  # as posed: the figure's colours say "seen from the back"


def test_a_target_seen_both_ways_mirrors_nothing(tmp_path):
    front = _front(articulated(60, LENGTHS))
    target = front.copy()
    target[30:] = _swap_by_name(front[30:])  # turns round halfway
    source = articulated(60, LENGTHS, size=300.0, seed=1)  # back to the camera throughout
    _, meta = _labels(tmp_path, "mixed", target, source, "target")
    assert meta["target_facing"] is None and meta["mirrored_frames"] == 0
    assert read_profile(tmp_path / "mixed" / "profile.json")["facing"] == {"front": 30, "back": 30, "side": 0}


def test_a_side_on_source_turned_round_by_retargeting_is_mirrored_body_only(tmp_path):
    """A source filmed side-on (shoulders and hips a sliver wide), turned slightly away in frames 20-29: too
    little to read before retargeting, clearly the back view once the bones have the target's widths."""
    target = _front(articulated(60, LENGTHS))
    source = _front(articulated(60, LENGTHS, size=300.0, seed=1))
    away = np.where((np.arange(60) >= 20) & (np.arange(60) < 30), -2.0, 2.0)
    for a, b in (("left_shoulder", "right_shoulder"), ("left_hip", "right_hip")):
        ia, ib = KP[a], KP[b]
        mid = source[:, [ia, ib], 0].mean(axis=1)
        source[:, ia, 0], source[:, ib, 0] = mid + away, mid - away
    assert (np.abs(facing_score(source)) < 0.05).all()  # side-on as posed
    got, meta = _labels(tmp_path, "target", target, source, "target", head="source", smoothing="none", legs="source")
    raw, _ = _labels(tmp_path, "source", target, source, "source", head="source", smoothing="none", legs="source")
    assert (facing_score(raw[20:30]) < -0.05).all()  # retargeted without the late check: a back view
    assert meta["mirrored_frames"] == 10
    assert (facing_score(got) > 0).all()
    np.testing.assert_array_equal(got[:20], raw[:20])
    body = [i for i in range(17) if i not in FACE_POINTS]
    np.testing.assert_allclose(got[20:30][:, body], mirror_sides(raw[20:30], np.ones(10, bool))[:, body])
    np.testing.assert_array_equal(got[20:30][:, list(FACE_POINTS)], raw[20:30][:, list(FACE_POINTS)])


def _legs(hips: tuple[float, float], knees: tuple[float, float], ankles: tuple[float, float]) -> np.ndarray:
    """One (17, 3) pose with only its legs: (left, right) x of the hips (y 100), knees (y 150), ankles (y 200)."""
    k = np.full((17, 3), np.nan)
    for pair, xs, y in ((("left_hip", "right_hip"), hips, 100), (("left_knee", "right_knee"), knees, 150),
                        (("left_ankle", "right_ankle"), ankles, 200)):
        for name, x in zip(pair, xs, strict=True):
            k[KP[name]] = [x, y, 0.8 if name.startswith("left") else 0.7]
    return k


def test_crossed_legs_are_named_by_their_side_of_the_hips():
    apart = _legs((110, 90), (115, 85), (120, 80))  # seen from the front: left leg on the picture's right
    crossed = _legs((110, 90), (95, 105), (80, 120))  # the left foot on the right hip's side
    back_view = _legs((90, 110), (85, 115), (80, 120))  # sides the other way round, but not crossed
    knees_only = _legs((110, 90), (95, 105), (np.nan, 120))  # an ankle lost: the knees decide
    no_hip = _legs((np.nan, 90), (95, 105), (80, 120))
    together = _legs((110, 90), (100, 100), (100, 100))
    kps = np.stack([apart, crossed, back_view, knees_only, no_hip, together])
    got, changed = uncross_legs(kps)
    assert changed.tolist() == [False, True, False, True, False, False]
    np.testing.assert_array_equal(got[~changed], kps[~changed])
    for i in (1, 3):
        for joint in ("knee", "ankle"):
            np.testing.assert_array_equal(got[i, KP["left_" + joint]], kps[i, KP["right_" + joint]])
            np.testing.assert_array_equal(got[i, KP["right_" + joint]], kps[i, KP["left_" + joint]])
        hips = [KP["left_hip"], KP["right_hip"]]
        np.testing.assert_array_equal(got[i, hips], kps[i, hips])
    assert got[1, KP["left_ankle"], 0] > got[1, KP["right_ankle"], 0]  # now on the left hip's side


def test_transfer_labels_uncross_a_side_on_stride(tmp_path):
    """A frontal source whose legs cross in frames 20-29 (a stride seen side-on): named by side unless legs: source."""
    target = _front(articulated(60, LENGTHS))
    source = _front(articulated(60, LENGTHS, size=300.0, seed=1))
    for j in ("knee", "ankle"):  # the legs swing across: each foot ends on the other hip's side
        a, b = KP["left_" + j], KP["right_" + j]
        source[20:30, [a, b], 0] = source[20:30, [b, a], 0]

    got, meta = _labels(tmp_path, "uncross", target, source, legs="uncross", smoothing="none", retarget="none")
    raw, raw_meta = _labels(tmp_path, "source", target, source, legs="source", smoothing="none", retarget="none")
    assert meta["uncrossed_frames"] == 10 and "uncrossed_frames" not in raw_meta

    def order(k: np.ndarray, a: str, b: str) -> np.ndarray:
        return np.sign(k[:, KP[a], 0] - k[:, KP[b], 0])

    hips = order(raw, "left_hip", "right_hip")
    assert (order(raw, "left_ankle", "right_ankle")[20:30] == -hips[20:30]).all()  # as posed: crossed
    assert (order(got, "left_ankle", "right_ankle") == hips).all()
    np.testing.assert_array_equal(got[:20], raw[:20])
    np.testing.assert_array_equal(got[:, :13], raw[:, :13])  # face, arms and hips untouched

"""labels.transfer.head: a source frame whose head the pose model lost gets the target's, on its own torso."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dancepipe.errors import DancepipeError
from dancepipe.pose.keypoints import KP, columns_to_keypoints, read_table
from dancepipe.transfer.head import FACE, complete_heads, head_shape, lost_heads, turned_heads
from dancepipe.transfer.labels import LabelsConfig, TransferLabelsConfig, run_labels
from dancepipe.transfer.normalize import NormfitConfig, run_normfit
from dancepipe.transfer.profile import read_profile, run_profile
from tests.fixtures.labels import write_frames_dir, write_pose_table
from tests.test_facing import WIDTH, _front
from tests.test_retarget import LENGTHS, articulated

# Face points of an upright figure, in spine lengths: (up from the mid-shoulder, to the picture's right).
HEAD = {"nose": (0.4, 0.0), "left_eye": (0.45, 0.06), "right_eye": (0.45, -0.06),
        "left_ear": (0.42, 0.15), "right_ear": (0.42, -0.15)}


def _torso(mid_hip: tuple[float, float], up: tuple[float, float], spine: float, conf: float = 0.9) -> np.ndarray:
    """One (17, 3) pose: hips, shoulders and the HEAD face, written out with ``up`` as the spine direction."""
    k = np.full((17, 3), np.nan)
    u = np.asarray(up, float) / np.linalg.norm(up)
    r = np.array([-u[1], u[0]])  # the picture's right of an upright figure (y grows downwards)
    hip, shoulder = np.asarray(mid_hip, float), np.asarray(mid_hip, float) + spine * u
    for name, side in (("left_hip", 1), ("right_hip", -1)):
        k[KP[name]] = [*(hip + side * 0.1 * spine * r), conf]
    for name, side in (("left_shoulder", 1), ("right_shoulder", -1)):
        k[KP[name]] = [*(shoulder + side * 0.2 * spine * r), conf]
    for name, (a, b) in HEAD.items():
        k[KP[name]] = [*(shoulder + spine * (a * u + b * r)), conf]
    return k


def test_head_shape_is_the_median_face_in_spine_lengths():
    upright = _torso((500, 900), (0, -1), 300)
    leaning = _torso((200, 400), (1, -1), 120)  # tilted 45 degrees and smaller: same shape
    noisy = upright.copy()
    noisy[KP["nose"], 1] -= 60  # one odd frame does not move the median
    faceless = upright.copy()
    faceless[KP["left_ear"], :2] = np.nan  # not a whole face: not measured
    shape = head_shape(np.stack([upright, leaning, upright, noisy, faceless]))
    assert shape is not None and shape["frames"] == 4
    np.testing.assert_allclose(shape["points"], [HEAD[n] for n in
                                                 ("nose", "left_eye", "right_eye", "left_ear", "right_ear")], atol=1e-4)
    assert head_shape(faceless[None]) is None


def test_lost_heads_are_few_face_points_or_a_nose_at_the_neck():
    shape = head_shape(_torso((500, 900), (0, -1), 300)[None])
    good = _torso((500, 900), (0, -1), 300)
    side_on = good.copy()
    side_on[[KP["right_eye"], KP["right_ear"]], :2] = np.nan  # three points: kept
    two = good.copy()
    two[[KP["left_eye"], KP["right_eye"], KP["left_ear"]], :2] = np.nan
    neck = good.copy()
    neck[KP["nose"], 1] = good[KP["left_shoulder"], 1] - 0.1 * 300  # rises 0.1 spine, the target 0.4
    bowed = good.copy()
    bowed[KP["nose"], 1] = good[KP["left_shoulder"], 1] - 0.25 * 300  # 0.25 of 0.4 rises enough
    no_nose = good.copy()
    no_nose[KP["nose"], :2] = np.nan
    headless_no_torso = two.copy()
    headless_no_torso[KP["left_hip"], :2] = np.nan  # nowhere to put a head
    kps = np.stack([good, side_on, two, neck, bowed, no_nose, headless_no_torso])
    assert lost_heads(kps, shape).tolist() == [False, False, True, True, False, True, False]


def _eyes(k: np.ndarray, left: float, right: float, spine: float = 300.0) -> np.ndarray:
    """``k`` (an upright _torso) with its eyes moved to these across-spine offsets, in spine lengths."""
    out = k.copy()
    mid = k[[KP["left_shoulder"], KP["right_shoulder"]], 0].mean()
    out[KP["left_eye"], 0], out[KP["right_eye"], 0] = mid + left * spine, mid + right * spine
    return out


def test_turned_heads_are_faces_not_seen_the_way_the_target_was():
    shape = head_shape(_torso((500, 900), (0, -1), 300)[None])  # eyes 0.12 spine apart, left eye on the right
    good = _torso((500, 900), (0, -1), 300)
    one_eye = good.copy()
    one_eye[[KP["right_eye"], KP["right_ear"]], :2] = np.nan  # a profile: not lost, but turned
    close = _eyes(good, 0.02, -0.02)  # 0.04 apart: a third of the target's
    glancing = _eyes(good, 0.04, -0.035)  # 0.075 apart: over half of it
    backwards = _eyes(good, -0.06, 0.06)  # the eyes in the back view's order
    leaning = _torso((500, 900), (1, -1), 300)  # frontal, leaning 45 degrees: spacing is across the spine
    no_torso = one_eye.copy()
    no_torso[KP["left_hip"], :2] = np.nan
    kps = np.stack([good, one_eye, close, glancing, backwards, leaning, no_torso])
    assert turned_heads(kps, shape).tolist() == [False, True, True, False, True, False, False]
    # a target whose eyes were never seen the front way round: no source face counts as turned
    back_target = head_shape(_eyes(good, -0.06, 0.06)[None])
    assert not turned_heads(kps, back_target).any()


def test_turned_heads_get_the_targets_only_when_asked():
    shape = head_shape(_torso((500, 900), (0, -1), 300)[None])
    turned = _eyes(_torso((500, 900), (0, -1), 300), 0.01, -0.01)
    got, changed = complete_heads(turned[None], shape, turned=True)
    assert changed.tolist() == [True]
    assert got[0, KP["left_eye"], 0] - got[0, KP["right_eye"], 0] == pytest.approx(0.12 * 300)
    np.testing.assert_array_equal(got[0, 5:], turned[5:])
    same, changed = complete_heads(turned[None], shape)
    assert changed.tolist() == [False]
    np.testing.assert_array_equal(same[0], turned)


def test_a_lost_head_is_the_targets_on_the_sources_torso():
    shape = head_shape(_torso((500, 900), (0, -1), 300)[None])
    lost = _torso((100, 600), (-1, 0), 50, conf=0.8)  # lying down, spine pointing to the picture's left
    lost[KP["right_shoulder"], 2] = 0.6
    lost[list(FACE), :2] = np.nan
    lost[KP["nose"], :2] = [75.0, 600.0]  # a nose at the neck
    kept = _torso((300, 700), (0, -1), 100)
    kept[KP["nose"], 0] += 5.0  # the source's own nose, a little off: left alone
    got, changed = complete_heads(np.stack([lost, kept]), shape)
    assert changed.tolist() == [True, False]
    # mid-shoulder (50, 600); up = (-1, 0), across = (0, -1): nose 0.4 spine further left
    assert got[0, KP["nose"], :2] == pytest.approx([50 - 0.4 * 50, 600])
    assert got[0, KP["left_eye"], :2] == pytest.approx([50 - 0.45 * 50, 600 - 0.06 * 50])
    assert got[0, KP["right_ear"], :2] == pytest.approx([50 - 0.42 * 50, 600 + 0.15 * 50])
    assert got[0, list(FACE), 2] == pytest.approx([0.6] * 5)  # the weaker shoulder's confidence
    np.testing.assert_array_equal(got[1], kept)
    np.testing.assert_array_equal(got[0, 5:], lost[5:])  # the body is not touched


def _labels(tmp_path: Path, name: str, source: np.ndarray, head: str) -> tuple[np.ndarray, dict]:
    d = tmp_path / name
    d.mkdir()
    target = _front(articulated(60, LENGTHS))
    t = write_pose_table(d / "t.parquet", target, WIDTH, 1920)
    s = write_pose_table(d / "s.parquet", source, 1280, 720)
    frames = write_frames_dir(d / "frames", target, WIDTH, 1920)
    run_normfit(t, s, d / "stats.json", None, NormfitConfig())
    run_profile(t, d / "profile.json")
    cfg = LabelsConfig(transfer=TransferLabelsConfig(head=head, smoothing="none", gap_max=0, retarget="none"))
    run_labels("transfer", s, frames, d / "labels", cfg, norm=d / "stats.json", profile=d / "profile.json")
    df, meta = read_table(d / "labels" / "index.parquet")
    return columns_to_keypoints(df), meta


def _rise(kps: np.ndarray) -> np.ndarray:
    """How far the nose is above the mid-shoulder, in spine lengths, per frame (upright figures)."""
    shoulder = kps[:, [KP["left_shoulder"], KP["right_shoulder"]], :2].mean(axis=1)
    hip = kps[:, [KP["left_hip"], KP["right_hip"]], :2].mean(axis=1)
    return (shoulder[:, 1] - kps[:, KP["nose"], 1]) / np.linalg.norm(shoulder - hip, axis=1)


def test_transfer_labels_give_a_blurred_source_the_targets_head(tmp_path):
    """A source whose face the pose model read in frames 0-29 only, a lone nose at the neck after."""
    source = _front(articulated(60, LENGTHS, size=300.0, seed=1))
    blurred = source.copy()
    blurred[30:, list(FACE)[1:], :2] = np.nan
    blurred[30:, KP["nose"], :2] = source[30:, [KP["left_shoulder"], KP["right_shoulder"]], :2].mean(axis=1)
    got, meta = _labels(tmp_path, "fixed", blurred, "target")
    assert meta["headed_frames"] == 30 and meta["transfer"]["head"] == "target"
    raw, meta = _labels(tmp_path, "raw", blurred, "source")
    assert meta["headed_frames"] == 0
    assert np.isnan(raw[30:, KP["left_eye"], 0]).all() and np.abs(_rise(raw[30:])).max() < 1e-6
    np.testing.assert_array_equal(got[:30], raw[:30])  # faces the pose model read are kept
    np.testing.assert_array_equal(got[30:, 5:], raw[30:, 5:])  # and bodies untouched
    assert np.isfinite(got[30:, list(FACE), :2]).all()
    # the placed nose rises above the shoulders as the target's does (the target is
    # upright and its head swings a little: within a tenth of a spine of its median)
    target = _front(articulated(60, LENGTHS))
    assert np.abs(_rise(got[30:]) - np.median(_rise(target))).max() < 0.1
    assert read_profile(tmp_path / "fixed" / "profile.json")["head"]["frames"] == 60


def test_transfer_labels_give_a_side_on_face_the_targets_head(tmp_path):
    """A source whose face turns side-on (one eye and one ear left) from frame 30: a head the model read, turned."""
    source = _front(articulated(60, LENGTHS, size=300.0, seed=1))
    profile = source.copy()
    profile[30:, [KP["right_eye"], KP["right_ear"]], :2] = np.nan
    got, meta = _labels(tmp_path, "target", profile, "target")
    assert meta["headed_frames"] == 30
    assert np.isfinite(got[30:, list(FACE), :2]).all()
    lost_only, meta = _labels(tmp_path, "lost", profile, "lost")
    assert meta["headed_frames"] == 0
    assert np.isnan(lost_only[30:, KP["right_eye"], 0]).all()
    np.testing.assert_array_equal(got[:30], lost_only[:30])
    np.testing.assert_array_equal(got[:, 5:], lost_only[:, 5:])


def test_a_turned_face_still_counts_toward_a_person(tmp_path):
    """Frames 30-59 show six body joints and a profile face: nine joints of the source's own, a person."""
    source = _front(articulated(60, LENGTHS, size=300.0, seed=1))
    gone = [KP[n] for n in ("left_wrist", "right_wrist", "left_knee", "right_knee", "left_ankle", "right_ankle",
                            "right_eye", "right_ear")]
    source[30:, gone, :2] = np.nan
    for head in ("target", "lost"):
        got, meta = _labels(tmp_path, head, source, head)
        df, _ = read_table(tmp_path / head / "labels" / "index.parquet")
        assert df["person_found"].all(), head
        assert meta["headed_frames"] == (30 if head == "target" else 0)
    assert np.isfinite(got[30:, KP["nose"], 0]).all()


def test_a_profile_without_the_head_says_rerun_the_profile_stage(tmp_path):
    _labels(tmp_path, "old", _front(articulated(60, LENGTHS, size=300.0, seed=1)), "target")
    profile = tmp_path / "old" / "profile.json"
    data = json.loads(profile.read_text())
    del data["head"]
    profile.write_text(json.dumps(data))
    with pytest.raises(DancepipeError, match=r"profile.json: the target's profile lacks or garbles 'head'; rerun the profile stage"):
        read_profile(profile)

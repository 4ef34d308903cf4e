"""Limb retargeting (labels.transfer.retarget): bone lengths, angles, missing joints, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dancepipe.errors import DancepipeError
from dancepipe.pose.keypoints import KP, columns_to_keypoints, read_table
from dancepipe.pose.smoothing import interpolate_gaps, smooth
from dancepipe.transfer.chain import TargetSpace, transfer_keypoints
from dancepipe.transfer.labels import (
    LabelsConfig,
    TransferLabelsConfig,
    _load_poses,
    run_labels,
)
from dancepipe.transfer.normalize import (
    NormfitConfig,
    ankle_positions,
    apply_mapping,
    hip_x,
    load_mapping,
    run_normfit,
)
from dancepipe.transfer.profile import read_profile, run_profile
from dancepipe.transfer.retarget import BONES, CAP_PERCENTILE, TREE, bone_caps, bone_stats, retarget
from tests.fixtures.labels import write_frames_dir, write_pose_table

# Bone lengths of a standing figure 1.0 tall (hips to ankles 0.5), and each child's
# direction at rest (image coordinates: x right, y down).
LENGTHS = {"hip": 0.08, "spine": 0.32, "thigh": 0.25, "shin": 0.25, "shoulder": 0.12, "head": 0.17,
           "upper_arm": 0.2, "forearm": 0.18, "eye": 0.03, "ear": 0.03}
REST = {
    "left_hip": (-1, 0), "right_hip": (1, 0), "neck": (0, -1), "left_knee": (0, 1), "right_knee": (0, 1),
    "left_shoulder": (-1, 0), "right_shoulder": (1, 0), "nose": (0, -1), "left_ankle": (0, 1),
    "right_ankle": (0, 1), "left_elbow": (-0.3, 1), "right_elbow": (0.3, 1), "left_eye": (-1, -1),
    "right_eye": (1, -1), "left_wrist": (-0.2, 1), "right_wrist": (0.2, 1), "left_ear": (-1, 0.2),
    "right_ear": (1, 0.2),
}
SWING = {"left_knee": 0.35, "right_knee": -0.35, "left_ankle": 0.25, "right_ankle": -0.3,
         "left_elbow": -0.5, "right_elbow": 0.5, "left_wrist": 0.6, "right_wrist": -0.4}


def articulated(n: int, lengths: dict[str, float], size: float = 600.0, seed: int = 0) -> np.ndarray:
    """(n, 17, 3) poses of a figure swinging its limbs while walking in depth.

    Built joint by joint from the mid-hip with the given bone lengths (times a per-frame
    perspective size), independently of the code under test.
    """
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 4 * np.pi, n)
    depth = 1.0 + 0.3 * np.sin(t / 2)  # closer = bigger and lower in the picture
    root = np.stack([500 + 60 * np.sin(t), 900 + 250 * (depth - 1) + size * 0.5 * depth], axis=1)
    pos: dict[str, np.ndarray] = {"root": root}
    parent = {"left_hip": "root", "right_hip": "root", "neck": "root", "left_knee": "left_hip",
              "right_knee": "right_hip", "left_shoulder": "neck", "right_shoulder": "neck", "nose": "neck",
              "left_ankle": "left_knee", "right_ankle": "right_knee", "left_elbow": "left_shoulder",
              "right_elbow": "right_shoulder", "left_eye": "nose", "right_eye": "nose", "left_wrist": "left_elbow",
              "right_wrist": "right_elbow", "left_ear": "left_eye", "right_ear": "right_eye"}
    bone = {"left_hip": "hip", "right_hip": "hip", "neck": "spine", "left_knee": "thigh", "right_knee": "thigh",
            "left_shoulder": "shoulder", "right_shoulder": "shoulder", "nose": "head", "left_ankle": "shin",
            "right_ankle": "shin", "left_elbow": "upper_arm", "right_elbow": "upper_arm", "left_eye": "eye",
            "right_eye": "eye", "left_wrist": "forearm", "right_wrist": "forearm", "left_ear": "ear",
            "right_ear": "ear"}
    for j, p in parent.items():  # dict order: parents before children
        d = np.array(REST[j], float)
        a = SWING.get(j, 0.05) * np.sin(t + rng.uniform(0, 2 * np.pi))
        c, s = np.cos(a), np.sin(a)
        dirs = np.stack([c * d[0] - s * d[1], s * d[0] + c * d[1]], axis=1)
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        pos[j] = pos[p] + dirs * (lengths[bone[j]] * size * depth)[:, None]
    kps = np.zeros((n, 17, 3))
    for name, i in KP.items():
        kps[:, i, :2] = pos[name]
    kps[..., 2] = 0.9
    return kps


def _lengths(kps: np.ndarray, a: str, b: str) -> np.ndarray:
    return np.linalg.norm(kps[:, KP[a], :2] - kps[:, KP[b], :2], axis=-1)


def _leg_lengths(kps: np.ndarray) -> dict[str, float]:
    return {
        "thigh": float(np.median(np.r_[_lengths(kps, "left_hip", "left_knee"), _lengths(kps, "right_hip", "right_knee")])),
        "shin": float(np.median(np.r_[_lengths(kps, "left_knee", "left_ankle"),
                                      _lengths(kps, "right_knee", "right_ankle")])),
    }


@pytest.fixture
def stretched(tmp_path: Path) -> dict[str, Path]:
    """Target 60 frames; source = the target's motion with thighs and shins 20 % longer."""
    return _pair(tmp_path, articulated(60, LENGTHS),
                 articulated(60, {**LENGTHS, "thigh": 0.3, "shin": 0.3}, size=300.0, seed=0))


def _pair(tmp_path: Path, target: np.ndarray, source: np.ndarray) -> dict[str, Path]:
    """Pose tables of both, the target's frames directory and the fitted normfit stats."""
    paths = {
        "target": write_pose_table(tmp_path / "t.parquet", target, 1080, 1920),
        "source": write_pose_table(tmp_path / "s.parquet", source, 1280, 720),
        "frames": write_frames_dir(tmp_path / "frames", target, 1080, 1920),
    }
    run_normfit(paths["target"], paths["source"], tmp_path / "stats.json", None, NormfitConfig())
    run_profile(paths["target"], tmp_path / "profile.json")
    paths["norm"] = tmp_path / "stats.json"
    paths["profile"] = tmp_path / "profile.json"
    return paths


def test_a_source_with_longer_legs_gets_the_targets_leg_lengths(stretched):
    target = columns_to_keypoints(read_table(stretched["target"])[0])
    want = _leg_lengths(target)
    _, src = _load_poses(stretched["source"])
    bones = read_profile(stretched["profile"])["bones"]
    mapping = load_mapping(stretched["norm"])
    plain, rec = transfer_keypoints(src, TransferLabelsConfig(smoothing="none", retarget="none"), TargetSpace(mapping))
    fitted, fit_rec = transfer_keypoints(src, TransferLabelsConfig(smoothing="none", retarget="bones"),
                                         TargetSpace(mapping, bones=bones))
    none_ratios, ratios = rec.bone_ratios, fit_rec.bone_ratios
    assert none_ratios is None and ratios["thigh"] < 0.97 and ratios["shin"] < 0.97
    got_plain, got = _leg_lengths(plain), _leg_lengths(fitted)
    for b in ("thigh", "shin"):
        assert abs(got_plain[b] / want[b] - 1) > 0.05  # global normalisation alone leaves them wrong
        assert got[b] == pytest.approx(want[b], rel=0.02)
    # the upper body had the target's proportions already: it keeps them
    for a, b in (("left_shoulder", "left_elbow"), ("right_elbow", "right_wrist")):
        assert np.median(_lengths(fitted, a, b)) == pytest.approx(np.median(_lengths(target, a, b)), rel=0.02)


def test_the_profile_records_the_targets_bone_lengths(stretched):
    """The profile stage measures each bone over the whole target video, left and right pooled."""
    target = columns_to_keypoints(read_table(stretched["target"])[0])
    profile = json.loads(stretched["profile"].read_text())
    bones = {"target": profile["bones"]}
    assert set(bones["target"]) == set(BONES) and profile["person_frames"] == 60
    assert bones["target"]["thigh"]["frames"] == 60 and bones["target"]["thigh"]["joints"] == "hip→knee"
    assert bones["target"]["thigh"]["median"] == pytest.approx(_leg_lengths(target)["thigh"], rel=1e-6)
    spine = np.linalg.norm((target[:, 5, :2] + target[:, 6, :2]) / 2 - (target[:, 11, :2] + target[:, 12, :2]) / 2,
                           axis=-1)
    assert bones["target"]["spine"]["median"] == pytest.approx(float(np.median(spine)), rel=1e-6)


RATIOS = {"hip": 1.5, "spine": 0.8, "thigh": 0.7, "shin": 1.3, "shoulder": 1.1, "head": 0.9,
          "upper_arm": 1.25, "forearm": 0.6, "eye": 1.0, "ear": 2.0}


def _ext(kps: np.ndarray) -> np.ndarray:
    """Joints plus mid-hip (17) and mid-shoulder (18), computed here from their definition."""
    xy = kps[..., :2]
    return np.concatenate([xy, (xy[:, [11]] + xy[:, [12]]) / 2, (xy[:, [5]] + xy[:, [6]]) / 2], axis=1)


def test_every_bone_is_scaled_by_its_ratio_and_keeps_its_angle():
    kps = articulated(30, LENGTHS, seed=4)
    out = retarget(kps, RATIOS)
    before, after = _ext(kps), _ext(out)
    for child, (parent, bone) in TREE.items():
        v0, v1 = before[:, child] - before[:, parent], after[:, child] - after[:, parent]
        np.testing.assert_allclose(np.linalg.norm(v1, axis=1), RATIOS[bone] * np.linalg.norm(v0, axis=1),
                                   rtol=1e-9, err_msg=bone)
        np.testing.assert_allclose(np.arctan2(v1[:, 1], v1[:, 0]), np.arctan2(v0[:, 1], v0[:, 0]), atol=1e-9)
    np.testing.assert_array_equal(out[..., 2], kps[..., 2])
    # the mid-hip moves by one constant vertical offset only; the median ankle stays on its floor
    shift = after[:, 17] - before[:, 17]
    np.testing.assert_allclose(shift[:, 0], 0, atol=1e-9)
    np.testing.assert_allclose(shift[:, 1], shift[0, 1], atol=1e-9)
    assert np.median(out[:, [15, 16], 1] - kps[:, [15, 16], 1]) == pytest.approx(0, abs=1e-9)


def test_a_bone_longer_than_its_cap_is_shortened_to_it_along_its_direction():
    """A capped bone keeps its angle; bones under their cap (and uncapped bones) are only scaled."""
    kps = articulated(30, LENGTHS, seed=4)
    before = _ext(kps)
    shoulder = np.linalg.norm(before[:, KP["left_shoulder"]] - before[:, 18], axis=1)
    cap = float(np.median(shoulder)) * RATIOS["shoulder"]  # about half the frames go over it
    caps = {"shoulder": cap, "shin": 1e6, "thigh": None}
    after = _ext(retarget(kps, RATIOS, caps))
    for side in ("left_shoulder", "right_shoulder"):
        v0, v1 = before[:, KP[side]] - before[:, 18], after[:, KP[side]] - after[:, 18]
        want = np.minimum(RATIOS["shoulder"] * np.linalg.norm(v0, axis=1), cap)
        np.testing.assert_allclose(np.linalg.norm(v1, axis=1), want, rtol=1e-9)
        np.testing.assert_allclose(np.arctan2(v1[:, 1], v1[:, 0]), np.arctan2(v0[:, 1], v0[:, 0]), atol=1e-9)
    assert (RATIOS["shoulder"] * shoulder > cap * 1.01).sum() >= 5  # the cap did bite in several frames
    uncapped = _ext(retarget(kps, RATIOS))
    for child, (parent, bone) in TREE.items():
        if bone == "shoulder":
            continue
        np.testing.assert_allclose(np.linalg.norm(after[:, child] - after[:, parent], axis=1),
                                   np.linalg.norm(uncapped[:, child] - uncapped[:, parent], axis=1), rtol=1e-9,
                                   err_msg=bone)


def test_the_cap_is_the_targets_long_end_of_each_bone():
    """bone_stats' cap is the CAP_PERCENTILE-th percentile of the pooled lengths; an unused bone gets none."""
    kps = articulated(200, LENGTHS, seed=1)
    thigh = np.r_[_lengths(kps, "left_hip", "left_knee"), _lengths(kps, "right_hip", "right_knee")]
    stats = bone_stats(kps)
    assert 99 >= CAP_PERCENTILE >= 90
    rank = np.sort(thigh)
    assert stats["thigh"]["cap"] == pytest.approx(np.quantile(thigh, CAP_PERCENTILE / 100), rel=1e-9)
    assert rank[len(rank) // 2] < stats["thigh"]["cap"] <= rank[-1]
    stats["ear"]["median"] = None  # as check_target_bones leaves a bone the target seldom shows
    caps = bone_caps(stats)
    assert caps["ear"] is None and caps["thigh"] == stats["thigh"]["cap"]


def test_a_side_on_source_is_never_drawn_wider_than_the_target(tmp_path):
    """A target facing the camera and a side-on source that sometimes turns: its shoulders and hips,
    widened by their large ratios, stay within the target's own widths."""
    target = articulated(60, LENGTHS)
    narrow = {**LENGTHS, "hip": 0.02, "shoulder": 0.03}
    source = articulated(60, narrow, size=300.0, seed=3)
    turn = np.arange(60) % 10 == 0  # every tenth frame she turns to the camera: full widths
    source[turn] = articulated(60, LENGTHS, size=300.0, seed=3)[turn]
    paths = _pair(tmp_path, target, source)
    _, src = _load_poses(paths["source"])
    bones = read_profile(paths["profile"])["bones"]
    got, rec = transfer_keypoints(src, TransferLabelsConfig(smoothing="none", retarget="bones"),
                                  TargetSpace(load_mapping(paths["norm"]), bones=bones))
    ratios = rec.bone_ratios
    assert ratios["shoulder"] > 2.5 and ratios["hip"] > 2.5
    longest_target = max(_lengths(target, "left_hip", "right_hip").max(), 1e-9)
    width = _lengths(got, "left_hip", "right_hip")
    assert width[turn].max() <= 2 * bones["hip"]["cap"] * (1 + 1e-9)  # each side capped: at most twice the cap
    assert width[turn].max() <= longest_target * 1.05
    assert _lengths(got, "left_shoulder", "right_shoulder")[turn].max() <= 2 * bones["shoulder"]["cap"] * (1 + 1e-9)


def test_unit_ratios_change_nothing():
    kps = articulated(10, LENGTHS, seed=2)
    np.testing.assert_allclose(retarget(kps, dict.fromkeys(BONES, 1.0)), kps, atol=1e-9)


def test_missing_joints_stay_missing_and_orphans_move_with_their_ancestor():
    kps = articulated(40, LENGTHS, seed=5)
    rng = np.random.default_rng(0)
    kps[rng.random((40, 17)) < 0.2, :2] = np.nan
    kps[3, KP["left_knee"], :2] = np.nan  # ankle without its knee
    kps[3, KP["left_hip"], :2], kps[3, KP["right_hip"], :2] = (380.0, 800.0), (420.0, 800.0)  # hips visible
    kps[3, KP["left_ankle"], :2] = (420.0, 1000.0)
    out = retarget(kps, RATIOS)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(kps))
    np.testing.assert_array_equal(out[..., 2], kps[..., 2])
    # the orphaned ankle moves exactly as its nearest placed ancestor (the left hip) did
    assert abs(out[3, KP["left_hip"], 0] - 380.0) > 5  # (which did move: the hip bone is 1.5x)
    np.testing.assert_allclose(out[3, KP["left_ankle"], :2] - kps[3, KP["left_ankle"], :2],
                               out[3, KP["left_hip"], :2] - kps[3, KP["left_hip"], :2], atol=1e-9)


def test_retarget_none_is_the_normalised_pose_as_before(stretched):
    """`none` is exactly gap filling → smoothing → the normfit mapping, untouched (legs left as named)."""
    _, src = _load_poses(stretched["source"])
    cfg = TransferLabelsConfig(retarget="none", legs="source")
    mapping = load_mapping(stretched["norm"])
    got, rec = transfer_keypoints(src, cfg, TargetSpace(mapping))
    ratios = rec.bone_ratios
    k = smooth(interpolate_gaps(src, cfg.gap_max), cfg.smoothing, cfg.window, cfg.polyorder)
    ay = ankle_positions(k)[1]
    np.testing.assert_array_equal(got, apply_mapping(k, mapping, ankle_y=ay, body_x=hip_x(k)))
    assert ratios is None


def _with_knees_mostly_missing(tmp_path: Path) -> dict[str, Path]:
    target = articulated(40, LENGTHS)
    target[:28, [KP["left_knee"], KP["right_knee"]], :2] = np.nan  # knees seen in 12 of 40 frames
    return _pair(tmp_path, target, articulated(40, LENGTHS, size=300.0, seed=1))


def test_a_target_without_knees_cannot_be_retargeted(tmp_path, repo_root):
    p = _with_knees_mostly_missing(tmp_path)
    cfg = LabelsConfig(transfer=TransferLabelsConfig(retarget="bones"))
    out = tmp_path / "labels"
    with pytest.raises(DancepipeError, match=r"target's thigh \(hip→knee\) in most frames, but it is seen in only "
                                             r"12 of 40 frames"):
        run_labels("transfer", p["source"], p["frames"], out, cfg, norm=p["norm"], profile=p["profile"])
    assert not out.exists()
    none = LabelsConfig(transfer=TransferLabelsConfig(retarget="none"))
    run_labels("transfer", p["source"], p["frames"], out, none, norm=p["norm"], profile=p["profile"])  # none: fine
    # the stage: one sentence, exit 1
    from stages.labels import main

    params = tmp_path / "params.yaml"
    assert "retarget: bones" in (repo_root / "params.yaml").read_text()  # the shipped default
    params.write_text((repo_root / "params.yaml").read_text())
    res = CliRunner().invoke(main, ["--kind", "transfer", "--poses", str(p["source"]), "--target-poses", str(p["target"]),
                                    "--frames", str(p["frames"]), "--norm", str(tmp_path / "norm2.json"),
                                    "--profile", str(p["profile"]), "--out", str(tmp_path / "o2"), "--params", str(params)])
    assert res.exit_code == 1 and "thigh (hip→knee)" in res.output and res.output.count("\n") == 1, res.output
    # the normfit it ran first is removed with the rest: a failed stage leaves no output
    assert not (tmp_path / "o2").exists() and not (tmp_path / "norm2.json").exists()


def test_a_target_showing_its_ears_in_few_frames_keeps_the_sources_ears(tmp_path, caplog):
    target = articulated(40, LENGTHS)
    target[:28, [KP["left_ear"], KP["right_ear"]], :2] = np.nan  # ears seen in 12 of 40 frames
    source = articulated(40, {**LENGTHS, "ear": 0.06, "thigh": 0.3}, size=300.0, seed=1)
    p = _pair(tmp_path, target, source)
    cfg = LabelsConfig(transfer=TransferLabelsConfig(retarget="bones", smoothing="none"))
    with caplog.at_level("WARNING", logger="dancepipe.transfer.retarget"):
        r = run_labels("transfer", p["source"], p["frames"], tmp_path / "l", cfg, norm=p["norm"], profile=p["profile"])
    assert r["bone_ratios"]["ear"] == 1.0  # not retargeted: the source's doubled ears stay doubled
    assert r["bone_ratios"]["thigh"] < 0.95  # the body still is
    assert "ear (eye→ear) in only 12 of 40 frames" in caplog.text
    got = columns_to_keypoints(read_table(tmp_path / "l" / "index.parquet")[0])
    ear = np.nanmedian(_lengths(got, "left_eye", "left_ear") / _lengths(got, "nose", "left_eye"))
    assert ear == pytest.approx(0.06 / LENGTHS["eye"], rel=0.05)  # the source's ear-to-eye proportion


def test_retargeted_labels_record_their_ratios(stretched, tmp_path):
    cfg = LabelsConfig(transfer=TransferLabelsConfig(retarget="bones"))
    r = run_labels("transfer", stretched["source"], stretched["frames"], tmp_path / "l", cfg, norm=stretched["norm"], profile=stretched["profile"])
    _, meta = read_table(tmp_path / "l" / "index.parquet")
    assert meta["bone_ratios"] == pytest.approx(r["bone_ratios"]) and set(meta["bone_ratios"]) == set(BONES)
    assert meta["transfer"]["retarget"] == "bones"
    assert bone_stats(columns_to_keypoints(read_table(tmp_path / "l" / "index.parquet")[0]))["thigh"]["frames"] == 60

"""The footage figures and advice, on hand-built poses with known answers and on the real demo target."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from dancepipe.advice import footage as F
from dancepipe.pose.keypoints import columns_to_keypoints, read_table
from tests.test_baseline import HEIGHT, arms, pose


def test_distinct_poses_counts_a_greedy_cover_at_the_radius():
    """Arms raised by 0, 10, 20, ... 90 px: consecutive lifts differ by 3·10/17/123 = 0.0143 of the body height
    (elbows move half as far as the wrists; from a 60-px lift the wrists pass the eyes and the body grows a
    few px taller, which does not change the count), so within a radius of 0.05 a kept pose covers the next
    three lifts: 0, 40, 80 are kept."""
    lifts = np.arange(0, 100, 10.0)
    kps = np.stack([pose(arms(v)) for v in lifts])
    assert F.distinct_poses(kps, radius=0.05) == 3
    assert F.distinct_poses(kps, radius=0.001) == 10      # every pose is its own
    assert F.distinct_poses(np.concatenate([kps] * 5), radius=0.05) == 3  # repeating adds nothing
    nobody = np.full((4, 17, 3), np.nan)
    assert F.distinct_poses(nobody) == 0


def test_full_body_needs_every_body_joint_and_some_face():
    no_ankle = pose(missing=("left_ankle",))
    no_face = pose(missing=("nose", "left_eye", "right_eye", "left_ear", "right_ear"))
    one_eye = pose(missing=("nose", "right_eye", "left_ear", "right_ear"))
    assert F.full_body(np.stack([pose(), no_ankle, no_face, one_eye])).tolist() == [True, False, False, True]


def test_footage_figures_by_hand():
    """6 frames at 2 fps: 4 whole, 1 without feet, 1 with nobody. Body 123 px in a 400-px picture."""
    frames = [pose(at=(200, 150))] * 4 + [pose(at=(200, 150), missing=("left_ankle", "right_ankle"))]
    kps = np.concatenate([np.stack(frames), np.full((1, 17, 3), np.nan)])
    f = F.footage_figures(kps, fps=2.0, video_height=400, min_joints=8)
    assert f["frames"] == 6 and f["seconds"] == 3.0
    assert f["person_frames"] == 5 and f["full_body_frames"] == 4
    assert f["full_body_share"] == pytest.approx(4 / 6)
    assert f["body_px"] == HEIGHT and f["fill"] == pytest.approx(HEIGHT / 400)
    assert f["distinct_poses"] == 1  # the same pose throughout (feet or not, within the radius)
    with pytest.raises(F.DancepipeError, match="video facts are unusable"):
        F.footage_figures(kps, fps=0.0, video_height=400, min_joints=8)


def _figures(**changes):
    good = {"frames": 3000, "seconds": 120.0, "person_frames": 3000, "full_body_frames": 2900,
            "full_body_share": 2900 / 3000, "body_px": 400.0, "fill": 0.5, "distinct_poses": 200}
    return {**good, **changes}


def test_advice_names_what_is_thin_and_nothing_when_nothing_is():
    assert F.advise(_figures(), train_height=192) is None
    short = F.advise(_figures(seconds=18.0, distinct_poses=12), train_height=192)
    assert short.startswith("18 s of footage with 12 distinct poses: film at least 1 minute of varied motion")
    assert short.endswith("(at least 50 distinct poses), the whole body in view, with a static camera.")
    # varied but short, and long but repetitive: both are thin
    assert F.advise(_figures(seconds=F.MIN_SECONDS - 1), train_height=192) is not None
    assert F.advise(_figures(distinct_poses=F.MIN_DISTINCT_POSES - 1), train_height=192) is not None
    assert F.advise(_figures(distinct_poses=F.MIN_DISTINCT_POSES), train_height=192) is None
    cut = F.advise(_figures(full_body_share=0.5), train_height=192)
    assert cut == ("the whole body in only 50% of the frames: film the whole body, head to feet, in every frame, "
                   "with a static camera.")
    small = F.advise(_figures(body_px=150.0), train_height=192)
    assert "a body 150 px tall, smaller than the 192-px training frames" in small and "closer" in small
    assert F.advise(_figures(body_px=150.0), train_height=128) is None


@pytest.mark.slow
def test_the_stage_measures_the_real_demo_target(demo_poses, tmp_path):
    """The demo target's real keypoints and video facts: the figures agree with the table counted here, and a
    clip of a few seconds gets advice to film longer."""
    from dancepipe.output.metrics import valid_points
    from stages.footage import main

    table, meta = read_table(demo_poses["target"])
    subject = tmp_path / "subject"
    subject.mkdir()
    (subject / "poses.parquet").write_bytes(demo_poses["target"].read_bytes())
    (subject / "meta.json").write_text(json.dumps({"fps": meta["fps"], "height": meta["height"],
                                                   "width": meta["width"]}))
    out = tmp_path / "footage.json"
    res = CliRunner().invoke(main, ["--subject", str(subject), "--out", str(out)])
    assert res.exit_code == 0, res.output
    f = json.loads(out.read_text())
    kps = columns_to_keypoints(table).astype(np.float64)
    assert f["frames"] == len(table) and f["seconds"] == pytest.approx(len(table) / meta["fps"])
    assert f["person_frames"] == int((valid_points(kps).sum(axis=1) >= 8).sum())
    assert 0 < f["full_body_frames"] <= f["person_frames"] and 0 < f["fill"] <= 1
    assert 1 <= f["distinct_poses"] <= f["person_frames"]
    assert f["seconds"] < F.MIN_SECONDS and f["advice"].startswith(f"{f['seconds']:.0f} s of footage with")
    assert "advice:" in res.output
    res = CliRunner().invoke(main, ["--subject", str(tmp_path / "nowhere"), "--out", str(out)])
    assert res.exit_code == 1 and "the subject's video facts do not exist (run the subject stage)" in res.output

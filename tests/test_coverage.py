"""A dance's coverage by the target's footage, on hand-built poses and through the real labels stage."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from dancepipe.advice import coverage as C
from dancepipe.pose.keypoints import KEYPOINT_COLUMNS, KP
from tests.test_baseline import HEIGHT, STAND, arms, pose


def legs_apart(spread: float) -> np.ndarray:
    """STAND with the knees moved ``spread`` / 2 px and the ankles ``spread`` px outwards on each side."""
    xy = STAND.copy()
    for side, sign in (("left", -1), ("right", 1)):
        xy[KP[f"{side}_knee"], 0] += sign * spread / 2
        xy[KP[f"{side}_ankle"], 0] += sign * spread
    return xy


def test_a_repertoire_is_covered_up_to_the_95th_percentile_of_its_held_out_distances():
    """Training: one standing pose. Held out: the same with the arms raised by 0, 2, ..., 38 px, so each
    is 3·lift/17 px from it on average (elbows move lift/2, wrists lift), over the body height of 123."""
    lifts = np.arange(0, 40, 2.0)
    rep = C.build_repertoire(np.stack([pose()]), np.stack([pose(arms(v)) for v in lifts]))
    by_hand = 3 * lifts / 17 / HEIGHT
    assert C.COVERAGE_PERCENTILE == 95
    assert rep.threshold == pytest.approx(np.percentile(by_hand, 95), rel=1e-9)
    # a query is measured against its nearest training pose, wherever it stands in the picture
    queries = np.stack([pose(arms(10.0), at=(300, 40)), pose(arms(60.0)), pose(missing=tuple(KP))])
    d = rep.distances(queries)
    assert d[0] == pytest.approx(30 / 17 / HEIGHT, rel=1e-9) and d[0] <= rep.threshold
    assert d[1] > rep.threshold and math.isnan(d[2])  # arms far up: not covered; no person: no distance


def test_a_repertoire_without_held_out_poses_is_none():
    """Nothing to calibrate the threshold on (the held-out tail shows nobody): no repertoire."""
    assert C.build_repertoire(np.stack([pose()]), np.stack([pose(missing=tuple(KP))])) is None
    assert C.build_repertoire(np.stack([pose()]), np.zeros((0, 17, 3))) is None


def test_part_distances_name_the_part_that_moved():
    """Arms raised 60 px: the wrists move 60 and the elbows 30, so the arms part is 45 px off on average and
    every other part 0; legs spread 80 px: knees 40, ankles 80, the legs part 60 px off. Each over the query's
    body height."""
    queries = np.stack([pose(arms(60.0)), pose(legs_apart(80.0), at=(50, 10))])
    matches = np.stack([pose(), pose()])
    d = C.part_distances(queries, matches)
    heights = [125.0, HEIGHT]  # the raised wrists (y -65) are above the eyes: that query is 125 px tall
    assert d["arms"] == pytest.approx([45 / heights[0], 0.0])
    assert d["legs"] == pytest.approx([0.0, 60 / heights[1]])
    assert d["head"] == pytest.approx([0.0, 0.0]) and d["torso"] == pytest.approx([0.0, 0.0])


def test_a_dance_far_from_the_footage_is_warned_with_its_parts_and_a_near_one_is_not():
    """The target only ever stood with her arms down (held out: arms up to 10 px). A dance of wide strides with
    the arms thrown up 80 px (knees 40, ankles 80, elbows and wrists 80 px off: 560/17 px over a body now 165 px
    tall, 0.20, beyond FAR_DISTANCE) in 3 of 4 frames is warned, naming legs and arms; the same dance with 1
    frame in 4 is not (25 % far is not more than FAR_SHARE, and the standing frames are covered)."""
    rep = C.build_repertoire(np.stack([pose()] * 3), np.stack([pose(arms(v)) for v in (2.0, 6.0, 10.0)]))
    wide = pose(legs_apart(80.0))
    wide[list(C.JOINT_GROUPS["arms"]), 1] -= 80  # and the arms thrown up
    nobody = pose(missing=tuple(KP))
    dance = np.stack([wide, wide, wide, pose(), nobody])
    cov = C.measure_coverage(dance, rep)
    assert math.isnan(cov.nearest[4]) and cov.person.tolist() == [True] * 4 + [False]
    assert (cov.nearest[:3] > C.FAR_DISTANCE).all() and cov.nearest[3] == 0
    s = cov.summary()
    assert s["coverage_frames"] == 4 and s["covered_frames"] == 1 and s["far_frames"] == 3
    assert s["far_share"] == pytest.approx(0.75)
    assert s["far_parts"]["legs"] == pytest.approx(0.75) and s["far_parts"]["arms"] == pytest.approx(0.75)
    assert s["far_parts"]["head"] == 0 and s["far_parts"]["torso"] == 0
    warning = cov.warning("strider", "lifter")
    assert warning.startswith("75% of strider's frames ask for poses further than")
    assert "from any pose lifter made" in warning and "legs in 75%" in warning and "arms and legs will smear" in \
        warning.replace("legs and arms", "arms and legs")
    mostly_near = C.measure_coverage(np.stack([wide, pose(), pose(), pose()]), rep)
    assert mostly_near.summary()["far_share"] == pytest.approx(0.25) and mostly_near.warning("s", "t") is None


def test_coverage_round_trips_through_its_file(tmp_path):
    rep = C.build_repertoire(np.stack([pose()]), np.stack([pose(arms(4.0))]))
    cov = C.measure_coverage(np.stack([pose(arms(20.0)), pose(missing=tuple(KP))]), rep)
    C.write_coverage(tmp_path, cov)
    back = C.read_coverage(tmp_path)
    assert back.threshold == cov.threshold
    np.testing.assert_allclose(back.nearest, cov.nearest, atol=1e-6, equal_nan=True)
    for p in cov.parts:
        np.testing.assert_allclose(back.parts[p], cov.parts[p], atol=1e-6, equal_nan=True)
    assert back.summary() == cov.summary()
    assert C.read_coverage(tmp_path / "elsewhere") is None
    (tmp_path / C.FILE).write_text(json.dumps({"format": C.FORMAT, "nearest": [0.1]}))
    with pytest.raises(C.DancepipeError, match="coverage lacks or garbles 'parts'; rerun the labels_transfer stage"):
        C.read_coverage(tmp_path)


@pytest.mark.slow
def test_the_labels_stage_measures_coverage_against_the_targets_training_split(
        demo_poses, demo_frames, demo_norm, demo_labels, tmp_path):
    """Real transfer labels of a demo dance: coverage.json's nearest distances are the retrieval distances to
    the first 1 - holdout_fraction of the target's training labels, its threshold the 95th percentile of the
    tail's. Without --target-labels no coverage is written, and the labels are the same either way."""
    import yaml

    from dancepipe.output.baseline import nearest_poses
    from dancepipe.pose.keypoints import columns_to_keypoints, read_index
    from stages.labels import main

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"labels": {"draw": {"workers": 1}}, "normfit": {}}))
    out = tmp_path / "dancer" / "transfer" / "walker"
    args = ["--kind", "transfer", "--poses", str(demo_poses["source"]), "--frames", str(demo_frames["target"]),
            "--target-poses", str(demo_poses["target"]), "--norm", str(tmp_path / "norm.json"),
            "--profile", str(demo_norm.with_name("profile.json")), "--params", str(params)]
    res = CliRunner().invoke(main, [*args, "--target-labels", str(demo_labels["train"]), "--holdout-fraction", "0.25",
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output
    train = columns_to_keypoints(read_index(demo_labels["train"], "labels"))
    n_train = int(np.floor(len(train) * 0.75 + 1e-9))
    held = nearest_poses(train[n_train:], train[:n_train]).distance
    labels = columns_to_keypoints(read_index(out, "labels"))
    data = json.loads((out / C.FILE).read_text())
    assert data["coverage_threshold"] == pytest.approx(float(np.nanpercentile(held, 95)), rel=1e-9)
    expected = nearest_poses(labels, train[:n_train]).distance
    got = np.array([np.nan if v is None else v for v in data["nearest"]])
    np.testing.assert_allclose(got, expected, atol=1e-6, equal_nan=True)
    assert data["coverage_frames"] == int(np.isfinite(expected).sum()) > 0
    plain = tmp_path / "plain"
    res = CliRunner().invoke(main, [*args, "--out", str(plain)])
    assert res.exit_code == 0, res.output
    assert not (plain / C.FILE).exists()
    a = pd.read_parquet(out / "index.parquet")[KEYPOINT_COLUMNS]
    b = pd.read_parquet(plain / "index.parquet")[KEYPOINT_COLUMNS]
    pd.testing.assert_frame_equal(a, b)
    res = CliRunner().invoke(main, [*args, "--target-labels", str(demo_labels["train"]), "--out", str(plain)])
    assert res.exit_code == 2 and "--target-labels and --holdout-fraction go together" in res.output


def test_a_part_counts_only_in_frames_that_are_far():
    """Arms raised 60 px in every frame: the arms part is 45/125 = 0.36 of the body height off, but the whole
    pose only (2·60 + 2·30)/17/125 = 0.085, under FAR_DISTANCE: no frame is far, so no part is named."""
    rep = C.build_repertoire(np.stack([pose()] * 2), np.stack([pose(arms(2.0))]))
    cov = C.measure_coverage(np.stack([pose(arms(60.0))] * 4), rep)
    assert (cov.parts["arms"] > C.FAR_DISTANCE).all() and not cov.far.any()
    assert cov.summary()["far_parts"] == {"head": 0.0, "torso": 0.0, "arms": 0.0, "legs": 0.0}


def test_a_dance_on_footage_that_repeats_itself_is_warned_though_nothing_is_far():
    """Her held-out tail repeats her training poses exactly (threshold 0): a dance that only ever raises the arms
    10 px (0.014 of her height, far from nothing) has no covered frame, and is warned as blurring throughout."""
    rep = C.build_repertoire(np.stack([pose()] * 3), np.stack([pose()] * 2))
    assert rep.threshold == 0
    cov = C.measure_coverage(np.stack([pose(arms(10.0))] * 4), rep)
    s = cov.summary()
    assert s["far_frames"] == 0 and s["covered_frames"] == 0
    warning = cov.warning("walker", "repeat")
    assert warning.startswith("only 0% of walker's frames ask for a pose as close to repeat's footage")
    assert "her footage repeats itself, so all of walker will blur" in warning
    # one covered frame in four is enough not to be warned
    assert C.measure_coverage(np.stack([pose()] + [pose(arms(10.0))] * 3), rep).warning("walker", "repeat") is None

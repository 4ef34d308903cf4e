"""The profile stage measures the target once; the transfer chain runs exactly the steps its params enable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from dancepipe.transfer.chain import STEPS, TargetSpace, TransferLabelsConfig, transfer_keypoints
from dancepipe.transfer.normalize import NormfitConfig, load_mapping, run_normfit
from tests.fixtures.labels import write_pose_table
from tests.test_facing import WIDTH, _front, _swap_by_name
from tests.test_retarget import LENGTHS, articulated


def _profile_cli(*args: str):
    from stages.target_profile import main

    return CliRunner().invoke(main, list(args))


def test_the_profile_stage_counts_her_frames_and_measures_her_bones(tmp_path: Path) -> None:
    target = _front(articulated(60, LENGTHS))
    target[40:] = _swap_by_name(target[40:])  # she turns her back for the last 20 frames
    target[10:15] = np.nan  # and is out of the picture for five
    poses = write_pose_table(tmp_path / "t.parquet", target, WIDTH, 1920)
    res = _profile_cli("--poses", str(poses), "--out", str(tmp_path / "p.json"))
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["format"] == "dancepipe.profile/1" and data["person_frames"] == 55
    assert data["facing"] == {"front": 35, "back": 20, "side": 0}
    assert data["bones"]["thigh"]["frames"] == 55
    assert "profile: 55 frames with a person; facing front 35, back 20, side 0" in res.output


def test_the_profile_stage_refuses_a_missing_table_in_one_sentence(tmp_path: Path) -> None:
    res = _profile_cli("--poses", str(tmp_path / "nope.parquet"), "--out", str(tmp_path / "p.json"))
    assert res.exit_code == 1
    assert [line for line in res.output.splitlines() if line.startswith("Error: ")] == [
        line for line in res.output.splitlines() if line.strip()]
    assert "nope.parquet" in res.output and not (tmp_path / "p.json").exists()


def test_the_chain_runs_the_steps_its_params_enable_in_their_order(tmp_path: Path) -> None:
    target = _front(articulated(60, LENGTHS))
    source = _front(articulated(60, LENGTHS, size=300.0, seed=1))
    source[20:30] = _swap_by_name(source[20:30])
    t = write_pose_table(tmp_path / "t.parquet", target, WIDTH, 1920)
    s = write_pose_table(tmp_path / "s.parquet", source, 1280, 720)
    run_normfit(t, s, tmp_path / "stats.json", None, NormfitConfig())
    space = TargetSpace(load_mapping(tmp_path / "stats.json"), facing="front")
    plain = TransferLabelsConfig(retarget="none", head="source", facing="source", legs="source")
    _, record = transfer_keypoints(source, plain, space)
    assert list(record.changes) == ["gaps", "smoothing", "normalise"]
    assert not record.mirrored.any() and record.bone_ratios is None
    _, record = transfer_keypoints(source, plain.model_copy(update={"facing": "target"}), space)
    assert list(record.changes) == ["facing", "gaps", "smoothing", "normalise", "facing_drawn"]
    np.testing.assert_array_equal(np.flatnonzero(record.changed("facing")), np.arange(20, 30))
    assert [s.name for s in STEPS] == ["facing", "gaps", "head", "smoothing", "normalise", "retarget",
                                       "facing_drawn", "legs"]  # the order docs/labels.md gives

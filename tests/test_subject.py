"""The subject stage: one named person followed through the detection table of their video."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from dancepipe.catalog import Subject, TrackingConfig
from dancepipe.errors import DancepipeError
from dancepipe.pose.detect import detection_table
from dancepipe.pose.keypoints import DETECTION_SCHEMA, SCHEMA, read_table, write_table
from dancepipe.pose.subject import follow, frames_of
from dancepipe.pose.tracks import Detections
from dancepipe.video.ingest import ingest_video
from stages.subject import main

W, H = 640, 480


def _person(x0: float, y0: float, x1: float, y1: float, score: float = 0.9) -> tuple[np.ndarray, float, np.ndarray]:
    kps = np.zeros((17, 3), np.float32)
    kps[:, 0] = np.linspace(x0, x1, 17)
    kps[:, 1] = np.linspace(y0, y1, 17)
    kps[:, 2] = 0.9
    return np.array([x0, y0, x1, y1], np.float32), score, kps


def _table(n: int = 40) -> tuple:
    """A big person on the left walking right, a small one standing top right; frame 5 sees nobody."""
    indices, stamps, dets = [], [], []
    for t in range(n):
        people = [] if t == 5 else [_person(50 + 2 * t, 100, 250 + 2 * t, 470), _person(500, 40, 560, 160, 0.7)]
        dets.append(Detections(np.array([p[0] for p in people], np.float32).reshape(-1, 4),
                               np.array([p[1] for p in people], np.float32),
                               np.array([p[2] for p in people], np.float32).reshape(-1, 17, 3)))
        indices.append(t)
        stamps.append(t / 25)
    return detection_table(indices, stamps, dets, kp_conf=0.5)


def test_frames_of_inverts_the_detection_table():
    indices, stamps, dets = frames_of(_table(8))
    assert indices == list(range(8)) and stamps[3] == pytest.approx(3 / 25)
    assert [len(d) for d in dets] == [2, 2, 2, 2, 2, 0, 2, 2]
    np.testing.assert_array_equal(dets[7].boxes[1], [500, 40, 560, 160])


def test_follow_picks_by_rule_or_point_and_writes_a_keypoint_table():
    table = _table()
    auto = follow(table, W, H, Subject(video="v"), TrackingConfig())
    assert list(auto.columns) == SCHEMA.names and len(auto) == 40
    assert auto["person_found"].tolist() == [t != 5 for t in range(40)]
    assert auto.loc[auto["person_found"], "box_x0"].tolist() == [50 + 2 * t for t in range(40) if t != 5]
    assert auto.loc[5, "box_x0":].isna().all()  # nobody: NaN, never zeros
    small = follow(table, W, H, Subject(video="v", person=(530 / W, 100 / H)), TrackingConfig())
    assert (small.loc[small["person_found"], "box_x0"] == 500).all() and small["person_found"].sum() == 39
    longest = follow(table, W, H, Subject(video="v", person="longest"), TrackingConfig())
    assert longest["person_found"].sum() == 39
    with pytest.raises(DancepipeError, match=r"subjects.jumper.person = \[0.01, 0.99\]: no detected person covers"):
        follow(table, W, H, Subject(video="v", person=(0.01, 0.99)), TrackingConfig(), "jumper")


@pytest.fixture
def posed_video(tmp_path: Path, make_video) -> tuple[Path, Path]:
    """A real ingested clip and a detection table of the same size (the pose model is not the point here)."""
    frames = [np.full((H, W, 3), 6 * i, np.uint8) for i in range(40)]
    ingested = tmp_path / "data" / "videos" / "clip"
    ingest_video(str(make_video("clip.mp4", frames, fps=25)), ingested)
    detections = tmp_path / "data" / "poses" / "clip.parquet"
    write_table(_table(), detections, {"width": W, "height": H, "fps": 25.0}, schema=DETECTION_SCHEMA)
    return ingested, detections


def _params(tmp_path: Path, person) -> Path:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "videos": {"clip": "inputs/clip.mp4"},
        "subjects": {"big": {"video": "clip", "person": "auto"}, "small": {"video": "clip", "person": person}},
        "targets": ["big"], "sources": ["small"],
        "tracking": {"iou": 0.2, "max_gap": 15, "point_frames": 30},
    }))
    return params


def test_stage_writes_the_subject_directory(tmp_path: Path, posed_video):
    ingested, detections = posed_video
    params = _params(tmp_path, [530 / W, 100 / H])
    for name, x0 in (("big", None), ("small", 500)):
        out = tmp_path / "data" / "subjects" / name
        res = CliRunner().invoke(main, ["--name", name, "--video", str(ingested), "--detections", str(detections),
                                        "--out", str(out), "--params", str(params)])
        assert res.exit_code == 0, res.output
        assert f"subject {name}:" in res.output and "seen in 39 of 40 frames" in res.output
        meta = json.loads((out / "meta.json").read_text())
        video = out / meta["file"]
        assert video.read_bytes() == (ingested / meta["file"]).read_bytes()
        df, tmeta = read_table(out / "poses.parquet")
        assert len(df) == 40 and tmeta["subject"] == name and tmeta["width"] == W
        if x0 is not None:
            assert (df.loc[df["person_found"], "box_x0"] == x0).all()


def test_stage_refuses_a_point_on_nobody_and_writes_nothing(tmp_path: Path, posed_video):
    ingested, detections = posed_video
    out = tmp_path / "data" / "subjects" / "small"
    res = CliRunner().invoke(main, ["--name", "small", "--video", str(ingested), "--detections", str(detections),
                                    "--out", str(out), "--params", str(_params(tmp_path, [0.01, 0.99]))])
    assert res.exit_code == 1
    assert "subjects.small.person = [0.01, 0.99]: no detected person covers the point (6, 475) px" in res.output
    assert not out.parent.exists() or not list(out.parent.iterdir())


@pytest.mark.slow
def test_each_demo_choice_stays_on_its_person_in_the_sports2d_clip(demo_detections, demo_source_video):
    """Sports2D shows a woman walking from right to left across the front (head below the
    picture's middle) and a man standing on a box behind her (feet above its 60 % line)
    until frame 138; he jumps down out of view and later walks on the ground at the right.
    The demo's `walker` (auto) must follow her: her box only ever moves left, so it never
    jumps to him. Its `jumper` (a point on him) must follow him in every frame where he
    stands on the box, and only there. Both come from params.yaml, as the pipeline reads them."""
    from dancepipe.catalog import load_catalog
    from dancepipe.video.decode import probe

    catalog = load_catalog(Path(__file__).resolve().parents[1] / "params.yaml")
    table, meta = read_table(demo_detections["source"])
    info = probe(demo_source_video)
    assert (meta["width"], meta["height"]) == (info.width, info.height)
    _, _, frames = frames_of(table)

    def on_the_box(box: np.ndarray) -> bool:
        return box[3] < 0.6 * info.height

    walk = follow(table, info.width, info.height, catalog.subject("walker"), TrackingConfig())
    boxes = walk.loc[walk["person_found"], ["box_x0", "box_y0", "box_x1", "box_y1"]].to_numpy()
    assert len(boxes) >= 150
    assert (boxes[:, 1] > 0.45 * info.height).all()  # always the person in front
    centre = (boxes[:, 0] + boxes[:, 2]) / 2
    assert np.diff(centre).max() < 40 and centre[0] - centre[-1] > 0.6 * info.width  # right to left, no jump
    jump = follow(table, info.width, info.height, catalog.subject("jumper"), TrackingConfig())
    jump_boxes = jump[["box_x0", "box_y0", "box_x1", "box_y1"]].to_numpy()
    on_box = [t for t in range(140) if any(on_the_box(b) for b in frames[t].boxes)]
    assert len(on_box) >= 120
    for t in on_box:
        assert jump["person_found"][t] and on_the_box(jump_boxes[t]), t
    assert all(on_the_box(b) for b in jump_boxes[jump["person_found"].to_numpy()])

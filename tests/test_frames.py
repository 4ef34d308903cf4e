"""The frames stage (dancepipe.video.frames, stages/frames.py) on synthetic clips and on the demo."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from dancepipe.config import build_config
from dancepipe.errors import DancepipeError
from dancepipe.pose.keypoints import SCHEMA, read_table, write_table
from dancepipe.video.crop import CropTransform, load_frames_dir
from dancepipe.video.decode import iter_frames
from dancepipe.video.frames import FramesConfig, extract_frames
from stages.frames import main as frames_main

W, H, N = 160, 120, 8
CFG = FramesConfig(width=64, height=96, padding=0.1, workers=2)


def subject_box(i: int) -> tuple[int, int, int, int]:
    """The white 'person' of frame i: 30x80 px, walking right."""
    x0 = 50 + 4 * i
    return x0, 25, x0 + 30, 105


def scene(n: int = N) -> list[np.ndarray]:
    out = []
    for i in range(n):
        img = np.full((H, W, 3), (60, 90, 120), np.uint8)
        img[:, ::16] = (0, 160, 0)  # green stripes: texture to compare crops by
        x0, y0, x1, y1 = subject_box(i)
        img[y0:y1, x0:x1] = 255
        out.append(img)
    return out


def pose_table(path: Path, n: int = N, found: np.ndarray | None = None, width: int = W, height: int = H) -> Path:
    """A keypoint table (real schema) whose boxes are the subject's; keypoints missing (NaN)."""
    found = np.ones(n, bool) if found is None else found
    cols = {f.name: np.full(n, np.nan, np.float32) for f in SCHEMA}
    cols["frame"] = np.arange(n, dtype=np.int64)
    cols["timestamp"] = np.arange(n) / 10.0
    cols["person_found"] = found
    boxes = np.array([subject_box(i) for i in range(n)], np.float32)
    boxes[~found] = np.nan
    for j, name in enumerate(("box_x0", "box_y0", "box_x1", "box_y1")):
        cols[name] = boxes[:, j]
    write_table(pd.DataFrame(cols), path, {"width": width, "height": height, "fps": 10.0})
    return path


@pytest.fixture
def clip(make_video, tmp_path):
    return make_video("walk.mp4", scene(), fps=10), pose_table(tmp_path / "poses.parquet")


def test_writes_one_jpeg_per_row_with_index_and_transform(clip, tmp_path):
    video, poses = clip
    calls: list[int] = []
    result = extract_frames(video, poses, tmp_path / "frames", CFG, progress=calls.append)
    out = tmp_path / "frames"
    assert result.frames == N and sum(calls) == N and result.persons_found == N
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{i:06d}.jpg" for i in range(N)] + ["index.parquet", "transform.json"]
    )
    schema = pq.read_schema(out / "index.parquet")
    assert [(f.name, str(f.type)) for f in schema] == [
        ("frame", "int64"), ("file", "string"), ("timestamp", "double"), ("person_found", "bool"),
        ("sha256", "string"),
    ]
    index, t = load_frames_dir(out)
    # each JPEG's sha256, so that the index changes whenever a frame does (dvc.yaml's deps name only it)
    assert index["sha256"].tolist() == [hashlib.sha256((out / f).read_bytes()).hexdigest() for f in index["file"]]
    assert t == result.transform and t == CropTransform.from_dict(json.loads((out / "transform.json").read_text()))
    assert index["frame"].tolist() == list(range(N)) and index["person_found"].all()
    np.testing.assert_allclose(index["timestamp"], np.arange(N) / 10.0)
    assert (t.width, t.height, t.src_width, t.src_height) == (64, 96, W, H)
    assert t.crop_w / t.crop_h == pytest.approx(64 / 96)
    for i, name in enumerate(index["file"]):
        img = cv2.imread(str(out / name))
        assert img is not None and img.shape == (96, 64, 3)
        # The subject is inside the crop: its box maps into the image and its centre is white.
        box = t.apply_points(np.array(subject_box(i), float).reshape(2, 2))
        assert box.min() >= 0 and box[:, 0].max() <= 64 and box[:, 1].max() <= 96
        cx, cy = box.mean(axis=0).astype(int)
        assert img[cy - 2:cy + 3, cx - 2:cx + 3].min() > 220
        # ... and the background just left of it is the scene's, not white.
        assert img[cy, max(0, int(box[0, 0]) - 4)].max() < 200


def test_frames_equal_the_reference_crop_of_the_rgb_decode(clip, tmp_path):
    video, poses = clip
    t = extract_frames(video, poses, tmp_path / "frames", CFG).transform
    for frame in iter_frames(video):
        reference = t.apply_image(frame.image)  # the transform's own crop + resize on RGB
        ours = cv2.cvtColor(cv2.imread(str(tmp_path / "frames" / f"{frame.index:06d}.jpg")), cv2.COLOR_BGR2RGB)
        assert np.abs(ours.astype(int) - reference).mean() < 6


def test_frames_without_a_person_are_kept_and_recorded(make_video, tmp_path):
    video = make_video("walk.mp4", scene(), fps=10)
    found = np.array([True, True, False, False, True, True, True, False])
    poses = pose_table(tmp_path / "poses.parquet", found=found)
    result = extract_frames(video, poses, tmp_path / "frames", CFG)
    index, _ = load_frames_dir(tmp_path / "frames")
    assert result.frames == N and result.persons_found == 5
    assert index["person_found"].tolist() == found.tolist()
    assert all((tmp_path / "frames" / f).exists() for f in index["file"])


def test_no_person_anywhere_is_an_error_and_writes_nothing(make_video, tmp_path):
    video = make_video("empty_room.mp4", scene(), fps=10)
    poses = pose_table(tmp_path / "poses.parquet", found=np.zeros(N, bool))
    with pytest.raises(DancepipeError, match="no person was found in any frame"):
        extract_frames(video, poses, tmp_path / "frames", CFG)
    assert not (tmp_path / "frames").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".frames")] == []


@pytest.mark.parametrize("rows,message", [(N - 2, "decodes to more frames than the 6 rows"),
                                          (N + 3, "decodes to 8 frames but")])
def test_pose_table_that_does_not_match_the_video(make_video, tmp_path, rows, message):
    video = make_video("walk.mp4", scene(), fps=10)
    poses = pose_table(tmp_path / "poses.parquet", n=rows)
    previous = tmp_path / "frames"
    previous.mkdir()
    (previous / "000000.jpg").write_bytes(b"old run")
    with pytest.raises(DancepipeError, match=message):
        extract_frames(video, poses, previous, CFG)
    # The earlier output is untouched and no temporary directory is left behind.
    assert [p.name for p in previous.iterdir()] == ["000000.jpg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "poses.parquet", "walk.mp4"]


def test_pose_table_for_a_different_size_is_rejected(make_video, tmp_path):
    video = make_video("walk.mp4", scene(), fps=10)
    poses = pose_table(tmp_path / "poses.parquet", width=1920, height=1080)
    with pytest.raises(DancepipeError, match="1920x1080 video but .*walk.mp4 is 160x120"):
        extract_frames(video, poses, tmp_path / "frames", CFG)


def test_full_frame_letterboxes_with_black_bands(clip, tmp_path):
    video, poses = clip
    cfg = CFG.model_copy(update={"full_frame": True})
    t = extract_frames(video, poses, tmp_path / "frames", cfg).transform
    assert (t.crop_w, t.crop_h) == (W, pytest.approx(W * 96 / 64))
    img = cv2.imread(str(tmp_path / "frames" / "000003.jpg"))
    top = int(t.apply_points(np.array([0.0, 0.0]))[1])  # first output row showing the frame
    assert img[: top - 2].max() < 12 and img[-(top - 2):].max() < 12  # black (JPEG noise aside)
    assert img[48].mean() > 60  # the picture itself


def test_rotated_video_is_cropped_upright(make_video, tmp_path):
    upright = scene()
    stored = [np.ascontiguousarray(np.rot90(img, -1)) for img in upright]  # what a phone would store
    video = make_video("phone.mp4", stored, fps=10, rotation=90)
    poses = pose_table(tmp_path / "poses.parquet")
    t = extract_frames(video, poses, tmp_path / "frames", CFG).transform
    assert (t.src_width, t.src_height) == (W, H)
    for i in (0, N - 1):
        reference = t.apply_image(upright[i])
        ours = cv2.cvtColor(cv2.imread(str(tmp_path / "frames" / f"{i:06d}.jpg")), cv2.COLOR_BGR2RGB)
        assert np.abs(ours.astype(int) - reference).mean() < 8


def test_config_bounds_name_the_key_and_the_allowed_values():
    with pytest.raises(DancepipeError, match=r"'frames.width' = 100 is invalid: .*multiple of 16"):
        build_config(FramesConfig, {"width": 100}, section="frames")
    with pytest.raises(DancepipeError, match=r"'frames.height' = 32 .*>= 64"):
        build_config(FramesConfig, {"height": 32}, section="frames")
    with pytest.raises(DancepipeError, match=r"'frames.jpeg_quality' = 101 .*<= 100"):
        build_config(FramesConfig, {"jpeg_quality": 101}, section="frames")
    with pytest.raises(DancepipeError, match=r"unknown key 'frames.widht'; valid keys .*full_frame"):
        build_config(FramesConfig, {"widht": 128}, section="frames")


def test_params_yaml_frames_section_is_valid_and_default(repo_root):
    params = yaml.safe_load((repo_root / "params.yaml").read_text())["frames"]
    assert build_config(FramesConfig, params, section="frames") == FramesConfig()
    dvc = yaml.safe_load((repo_root / "dvc.yaml").read_text())["stages"]["frames"]["do"]
    assert dvc["params"] == ["frames"]
    # its code dep is its command's manifest (docs/dvc.md), which names the video and pose modules it runs
    from tools.dvc_deps import manifest

    assert "data/code/frames.json" in dvc["deps"]
    files = manifest("stages/frames.py", repo_root)["files"]
    assert "stages/frames.py" in files and "dancepipe/video/__init__.py" in files and "dancepipe/pose/__init__.py" in files


def _invoke(tmp_path: Path, video: Path, poses: Path, section: dict):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"frames": section}))
    return CliRunner().invoke(
        frames_main,
        ["--video", str(video), "--poses", str(poses), "--out", str(tmp_path / "out"), "--params", str(params)],
    )


def test_stage_cli_writes_frames(clip, tmp_path):
    video, poses = clip
    result = _invoke(tmp_path, video, poses, {"width": 64, "height": 96})
    assert result.exit_code == 0, result.output
    assert f"frames: {N} frames ({N} with the subject) at 64x96" in result.output
    assert len(list((tmp_path / "out").glob("*.jpg"))) == N


@pytest.mark.parametrize("case", ["bad_param", "missing_video", "missing_poses"])
def test_stage_cli_failures_are_one_sentence_with_no_output(clip, tmp_path, case):
    video, poses = clip
    section = {"width": 64, "height": 96}
    if case == "bad_param":
        section["padding"] = -0.5
    elif case == "missing_video":
        video = tmp_path / "gone.mp4"
    else:
        poses = tmp_path / "gone.parquet"
    result = _invoke(tmp_path, video, poses, section)
    assert result.exit_code == 1, result.output
    message = result.output.strip().splitlines()[-1]
    assert message.startswith("Error: ") and "Traceback" not in result.output
    expected = {"bad_param": "'frames.padding' = -0.5", "missing_video": "gone.mp4: video file does not exist",
                "missing_poses": "gone.parquet: pose table does not exist"}[case]
    assert expected in message
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_demo_frames_match_params_and_frame_the_subject(demo_frames, demo_poses):
    expected_counts = {"target": 100, "source": 230}
    for subject, out in demo_frames.items():
        poses, _ = read_table(demo_poses[subject])
        index, t = load_frames_dir(out)
        assert len(index) == len(poses) == expected_counts[subject]
        assert index["frame"].tolist() == poses["frame"].tolist()
        assert index["person_found"].tolist() == poses["person_found"].tolist()
        assert (t.width, t.height) == (128, 192)
        found = poses[poses["person_found"]]
        assert len(found) > 0.5 * len(poses)  # the source dancer enters after ~1 s
        boxes = found[["box_x0", "box_y0", "box_x1", "box_y1"]].to_numpy(float).reshape(-1, 2, 2)
        uv = t.apply_points(boxes)
        centres = uv.mean(axis=1)
        # Every subject box centre is in the picture, and (robust crop) nearly every whole box.
        assert np.all((centres >= 0) & (centres <= [128, 192]))
        inside = np.all((uv >= -2) & (uv <= np.array([128, 192]) + 2), axis=(1, 2))
        assert inside.mean() > 0.95
        # The crop is no bigger than the subject's range needs: in its limiting dimension the
        # robust union of the boxes spans the output minus the padding (0.1 on each side).
        lo = np.percentile(uv[:, 0, :], 2, axis=0)
        hi = np.percentile(uv[:, 1, :], 98, axis=0)
        assert np.max((hi - lo) / [128, 192]) == pytest.approx(1 / 1.2, abs=0.03)
        for row in index.iloc[:: max(1, len(index) // 5)].itertuples():
            img = cv2.imread(str(out / row.file))
            assert img.shape == (192, 128, 3) and img.std() > 10  # real picture content


@pytest.mark.slow
def test_demo_stage_cli_on_the_target_clip(demo_poses, demo_target_video, tmp_path):
    result = _invoke(tmp_path, demo_target_video, demo_poses["target"], {})
    assert result.exit_code == 0, result.output
    assert "frames: 100 frames" in result.output and "at 128x192" in result.output
    assert len(list((tmp_path / "out").glob("*.jpg"))) == 100

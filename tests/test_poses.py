"""The poses stage: weights resolution, keypoint masking, table schema, real runs on the demo clips."""

from __future__ import annotations

import itertools
import logging
import warnings
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from dancepipe.assets import sha256_file
from dancepipe.catalog import Subject, TrackingConfig
from dancepipe.config import build_config
from dancepipe.errors import DancepipeError
from dancepipe.hardware.precision import resolve_precision
from dancepipe.pose.detect import (
    Letterbox,
    PoseRunner,
    PosesConfig,
    detection_table,
    extract_poses,
    mask_keypoints,
)
from dancepipe.pose.estimator import load_pose_model, model_sha256, resolve_weights
from dancepipe.pose.keypoints import DETECTION_SCHEMA, KP, columns_to_keypoints, read_table, write_table
from dancepipe.pose.subject import follow
from dancepipe.pose.tracks import Detections
from dancepipe.video.decode import iter_frames
from tests.conftest import write_video
from tests.cpuinfo import cpu_has_native_bf16

LOWER = [KP[n] for n in ("left_ankle", "right_ankle")]
HIPS = [KP[n] for n in ("left_hip", "right_hip")]


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory, demo_target_video: Path) -> Path:
    """The first 12 frames of the demo target, downscaled to 270x480 (subject + bystander)."""
    frames = [cv2.resize(f.image, (270, 480), interpolation=cv2.INTER_AREA)
              for f in itertools.islice(iter_frames(demo_target_video), 12)]
    return write_video(tmp_path_factory.mktemp("small") / "small.mp4", frames, fps=30)


@pytest.fixture(scope="module")
def cpu_cfg(pose_weights: Path) -> PosesConfig:
    return PosesConfig(model=str(pose_weights), device="cpu", batch=4)


# --- config ------------------------------------------------------------------------------------------


def test_config_defaults_match_params_yaml(repo_root: Path):
    """PosesConfig() (what a params.yaml without these keys gets) is what the shipped params.yaml says."""
    params = yaml.safe_load((repo_root / "params.yaml").read_text())["poses"]
    assert PosesConfig().model_dump() == params


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"imgsz": 100}, r"'poses.imgsz' = 100 is invalid: .*multiple of 32"),
        ({"kp_conf": 1.5}, r"'poses.kp_conf' = 1.5 is invalid"),
        ({"device": "gpu"}, r"'poses.device' = 'gpu' is invalid: .*auto, cpu"),
        ({"bacth": 4}, r"unknown key 'poses.bacth'; valid keys in 'poses' are: batch, det_conf"),
    ],
)
def test_config_errors_are_one_sentence(values, match):
    with pytest.raises(DancepipeError, match=match):
        build_config(PosesConfig, values, section="poses")


# --- weights -----------------------------------------------------------------------------------------


def test_resolve_weights_local_path(pose_weights: Path, caplog):
    with caplog.at_level(logging.INFO, logger="dancepipe.pose.estimator"):
        assert resolve_weights(str(pose_weights)) == pose_weights
    assert f"using local file {pose_weights}" in caplog.text
    assert model_sha256(pose_weights) == "869e83fcdffdc7371fa4e34cd8e51c838cc729571d1635e5141e3075e9319dc0"


def test_resolve_weights_offline_falls_back_to_pinned_copy_without_a_download(pose_weights: Path, monkeypatch,
                                                                              tmp_path, caplog):
    """(How fast the fallback is: benchmarks/bench_poses.py, "offline fallback".)"""
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # no yolov8n-pose.pt lying around in the working directory
    with caplog.at_level(logging.INFO, logger="dancepipe.pose.estimator"):
        got = resolve_weights("yolov8n-pose.pt")
    assert "YOLO_OFFLINE is set, so no download is attempted" in caplog.text
    assert got.name == "yolo11n-pose.pt" and sha256_file(got) == sha256_file(pose_weights)
    assert "yolov8n-pose.pt unavailable offline; using the pinned yolo11n-pose.pt" in caplog.text
    assert not list(tmp_path.iterdir())  # nothing downloaded into the working directory


def test_resolve_weights_pinned_name_and_bad_names(pose_weights: Path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert sha256_file(resolve_weights("yolo11n-pose.pt")) == sha256_file(pose_weights)
    with pytest.raises(DancepipeError, match=r"models/mine.pt' is neither an existing file"):
        resolve_weights("models/mine.pt")
    with pytest.raises(DancepipeError, match=r"'yolov8n-poes.pt' is neither an existing file"):
        resolve_weights("yolov8n-poes.pt")
    with pytest.raises(DancepipeError, match=r"'yolov8n.pt' is neither an existing file nor an official .* pose"):
        resolve_weights("yolov8n.pt")  # a detection model, not a pose model
    with pytest.raises(DancepipeError, match=r"'elsewhere/yolo11n-pose.pt' is neither an existing file"):
        resolve_weights("elsewhere/yolo11n-pose.pt")


def test_load_pose_model_rejects_non_model_file(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(DancepipeError, match="junk.pt: cannot be loaded as an Ultralytics pose model"):
        load_pose_model(str(junk), "cpu")
    empty = tmp_path / "empty.pt"  # Ultralytics: a TypeError naming the checkpoint
    empty.write_bytes(b"")
    with pytest.raises(DancepipeError, match="empty.pt: cannot be loaded as an Ultralytics pose model"):
        load_pose_model(str(empty), "cpu")
    import torch

    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")  # a torch file, but no YOLO model
    with pytest.raises(DancepipeError, match="foreign.pt: cannot be loaded as an Ultralytics pose model"):
        load_pose_model(str(tmp_path / "foreign.pt"), "cpu")




# --- masking, letterbox, table -----------------------------------------------------------------------


def test_mask_keypoints_by_confidence_never_zero():
    kps = np.array([[[10, 20, 0.9], [0, 0, 0.1], [5, 6, 0.5], [7, 8, 0.49], [np.nan, 1, 0.99]]], np.float32)
    out = mask_keypoints(kps, 0.5)
    np.testing.assert_array_equal(out[0, [0, 2]], kps[0, [0, 2]])
    assert np.isnan(out[0, [1, 3, 4]]).all()
    assert not np.isnan(kps).all()  # input untouched


@settings(max_examples=50, deadline=None)
@given(st.floats(0.0, 1.0), st.integers(0, 2**31 - 1))
def test_property_masked_points_are_confident_or_all_nan(kp_conf, seed):
    rng = np.random.default_rng(seed)
    kps = rng.uniform(0, 100, (3, 17, 3)).astype(np.float32)
    kps[..., 2] = rng.uniform(0, 1, (3, 17))
    kps[rng.uniform(size=(3, 17)) < 0.3, :2] = 0.0  # ultralytics-style zeroed points
    out = mask_keypoints(kps, kp_conf)
    kept = np.isfinite(out[..., 0])
    assert (np.isnan(out[~kept]).all())
    assert (out[kept][:, 2] >= kp_conf).all()
    np.testing.assert_array_equal(out[kept], kps[kept])


@settings(max_examples=50, deadline=None)
@given(st.integers(16, 4000), st.integers(16, 4000), st.sampled_from([320, 640, 1280]))
def test_property_letterbox_round_trip(h, w, imgsz):
    lb = Letterbox.fit(h, w, imgsz, 32)
    assert lb.in_height % 32 == 0 and lb.in_width % 32 == 0 and max(lb.new_height, lb.new_width) == imgsz
    assert lb.in_height - lb.new_height < 32 and lb.in_width - lb.new_width < 32
    pts = np.array([[0, 0], [w, h], [w / 3, h / 2]], np.float32)
    fwd = np.stack([pts[:, 0] * lb.new_width / w + lb.left, pts[:, 1] * lb.new_height / h + lb.top], axis=1)
    np.testing.assert_allclose(lb.to_frame(fwd), pts, rtol=1e-4, atol=1e-2)


def test_detection_table_lists_every_person_and_every_frame(tmp_path):
    """Two people, then nobody, then one: a row per person, one -1 row for the empty frame, masked keypoints."""
    kps = np.tile(np.array([100, 200, 0.9], np.float32), (2, 17, 1))
    kps[0, KP["nose"], 2] = 0.2
    two = Detections(np.array([[10, 20, 110, 320], [300, 20, 380, 200]], np.float32),
                     np.array([0.8, 0.6], np.float32), kps)
    one = Detections(two.boxes[1:], two.scores[1:], kps[1:])
    df = detection_table([0, 1, 2], [0.0, 0.1, 0.2], [two, Detections.empty(), one], kp_conf=0.5)
    assert list(df.columns) == DETECTION_SCHEMA.names
    assert df["frame"].tolist() == [0, 0, 1, 2] and df["person"].tolist() == [0, 1, -1, 0]
    assert df["timestamp"].tolist() == [0.0, 0.0, 0.1, 0.2]
    assert df.iloc[2, 3:].isna().all()  # nobody: NaN everywhere, not zeros
    assert np.isnan(df.loc[0, ["nose_x", "nose_y", "nose_conf"]].astype(float)).all()  # conf 0.2 < kp_conf
    assert df.loc[1, "nose_x"] == 100 and df.loc[3, "box_x0"] == 300
    out = tmp_path / "t.parquet"
    write_table(df, out, {"video": "x"}, schema=DETECTION_SCHEMA)
    assert pq.read_schema(out).remove_metadata().equals(DETECTION_SCHEMA)


# --- real model ----------------------------------------------------------------------------------------


def test_runner_matches_ultralytics_predict(small_clip: Path, pose_weights: Path, cpu_cfg: PosesConfig):
    """Our batched direct path gives the same boxes and keypoints as YOLO.predict."""
    frames = [f.image for f in iter_frames(small_clip)][:4]
    cfg = cpu_cfg.model_copy(update={"precision": "fp32"})
    ours = PoseRunner(load_pose_model(str(pose_weights), "cpu"), cfg, "cpu")(frames)
    ref = load_pose_model(str(pose_weights), "cpu").predict([f[..., ::-1] for f in frames], imgsz=cfg.imgsz,
                                                            verbose=False)
    assert any(len(d) for d in ours)
    for o, r in zip(ours, ref, strict=True):
        assert len(o) == len(r.boxes)
        np.testing.assert_allclose(o.boxes, r.boxes.xyxy.numpy(), atol=0.05)
        np.testing.assert_allclose(o.keypoints, r.keypoints.data.numpy(), atol=0.05)


def test_bf16_keeps_keypoints_close_to_fp32(small_clip: Path, pose_weights: Path, cpu_cfg: PosesConfig):
    frames = [f.image for f in iter_frames(small_clip)][:4]
    out = {}
    for precision in ("fp32", "bf16"):
        cfg = cpu_cfg.model_copy(update={"precision": precision})
        runner = PoseRunner(load_pose_model(str(pose_weights), "cpu"), cfg, "cpu")
        assert runner.precision == precision
        out[precision] = runner(frames)
    for a, b in zip(out["fp32"], out["bf16"], strict=True):
        i, j = np.argmax(a.scores), np.argmax(b.scores)
        np.testing.assert_allclose(a.boxes[i], b.boxes[j], atol=4.0)
        both = (a.keypoints[i, :, 2] > 0.5) & (b.keypoints[j, :, 2] > 0.5)
        assert both.sum() >= 10
        assert np.median(np.abs(a.keypoints[i, both, :2] - b.keypoints[j, both, :2])) < 1.5


def test_resolve_precision():
    assert resolve_precision("fp32", "cpu", "poses.precision") == "fp32"
    assert resolve_precision("bf16", "cpu", "poses.precision") == "bf16"
    from dancepipe.hardware.precision import native_bf16

    # the oracle is the kernel's CPU flags, not dancepipe's own bf16 probe
    assert resolve_precision("auto", "cpu", "poses.precision") == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert native_bf16("cpu") == cpu_has_native_bf16()
    assert not native_bf16("meta")
    with pytest.raises(DancepipeError, match="poses.precision = 'bf16' but mps has no bf16 autocast"):
        resolve_precision("bf16", "mps", "poses.precision")
    with pytest.raises(DancepipeError, match="poses.precision = 'fp16' but this stage runs on cpu"):
        resolve_precision("fp16", "cpu", "poses.precision")


def test_no_person_video_is_an_error_and_writes_nothing(make_video, cpu_cfg: PosesConfig, tmp_path):
    yy, xx = np.mgrid[0:96, 0:128]
    frames = [np.stack([xx * 2 % 256, yy * 2 % 256, np.full_like(xx, 40 * i)], -1).astype(np.uint8) for i in range(6)]
    video = make_video("empty_room.mp4", frames)
    out = tmp_path / "poses" / "empty.parquet"
    with pytest.raises(DancepipeError, match=r"empty_room.mp4: no person was detected in any of its 6 frames"):
        extract_poses(video, out, cpu_cfg)
    assert not out.exists()
    assert not out.parent.exists() or not list(out.parent.iterdir())  # no temp file left


def test_extract_poses_small_clip_metadata(small_clip: Path, cpu_cfg: PosesConfig, pose_weights: Path, tmp_path):
    ticks: list[int] = []
    out = tmp_path / "p.parquet"
    summary = extract_poses(small_clip, out, cpu_cfg, progress=ticks.append)
    assert sum(ticks) == 12 and summary["frames"] == 12
    df, meta = read_table(out)
    assert sorted(df["frame"].unique()) == list(range(12))
    assert summary["most_people"] == df.groupby("frame").size().max() >= 2  # the subject and the bystander
    assert np.allclose(np.diff(df.groupby("frame")["timestamp"].first()), 1 / 30, atol=1e-3)
    assert meta["video"] == str(small_clip) and (meta["width"], meta["height"]) == (270, 480)
    assert meta["fps"] == pytest.approx(30) and meta["frame_count"] == 12
    assert meta["model_file"] == str(pose_weights) and meta["model_sha256"] == sha256_file(pose_weights)
    assert meta["precision"] == summary["precision"] in ("fp32", "bf16")
    assert set(meta["versions"]) == {"dancepipe", "ultralytics", "torch", "numpy", "av"}


def test_rotated_video_gives_upright_coordinates(small_clip: Path, cpu_cfg: PosesConfig, make_video, tmp_path):
    """A phone-style clip (stored sideways + display rotation) yields the same upright keypoints."""
    upright = [f.image for f in iter_frames(small_clip)][:4]
    sideways = make_video("phone.mp4", [np.ascontiguousarray(np.rot90(f, k=-1)) for f in upright], rotation=90)
    a = extract_poses(write_video(tmp_path / "up.mp4", upright), tmp_path / "a.parquet", cpu_cfg)
    b = extract_poses(sideways, tmp_path / "b.parquet", cpu_cfg)
    assert a["frames_with_person"] == b["frames_with_person"] == 4
    (da, _), (db, meta) = read_table(tmp_path / "a.parquet"), read_table(tmp_path / "b.parquet")
    assert (meta["width"], meta["height"]) == (270, 480)
    # the same person (the auto subject) in both
    sa, sb = (follow(d, 270, 480, Subject(video="x"), TrackingConfig()) for d in (da, db))
    ka, kb = columns_to_keypoints(sa), columns_to_keypoints(sb)
    both = np.isfinite(ka[..., 0]) & np.isfinite(kb[..., 0])
    assert both.sum() > 30
    assert np.median(np.abs(ka[both][:, :2] - kb[both][:, :2])) < 3.0  # pixels, after re-encoding twice


def test_stage_cli(small_clip: Path, pose_weights: Path, tmp_path, monkeypatch):
    from stages.poses import main

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"poses": {"model": str(pose_weights), "device": "cpu", "batch": 6}}))
    out = tmp_path / "data" / "poses" / "target.parquet"
    res = CliRunner().invoke(main, ["--video", str(small_clip), "--out", str(out), "--params", str(params)])
    assert res.exit_code == 0, res.output
    assert "12 frames, a person in 12" in res.output and "frames/s" in res.output
    assert read_table(out)[0]["frame"].nunique() == 12

    missing = tmp_path / "nope.mp4"
    res = CliRunner().invoke(main, ["--video", str(missing), "--out", str(tmp_path / "x.parquet"),
                                    "--params", str(params)])
    assert res.exit_code == 1 and "nope.mp4: video file does not exist" in res.output
    assert not (tmp_path / "x.parquet").exists()

    params.write_text(yaml.safe_dump({"poses": {"imgsz": 600}}))
    res = CliRunner().invoke(main, ["--video", str(small_clip), "--out", str(tmp_path / "y.parquet"),
                                    "--params", str(params)])
    assert res.exit_code == 1 and "'poses.imgsz' = 600 is invalid" in res.output


# --- demo clips (end to end) -----------------------------------------------------------------------------


@pytest.mark.slow
def test_demo_target_subject_is_the_foreground_person(demo_poses, demo_target_video: Path, pose_weights: Path):
    df, meta = read_table(demo_poses["target"])
    assert len(df) == 100 and df["frame"].tolist() == list(range(100))
    assert df["person_found"].all()
    assert (meta["width"], meta["height"], meta["fps"]) == (1080, 1920, pytest.approx(60))
    assert meta["model_sha256"] == sha256_file(pose_weights)

    # Every person the model sees, on a sample of frames: the subject's box is the large one,
    # the bystander (the other detection) is never chosen.
    cfg = PosesConfig(model=str(pose_weights), device="cpu")
    runner = PoseRunner(load_pose_model(str(pose_weights), "cpu"), cfg, "cpu")
    sample = {0, 33, 66, 99}
    frames = {f.index: f.image for f in iter_frames(demo_target_video) if f.index in sample}
    for t, det in zip(sorted(frames), runner([frames[t] for t in sorted(frames)]), strict=True):
        chosen = df.loc[t, ["box_x0", "box_y0", "box_x1", "box_y1"]].to_numpy(float)
        areas = (det.boxes[:, 2] - det.boxes[:, 0]) * (det.boxes[:, 3] - det.boxes[:, 1])
        assert len(det) >= 2  # the bystander is really there
        np.testing.assert_allclose(chosen, det.boxes[np.argmax(areas)], atol=0.5)
        others = np.delete(areas, np.argmax(areas))
        assert (others < 0.5 * areas.max()).all()
    heights = (df["box_y1"] - df["box_y0"]).to_numpy()
    assert (heights > 0.3 * 1920).all()  # a foreground person in every frame


def _check_keypoint_content(df):
    kps = columns_to_keypoints(df[df["person_found"]])
    x, y, c = kps[..., 0], kps[..., 1], kps[..., 2]
    finite = np.isfinite(x)
    assert (np.isfinite(y) == finite).all() and (np.isfinite(c) == finite).all()
    assert ((c[finite] >= 0.5) & (c[finite] <= 1)).all()
    assert not ((x == 0) & (y == 0)).any()
    assert ((df["score"][df["person_found"]] > 0) & (df["score"][df["person_found"]] <= 1)).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows give NaN, as wanted
        ankle = np.nanmean(y[:, LOWER], axis=1)
        hip = np.nanmean(y[:, HIPS], axis=1)
    both = np.isfinite(ankle) & np.isfinite(hip)
    assert both.sum() > 0.5 * len(kps)
    assert (ankle[both] > hip[both]).all()


@pytest.mark.slow
def test_demo_keypoints_are_plausible(demo_poses):
    for subject in ("target", "source"):
        df, _ = read_table(demo_poses[subject])
        _check_keypoint_content(df)
    src, meta = read_table(demo_poses["source"])
    assert len(src) == 230 and (meta["width"], meta["height"]) == (1768, 994)
    assert src["person_found"].sum() > 150
    assert np.allclose(np.diff(src["timestamp"]), 1 / 30, atol=2e-3)



def test_dvc_stage_lists_the_modules_and_params_it_uses(repo_root: Path):
    """dvc.yaml's poses stage depends on its command's code manifest, which holds every dancepipe module the
    stage imports (transitively)."""
    import ast

    from tools.dvc_deps import manifest

    stage = yaml.safe_load((repo_root / "dvc.yaml").read_text())["stages"]["poses"]["do"]
    assert stage["params"] == ["poses"]
    assert "--video data/videos/${key} --out data/poses/${key}.parquet" in stage["cmd"]
    assert "data/code/poses.json" in stage["deps"]
    seen, todo = set(), ["stages/poses.py"]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse((repo_root / path).read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dancepipe"):
                module = node.module.replace(".", "/")
                todo.append(f"{module}/__init__.py" if (repo_root / module).is_dir() else f"{module}.py")
    files = manifest("stages/poses.py", repo_root)["files"]
    missing = sorted(seen - set(files))
    assert missing == []

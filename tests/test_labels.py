"""The labels stage: train and transfer label directories, the stage CLI, the demo end to end."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from dancepipe.errors import DancepipeError
from dancepipe.pose.keypoints import KEYPOINT_COLUMNS, columns_to_keypoints, read_table
from dancepipe.pose.skeleton import DrawStyle
from dancepipe.transfer.labels import LabelsConfig, run_labels, write_label_images
from dancepipe.transfer.normalize import NormfitConfig, load_mapping, run_normfit
from dancepipe.transfer.profile import run_profile
from dancepipe.video.crop import CropTransform
from tests.fixtures.labels import depth_walk, write_frames_dir, write_pose_table

CFG = LabelsConfig()


@pytest.fixture
def synth(tmp_path: Path) -> dict[str, Path]:
    """Target (40 frames, frame 7 without a person) + frames dir; source (50 frames) + stats."""
    tgt = depth_walk(40, 1400, 1800, 900, 1200, x=540)
    found = np.ones(40, bool)
    found[7] = False
    src = depth_walk(50, 500, 800, 300, 420, x=900, seed=1)
    src_found = np.ones(50, bool)
    src_found[10:12] = False  # short dropout: filled by gap interpolation
    src_found[30:40] = False  # long dropout: stays empty
    paths = {
        "target": write_pose_table(tmp_path / "t.parquet", tgt, 1080, 1920, person_found=found),
        "source": write_pose_table(tmp_path / "s.parquet", src, 1768, 994, person_found=src_found),
        "frames": write_frames_dir(tmp_path / "frames", np.where(found[:, None, None], tgt, np.nan), 1080, 1920),
    }
    run_normfit(paths["target"], paths["source"], tmp_path / "stats.json", None, NormfitConfig())
    run_profile(paths["target"], tmp_path / "profile.json")
    paths["norm"] = tmp_path / "stats.json"
    paths["profile"] = tmp_path / "profile.json"
    return paths


def _label_files(d: Path) -> list[str]:
    return sorted(p.name for p in d.glob("[0-9]*.png"))


def test_train_labels_match_frames_and_transform(synth, tmp_path):
    out = tmp_path / "labels" / "train"
    r = run_labels("train", synth["target"], synth["frames"], out, CFG)
    assert r == {"kind": "train", "frames": 40, "drawn": 39, "width": 64, "height": 96}
    assert _label_files(out) == [f"{i:06d}.png" for i in range(40)]
    index, meta = read_table(out / "index.parquet")
    assert meta["kind"] == "train" and list(index.columns[:4]) == ["frame", "file", "timestamp", "person_found"]
    assert set(KEYPOINT_COLUMNS) <= set(index.columns)
    # keypoints are in label pixels: the frames' crop box (transform.json: x0, y0, crop_w, crop_h in the
    # pose table's pixels) scaled to the 64 x 96 label, worked out here from the file's numbers
    poses, _ = read_table(synth["target"])
    box = json.loads((synth["frames"] / "transform.json").read_text())
    xy = columns_to_keypoints(poses)[..., :2]
    expect = np.stack([(xy[..., 0] - box["x0"]) * 64 / box["crop_w"],
                       (xy[..., 1] - box["y0"]) * 96 / box["crop_h"]], axis=-1)
    np.testing.assert_allclose(columns_to_keypoints(index)[..., :2], expect, rtol=1e-5, equal_nan=True)
    # face boxes, by hand: a square of 0.1667 * 96 = 16 px (a multiple of 8) centred on the nose in label
    # pixels (the transform of the pose table's nose, computed above), shifted inside the 64 x 96 label
    assert index["face_ok"].sum() == 39 and (index["face_size"] == 16).all()
    ok = index["face_ok"].to_numpy()
    assert np.isnan(expect[~ok, 0, 0]).all()  # no face box exactly where there is no person
    nose = expect[ok, 0]
    corner = index.loc[ok, ["face_x0", "face_y0"]].to_numpy(float)
    centred = np.clip(nose - 8, 0, [64 - 16, 96 - 16])
    assert np.abs(corner - centred).max() <= 0.5
    # the frame without a person is recorded, black, not dropped
    row = index.iloc[7]
    assert not row["person_found"] and not row["face_ok"]
    assert not cv2.imread(str(out / "000007.png")).any()
    # labels are the frames' size and the ink sits on the subject (white box in the synthetic frames)
    for i in (0, 20, 33):
        lab = cv2.imread(str(out / f"{i:06d}.png"))
        img = cv2.imread(str(synth["frames"] / f"{i:06d}.jpg"))
        assert lab.shape == img.shape == (96, 64, 3)
        ink = lab.any(axis=2)
        on_subject = cv2.dilate((img.min(axis=2) > 200).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        assert (ink & on_subject).sum() / ink.sum() > 0.9
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet.shape == (4 * 96, 3 * 64, 3)


def test_transfer_labels_fill_short_gaps_and_keep_long_ones_empty(synth, tmp_path):
    out = tmp_path / "labels" / "transfer"
    r = run_labels("transfer", synth["source"], synth["frames"], out, CFG, norm=synth["norm"], profile=synth["profile"])
    assert r["frames"] == 50 and r["drawn"] == 40
    assert len(_label_files(out)) == 50
    index, meta = read_table(out / "index.parquet")
    assert meta["norm"] == str(synth["norm"]) and meta["transfer"]["smoothing"] == "savgol"
    found = index["person_found"].to_numpy()
    assert found[10:12].all() and not found[30:40].any()
    assert not cv2.imread(str(out / "000035.png")).any() and cv2.imread(str(out / "000011.png")).any()
    # normalised into the target's space: ankles land inside the target's usual range, in label pixels
    ank = columns_to_keypoints(index)[found][:, 15:17, 1].mean(axis=1)
    tr = CropTransform.load(synth["frames"] / "transform.json")
    tgt_kps = columns_to_keypoints(read_table(synth["target"])[0])
    tgt = tr.apply_points(tgt_kps[..., :2])[:, 15:17, 1].mean(axis=1)
    assert np.nanmin(tgt) - 1 < ank.min() < np.nanmin(tgt) + 3 and np.nanmax(tgt) - 3 < ank.max() < np.nanmax(tgt) + 1
    # contact sheet: rows of target frame | label | overlay for 4 evenly spaced labels with a person
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet is not None and sheet.shape == (4 * 96, 3 * 64, 3)
    with_person = np.flatnonzero(found)
    for k, i in enumerate(with_person[[0, 13, 26, 39]]):  # 40 labels with a person: 0, 13, 26 and 39 of them
        tile = sheet[96 * k:96 * (k + 1)]
        label = cv2.imread(str(out / f"{i:06d}.png"))
        np.testing.assert_array_equal(tile[:, 64:128], label)
        image, overlay = tile[24:, :64].astype(int), tile[24:, 128:].astype(int)  # below the caption
        ink = label[24:].any(axis=2)
        assert ink.sum() > 50
        np.testing.assert_array_equal(overlay[~ink], image[~ink])
        assert (np.abs(overlay[ink] - image[ink]).max(axis=1) > 0).mean() > 0.9


def test_parallel_and_serial_writing_give_identical_files(synth, tmp_path):
    index, _ = read_table(synth["target"])
    kps = columns_to_keypoints(index)[:12] / 15.0
    style = DrawStyle.for_height(96, 0.02, 0.012)
    files = [f"{i:06d}.png" for i in range(12)]
    digests = {}
    for name, workers in (("serial", 1), ("parallel", 3)):
        (tmp_path / name).mkdir()
        digests[name] = write_label_images(kps, files, tmp_path / name, 64, 96, style, workers, min_pixels_parallel=0)
    for f in files:
        assert (tmp_path / "serial" / f).read_bytes() == (tmp_path / "parallel" / f).read_bytes()
    # the digests the index records, in row order
    want = [hashlib.sha256((tmp_path / "serial" / f).read_bytes()).hexdigest() for f in files]
    assert digests["serial"] == digests["parallel"] == want and len(set(want)) > 6


def test_mismatched_frames_dir_is_rejected(synth, tmp_path):
    other = write_pose_table(tmp_path / "short.parquet", depth_walk(10, 1400, 1800, 900, 1200), 1080, 1920)
    with pytest.raises(DancepipeError, match=r"short.parquet: the pose table \(10 rows\) and .* \(40 frames\) disagree"):
        run_labels("train", other, synth["frames"], tmp_path / "out", CFG)
    assert not (tmp_path / "out").exists()


def test_a_label_with_too_few_joints_shows_no_person(synth, tmp_path):
    """A body mostly out of view (6 joints) is no person; 8 joints (labels.draw.min_joints) is one."""
    src = depth_walk(50, 500, 800, 300, 420, x=900, seed=1)
    src[20:30, :11] = np.nan      # ten frames of hips, knees and ankles only: too long a gap to fill in
    src[44:50, :5] = np.nan       # the last frames without the head: 12 joints
    src[44:50, 13:] = np.nan      # ... and without knees and ankles: 8 joints
    path = write_pose_table(tmp_path / "partial.parquet", src, 1768, 994)
    out = tmp_path / "labels" / "transfer"
    r = run_labels("transfer", path, synth["frames"], out, CFG, norm=synth["norm"], profile=synth["profile"])
    index, _ = read_table(out / "index.parquet")
    found = index["person_found"].to_numpy()
    assert not found[20:30].any() and found[:20].all() and found[30:].all()
    assert r["drawn"] == 40
    assert not cv2.imread(str(out / "000025.png")).any()  # drawn empty, not as a pair of legs
    assert cv2.imread(str(out / "000047.png")).any()
    assert columns_to_keypoints(index)[25].size and np.isnan(columns_to_keypoints(index)[25]).all()
    strict = LabelsConfig(draw={"min_joints": 9})
    run_labels("transfer", path, synth["frames"], tmp_path / "strict", strict, norm=synth["norm"], profile=synth["profile"])
    assert not read_table(tmp_path / "strict" / "index.parquet")[0]["person_found"].to_numpy()[44:50].any()


def test_a_source_with_nobody_in_it_is_rejected_at_labels_transfer(synth, tmp_path):
    """A source whose every frame lacks a person has no motion: one sentence, nothing written."""
    empty = write_pose_table(tmp_path / "nobody.parquet", depth_walk(20, 500, 800, 300, 420, x=900), 1768, 994,
                             person_found=np.zeros(20, bool))
    out = tmp_path / "labels" / "transfer"
    with pytest.raises(DancepipeError, match=r"nobody.parquet: no frame of the source shows a person \(20 frames\)"):
        run_labels("transfer", empty, synth["frames"], out, CFG, norm=synth["norm"], profile=synth["profile"])
    assert not out.exists() and not list(out.parent.glob(".*"))


# --------------------------------------------------------------------------- stage CLI

def _invoke(*args: str, params: Path):
    from stages.labels import main

    return CliRunner().invoke(main, [*args, "--params", str(params)])


def test_labels_stage_both_kinds(synth, tmp_path, repo_root):
    params = repo_root / "params.yaml"
    res = _invoke("--kind", "train", "--poses", str(synth["target"]), "--frames", str(synth["frames"]),
                  "--out", str(tmp_path / "train"), params=params)
    assert res.exit_code == 0, res.output
    assert "labels train: 40 labels (39 with a person) at 64x96" in res.output
    norm = tmp_path / "norm" / "stats.json"
    res = _invoke("--kind", "transfer", "--poses", str(synth["source"]), "--target-poses", str(synth["target"]),
                  "--frames", str(synth["frames"]), "--norm", str(norm), "--profile", str(synth["profile"]),
                  "--out", str(tmp_path / "transfer"), params=params)
    assert res.exit_code == 0, res.output
    assert len(_label_files(tmp_path / "transfer")) == 50
    for kind in ("train", "transfer"):  # each index records its PNGs' sha256 (dvc.yaml's deps name only it)
        index, _ = read_table(tmp_path / kind / "index.parquet")
        assert index["sha256"].tolist() == [hashlib.sha256((tmp_path / kind / f).read_bytes()).hexdigest()
                                            for f in index["file"]]
    # the transfer fits the pair's normalisation first, as the normfit of the fixture did
    assert 0 <= res.output.find("normfit: interpolate mapping, scale") < res.output.find("labels transfer: 50 labels")
    assert load_mapping(norm) == load_mapping(synth["norm"])
    # the PNGs show the skeletons: each body joint's dot in its colour where the keypoint is
    from tests.label_checks import assert_joints_drawn

    poses, _ = read_table(synth["target"])
    train_kps = CropTransform.load(synth["frames"] / "transform.json").apply_points(
        columns_to_keypoints(poses)[..., :2])
    for i in (0, 15, 39):  # train labels: at the target's keypoints mapped by the crop transform
        label = cv2.cvtColor(cv2.imread(str(tmp_path / "train" / f"{i:06d}.png")), cv2.COLOR_BGR2RGB)
        assert_joints_drawn(label, train_kps[i], min_joints=12)
    assert not cv2.imread(str(tmp_path / "train" / "000007.png")).any()  # no person in frame 7
    index, _ = read_table(tmp_path / "transfer" / "index.parquet")
    transfer_kps = columns_to_keypoints(index)
    for i in (0, 11, 25, 49):  # transfer labels: at the keypoints their index records
        label = cv2.cvtColor(cv2.imread(str(tmp_path / "transfer" / f"{i:06d}.png")), cv2.COLOR_BGR2RGB)
        assert_joints_drawn(label, transfer_kps[i], min_joints=12)


def _with(params: Path, old: str, new: str, path: Path) -> Path:
    text = params.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return path


def test_labels_stage_bad_inputs(synth, tmp_path, repo_root):
    params = repo_root / "params.yaml"
    out = tmp_path / "out"
    res = _invoke("--kind", "train", "--poses", str(synth["target"]), "--frames", str(tmp_path / "nope"),
                  "--out", str(out), params=params)
    assert res.exit_code == 1 and "nope: target frames directory does not exist" in res.output
    assert res.output.count("\n") == 1
    res = _invoke("--kind", "transfer", "--poses", str(synth["source"]), "--frames", str(synth["frames"]),
                  "--out", str(out), params=params)
    assert res.exit_code == 2 and "--target-poses, --norm and --profile are required with --kind transfer" in res.output
    res = _invoke("--kind", "train", "--poses", str(synth["target"]), "--frames", str(synth["frames"]),
                  "--norm", str(tmp_path / "n.json"), "--out", str(out), params=params)
    assert res.exit_code == 2 and "are only used with --kind transfer" in res.output
    norm = tmp_path / "norm.json"
    transfer = ("--kind", "transfer", "--poses", str(synth["source"]), "--target-poses", str(synth["target"]),
                "--frames", str(synth["frames"]), "--norm", str(norm), "--profile", str(synth["profile"]),
                "--out", str(out))
    bad = tmp_path / "params.yaml"
    bad.write_text(params.read_text().replace("smoothing: savgol", "smoothing: gaussian"))
    res = _invoke(*transfer, params=bad)
    assert res.exit_code == 1 and "labels.transfer.smoothing" in res.output and "'savgol'" in res.output
    assert not out.exists() and not norm.exists()
    # the normfit's params are checked before any work too
    res = _invoke(*transfer, params=_with(params, "  band: 0.15", "  bandwidth: 0.15", tmp_path / "nf.yaml"))
    assert res.exit_code == 1 and "normfit.bandwidth" in res.output and res.output.count("\n") == 1
    assert not out.exists() and not norm.exists()
    # labels_train reads labels.draw and labels.train only (what dvc.yaml lists for it)
    res = _invoke("--kind", "train", "--poses", str(synth["target"]), "--frames", str(synth["frames"]),
                  "--out", str(out), params=bad)
    assert res.exit_code == 0, res.output
    typo = tmp_path / "typo.yaml"
    typo.write_text(params.read_text().replace("  draw:", "  drawing:"))
    res = _invoke("--kind", "train", "--poses", str(synth["target"]), "--frames", str(synth["frames"]),
                  "--out", str(tmp_path / "out2"), params=typo)
    assert res.exit_code == 1 and "labels.drawing" in res.output


# --------------------------------------------------------------------------- demo end to end

def assert_contact_sheet(labels_dir: Path, frames_dir: Path | None, rows: int = 4) -> None:
    """contact_sheet.png is ``rows`` rows of frame | label | overlay (labels.*.contact_sheet_frames) for labels
    with a person spread evenly from the first to the last of them, in order. The label tile is that label's
    PNG; the overlay is the frame where the label has no ink and differs from it where it has; with
    ``frames_dir`` (train labels) the frame tile is the target frame of the label's number."""
    index, meta = read_table(labels_dir / "index.parquet")
    w, h = meta["width"], meta["height"]
    sheet = cv2.imread(str(labels_dir / "contact_sheet.png"))
    assert sheet.shape == (rows * h, 3 * w, 3)
    with_person = np.flatnonzero(index["person_found"].to_numpy())
    labels = [cv2.imread(str(labels_dir / index["file"].iloc[i])) for i in with_person]
    frame_files = None if frames_dir is None else read_table(frames_dir / "index.parquet")[0].set_index("frame")["file"]
    top = h // 8  # the caption is written over the top of the frame tile
    shown = []
    for k in range(rows):
        frame_tile, label_tile, overlay = np.split(sheet[k * h:(k + 1) * h], 3, axis=1)
        same = [j for j, label in enumerate(labels) if np.array_equal(label, label_tile)]
        assert same, f"row {k}: the label tile is no label with a person"
        shown.append(same[0])
        ink = label_tile[top:].any(axis=2)
        image, over = frame_tile[top:].astype(int), overlay[top:].astype(int)
        assert ink.sum() > 50, k
        np.testing.assert_array_equal(over[~ink], image[~ink])
        assert (np.abs(over[ink] - image[ink]).max(axis=1) > 0).mean() > 0.9, k
        if frame_files is not None:
            frame = cv2.imread(str(frames_dir / frame_files[index["frame"].iloc[with_person[shown[-1]]]]))
            np.testing.assert_array_equal(frame_tile[top:], frame[top:])
    evenly = np.arange(rows) * (len(labels) - 1) / (rows - 1)
    assert np.abs(np.array(shown) - evenly).max() <= 0.5, shown


@pytest.mark.slow
def test_demo_labels_end_to_end(demo_labels, demo_poses, demo_norm):
    stats = json.loads(demo_norm.read_text())
    assert stats["mapping"]["scale_far"] > 0 and stats["mapping"]["scale_close"] > 0
    for kind, poses in (("train", demo_poses["target"]), ("transfer", demo_poses["source"])):
        table, _ = read_table(poses)
        index, meta = read_table(demo_labels[kind] / "index.parquet")
        assert len(_label_files(demo_labels[kind])) == len(index) == len(table)
        assert index["person_found"].sum() >= 0.8 * table["person_found"].sum()
        assert_contact_sheet(demo_labels[kind], Path(meta["frames"]) if kind == "train" else None)
    # train labels overlap the person: most ink lies inside the subject's box (in label pixels)
    table, _ = read_table(demo_poses["target"])
    index, meta = read_table(demo_labels["train"] / "index.parquet")
    w, h = meta["width"], meta["height"]
    tr = CropTransform.load(Path(meta["frames"]) / "transform.json")
    pad = 0.03 * h
    fractions = []
    for i in np.flatnonzero(index["person_found"].to_numpy())[::10]:
        ink = cv2.imread(str(demo_labels["train"] / index["file"].iloc[i])).any(axis=2)
        box = table.iloc[i][["box_x0", "box_y0", "box_x1", "box_y1"]].to_numpy(float).reshape(2, 2)
        (u0, v0), (u1, v1) = tr.apply_points(box)
        inside = np.zeros((h, w), bool)
        inside[max(0, int(v0 - pad)):int(v1 + pad) + 1, max(0, int(u0 - pad)):int(u1 + pad) + 1] = True
        fractions.append((ink & inside).sum() / max(1, ink.sum()))
    assert np.median(fractions) > 0.9, fractions

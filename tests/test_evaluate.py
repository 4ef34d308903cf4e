"""Evaluation: known answers on synthetic data, the stage CLI, and every metric on the demo."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner

from dancepipe.errors import DancepipeError
from dancepipe.output.evaluate import (
    EvaluateConfig,
    evaluate_holdout,
    evaluate_transfer,
    run_holdout,
    run_transfer,
)
from dancepipe.output.metrics import PSNR_CAP
from dancepipe.output.render import RenderConfig, run_render
from dancepipe.pose.keypoints import KEYPOINT_COLUMNS, KP
from dancepipe.video.images import read_rgb
from tests.conftest import write_video
from tests.fixtures.render import sway_keypoints, write_labels_dir, write_tiny_generator

torch.set_num_threads(2)
W, H, N = 64, 96, 8
HOLDOUT = [4, 5, 6, 7]
TRAIN = [0, 1, 2, 3]

# valid range of every metric written to metrics/*.json
SCORE_RANGES = {
    "ssim": (-1, 1), "ssim_box": (-1, 1), "ssim_face": (-1, 1), "psnr": (0, PSNR_CAP), "psnr_box": (0, PSNR_CAP),
    "psnr_face": (0, PSNR_CAP), "pose_distance": (0, 10), "no_person_rate": (0, 1), "warp_error": (0, 1),
}
RANGES = {
    **SCORE_RANGES, **{f"baseline_{k}": v for k, v in SCORE_RANGES.items()},
    "detection_rate": (0, 1), "warp_error_real": (0, 1), "frames": (1, 10**6), "face_frames": (0, 10**6),
    "baseline_frames": (0, 10**6), "baseline_match_distance": (0, 10), "person_frames": (1, 10**6),
    "person_less_frames": (0, 10**6), "substituted_frames": (0, 10**6), "trimmed_frames": (0, 10**6),
    "empty_label_frames_generated": (0, 0), "coverage_threshold": (0, 10), "covered_frames": (0, 10**6),
    "pose_distance_covered": (0, 10), "pose_distance_uncovered": (0, 10), "coverage_frames": (0, 10**6),
    "far_frames": (0, 10**6), "far_share": (0, 1),
    **{f"pose_distance_{part}": (0, 10) for part in ("head", "torso", "arms", "legs")},
    **{f"far_parts.{part}": (0, 1) for part in ("head", "torso", "arms", "legs")},
}
EVAL_KEYS = {"frames", "face_frames", "warp_error_real", "baseline_frames", "baseline_match_distance",
             *SCORE_RANGES, *(f"baseline_{k}" for k in SCORE_RANGES)}
TRANSFER_KEYS = {"frames", "pose_distance", "detection_rate", "warp_error", "person_frames", "person_less_frames",
                 "substituted_frames", "trimmed_frames", "empty_label_frames_generated", "coverage_threshold",
                 "coverage_frames", "covered_frames", "pose_distance_covered", "pose_distance_uncovered",
                 "far_frames", "far_share", "far_parts", "pose_distance_head",
                 "pose_distance_torso", "pose_distance_arms", "pose_distance_legs"}


class LabelEcho(torch.nn.Module):
    """G(label, prev) = label: with real frames equal to the labels the answer is known."""

    def forward(self, label, prev):
        return label.clone()


class Blank(torch.nn.Module):
    """G(label, prev) = black: pictures of nobody."""

    def forward(self, label, prev):
        return torch.full_like(label, -1.0)


class NoisyEcho(torch.nn.Module):
    """G(label, prev) = label + ``strength`` x one fixed noise pattern: as the strength grows, no pixel moves
    closer to the real frame (the label) and most move away."""

    def __init__(self, strength: float) -> None:
        super().__init__()
        self.strength = strength

    def forward(self, label, prev):
        noise = torch.randn(label.shape, generator=torch.Generator().manual_seed(0))
        return (label + self.strength * noise).clamp(-1, 1)


@pytest.fixture(scope="module")
def pose_model(pose_weights):
    from dancepipe.pose.estimator import load_pose_model

    return load_pose_model(str(pose_weights), "cpu")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_inputs")
    kps = sway_keypoints(N, W, H)
    labels = write_labels_dir(root / "labels", kps, W, H)
    frames = root / "frames"
    frames.mkdir()
    # lossless copies of the labels as the "real" frames
    rows = []
    for i in range(N):
        (frames / f"{i:06d}.png").write_bytes((labels / f"{i:06d}.png").read_bytes())
        rows.append({"frame": i, "file": f"{i:06d}.png", "timestamp": i / 10, "person_found": True})
    pd.DataFrame(rows).to_parquet(frames / "index.parquet", index=False)
    gen = write_tiny_generator(root / "generator.pt", holdout=HOLDOUT, train=[0, 1, 2, 3])
    clip = write_video(root / "src.mp4", [np.full((48, 64, 3), 20 * i, np.uint8) for i in range(N)], fps=10)
    video = root / "transfer.mp4"
    run_render(RenderConfig(device="cpu", preset="ultrafast"), generator_path=gen, face_path=None, labels_dir=labels,
               source_video=clip, source_poses=None, out=video, side_by_side_out=None)
    return {"root": root, "labels": labels, "frames": frames, "generator": gen, "video": video}


def test_perfect_reconstruction_scores_ssim_one_psnr_cap_and_real_warp_error(data, pose_model):
    cfg = EvaluateConfig(sample_frames=2, imgsz=128)
    ev = evaluate_holdout(LabelEcho(), pose_model, cfg, frames_dir=data["frames"], labels_dir=data["labels"],
                          holdout_frames=HOLDOUT, train_frames=TRAIN)
    s = ev.summary
    assert s["frames"] == len(HOLDOUT) and s["face_frames"] == len(HOLDOUT)
    assert s["ssim"] == pytest.approx(1.0) and s["ssim_box"] == pytest.approx(1.0)
    assert s["ssim_face"] == pytest.approx(1.0) and s["psnr_face"] == PSNR_CAP
    assert s["psnr"] == PSNR_CAP and s["psnr_box"] == PSNR_CAP
    assert s["warp_error"] == pytest.approx(s["warp_error_real"])
    assert list(ev.per_frame["frame"]) == HOLDOUT
    assert math.isnan(ev.per_frame["warp_error"].iloc[0]) and ev.per_frame["warp_error"].iloc[1:].notna().all()
    assert [f for f, _ in ev.samples] == [4, 7] and len(ev.samples[0][1]) == 4  # label | generated | baseline | real
    assert set(ev.per_frame["baseline_frame"]) <= set(TRAIN) and s["baseline_frames"] == len(HOLDOUT)


def test_a_worse_generator_scores_worse(data, pose_model):
    """The echo, the echo with mild noise, with strong noise: each scores below the one before on every image
    measure; the untrained network scores below the echo."""
    from dancepipe.model.checkpoint import load_generator

    g, _ = load_generator(data["generator"])
    cfg = EvaluateConfig(sample_frames=0, imgsz=128)
    summaries = [evaluate_holdout(gen, pose_model, cfg, frames_dir=data["frames"], labels_dir=data["labels"],
                                  holdout_frames=HOLDOUT, train_frames=TRAIN).summary
                 for gen in (LabelEcho(), NoisyEcho(0.05), NoisyEcho(0.3), g)]
    for k in ("ssim", "psnr", "ssim_box", "psnr_box", "ssim_face", "psnr_face"):
        echo, mild, strong, untrained = (s[k] for s in summaries)
        assert echo > mild > strong and echo > untrained, (k, echo, mild, strong, untrained)


def test_a_blank_generator_finds_nobody_and_scores_the_psnr_worked_out_by_hand(data, pose_model):
    """Black frames: the pose model finds nobody (no-person rate 1, no pose distance), nothing moves from one
    frame to the next (warp error 0), and the PSNR against real frame r is 10 log10(255^2 / mean(r^2))."""
    ev = evaluate_holdout(Blank(), pose_model, EvaluateConfig(sample_frames=0, imgsz=128), frames_dir=data["frames"],
                          labels_dir=data["labels"], holdout_frames=HOLDOUT, train_frames=TRAIN)
    s = ev.summary
    assert s["no_person_rate"] == 1.0 and s["pose_distance"] is None
    assert list(ev.per_frame["person_found"]) == [0] * len(HOLDOUT)
    assert s["warp_error"] == 0.0
    real = [cv2.imread(str(data["frames"] / f"{i:06d}.png")).astype(float) for i in HOLDOUT]
    by_hand = [10 * math.log10(255**2 / np.mean(r**2)) for r in real]
    np.testing.assert_allclose(ev.per_frame["psnr"], by_hand, rtol=1e-12)
    assert s["psnr"] == pytest.approx(np.mean(by_hand), rel=1e-12)


def test_holdout_frames_missing_from_the_data_are_reported(data, pose_model):
    from dancepipe.errors import DancepipeError

    with pytest.raises(DancepipeError, match="held-out frames are missing, e.g. frame 99"):
        evaluate_holdout(LabelEcho(), pose_model, EvaluateConfig(), frames_dir=data["frames"],
                         labels_dir=data["labels"], holdout_frames=[7, 99], train_frames=TRAIN)
    with pytest.raises(DancepipeError, match="training frames are missing, e.g. frame 50"):
        evaluate_holdout(LabelEcho(), pose_model, EvaluateConfig(), frames_dir=data["frames"],
                         labels_dir=data["labels"], holdout_frames=[7], train_frames=[0, 50])
    with pytest.raises(DancepipeError, match="no held-out frames"):
        evaluate_holdout(LabelEcho(), pose_model, EvaluateConfig(), frames_dir=data["frames"],
                         labels_dir=data["labels"], holdout_frames=[], train_frames=TRAIN)
    with pytest.raises(DancepipeError, match="lists no training frames"):
        evaluate_holdout(LabelEcho(), pose_model, EvaluateConfig(), frames_dir=data["frames"],
                         labels_dir=data["labels"], holdout_frames=HOLDOUT, train_frames=[])


def _patch_index(labels: Path, **rows: dict[int, object]) -> None:
    """Overwrite columns of some rows of a labels index (``rows`` maps column → {row: value})."""
    index = pd.read_parquet(labels / "index.parquet")
    for col, values in rows.items():
        for r, v in values.items():
            index.loc[r, col] = v
    index.to_parquet(labels / "index.parquet", index=False)


def _no_person(labels: Path, rows: list[int]) -> None:
    """Make label ``rows`` person-less, as the labels stage writes them: black image, NaN keypoints, no face."""
    index = pd.read_parquet(labels / "index.parquet")
    for r in rows:
        index.loc[r, "person_found"] = False
        index.loc[r, "face_ok"] = False
        index.loc[r, KEYPOINT_COLUMNS] = np.nan
        cv2.imwrite(str(labels / index.loc[r, "file"]), np.zeros((H, W, 3), np.uint8))
    index.to_parquet(labels / "index.parquet", index=False)


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    """Training frames 0-3 with four different arm heights; held-out frames whose nearest training
    frame is known: 4 = copy of 2, 5 = copy of 0, 6 = frame 3 moved 6 px right, 7 = copy of 1,
    8 = no person. Real frames are lossless copies of the labels. Frame 7 has no face box."""
    root = tmp_path_factory.mktemp("eval_known")
    train = sway_keypoints(4, W, H)
    for t, lift in enumerate((0, 24, 12, 36)):
        for name, dy in (("left_elbow", lift / 2), ("right_elbow", lift / 2), ("left_wrist", lift),
                         ("right_wrist", lift)):
            train[t, KP[name], 1] -= dy
    moved = train[3].copy()
    moved[:, 0] += 6
    kps = np.concatenate([train, np.stack([train[2], train[0], moved, train[1], train[0]])])
    labels = write_labels_dir(root / "labels", kps, W, H)
    _no_person(labels, [8])
    _patch_index(labels, face_ok={7: False})
    frames = root / "frames"
    frames.mkdir()
    for i in range(len(kps)):
        (frames / f"{i:06d}.png").write_bytes((labels / f"{i:06d}.png").read_bytes())
    pd.DataFrame({"frame": range(len(kps)), "file": [f"{i:06d}.png" for i in range(len(kps))]}).to_parquet(
        frames / "index.parquet", index=False)
    return {"labels": labels, "frames": frames}


def test_baseline_shows_the_training_frame_with_the_closest_pose_scored_like_the_generator(known, pose_model):
    ev = evaluate_holdout(LabelEcho(), pose_model, EvaluateConfig(sample_frames=5, imgsz=128),
                          frames_dir=known["frames"], labels_dir=known["labels"], holdout_frames=[4, 5, 6, 7, 8],
                          train_frames=[0, 1, 2, 3])
    df = ev.per_frame.set_index("frame")
    assert df["baseline_frame"].tolist()[:4] == [2, 0, 3, 1] and pd.isna(df.loc[8, "baseline_frame"])
    np.testing.assert_allclose(df["baseline_match_distance"].iloc[:4], 0.0, atol=1e-6)  # float32 keypoints
    # copies of a training frame: the baseline shows the real frame itself
    for f in (4, 5, 7):
        assert df.loc[f, "baseline_ssim"] == pytest.approx(1.0) and df.loc[f, "baseline_psnr"] == PSNR_CAP
        assert df.loc[f, "baseline_ssim_box"] == pytest.approx(1.0)
        # same image as the generator's (LabelEcho gives the real frame): same pose-model verdict
        assert df.loc[f, "baseline_person_found"] == df.loc[f, "person_found"]
        a, b = df.loc[f, "baseline_pose_distance"], df.loc[f, "pose_distance"]
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b)
    # same position matters for the image metrics: the moved copy scores below 1
    assert df.loc[6, "baseline_ssim"] < 0.99 and df.loc[6, "baseline_psnr"] < 40
    # the warping error uses the real frames' flow for both: identical images give identical errors
    assert math.isnan(df.loc[4, "baseline_warp_error"])
    assert df.loc[5, "baseline_warp_error"] == pytest.approx(df.loc[5, "warp_error"])
    assert df.loc[5, "warp_error"] == pytest.approx(df.loc[5, "warp_error_real"])
    assert df.loc[[6, 7], "baseline_warp_error"].notna().all()
    # a held-out frame with no pose has no baseline
    assert df.loc[8, ["baseline_ssim", "baseline_ssim_face", "baseline_warp_error"]].isna().all()
    assert pd.isna(df.loc[8, "baseline_person_found"])
    # face box: scored where recorded, NaN without one
    assert df.loc[[4, 5, 6], "ssim_face"].tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert df.loc[[4, 5], "baseline_ssim_face"].tolist() == pytest.approx([1.0, 1.0])
    assert df.loc[[7, 8], ["ssim_face", "psnr_face", "baseline_ssim_face", "baseline_psnr_face"]].isna().all().all()
    s = ev.summary
    assert s["frames"] == 5 and s["face_frames"] == 3 and s["baseline_frames"] == 4
    assert s["baseline_ssim_face"] == pytest.approx(df.loc[[4, 5, 6], "baseline_ssim_face"].mean())
    assert s["baseline_ssim"] == pytest.approx(df.loc[[4, 5, 6, 7], "baseline_ssim"].mean())
    assert s["ssim"] == pytest.approx(1.0) and s["baseline_ssim"] < 1.0
    # the sample panels: label | generated | baseline | real, the baseline panel is training frame 2's image
    panels = dict(ev.samples)[4]
    assert len(panels) == 4
    np.testing.assert_array_equal(panels[2], read_rgb(known["frames"] / "000002.png"))
    assert not dict(ev.samples)[8][2].any()  # no match: a black panel


@pytest.fixture(scope="module")
def gappy(tmp_path_factory):
    """8 transfer labels, rows 0, 3 and 7 without a person."""
    root = tmp_path_factory.mktemp("eval_gaps")
    labels = write_labels_dir(root / "labels", sway_keypoints(N, W, H, seed=3), W, H)
    _no_person(labels, [0, 3, 7])
    images = [read_rgb(labels / f"{i:06d}.png") for i in range(N)]
    return {"root": root, "labels": labels, "images": images}


# rule → (video rows as render shows them, generated flags): derived by hand from rows 0, 3, 7 being empty
GAP_PLANS = {
    "trim": ([1, 2, 2, 4, 5, 6], [1, 1, 0, 1, 1, 1]),
    "hold": ([1, 1, 2, 2, 4, 5, 6, 6], [0, 1, 1, 0, 1, 1, 1, 0]),
    "blank": ([None, 1, 2, None, 4, 5, 6, None], [0, 1, 1, 0, 1, 1, 1, 0]),
}


@pytest.mark.parametrize("rule", sorted(GAP_PLANS))
def test_transfer_maps_video_frames_to_labels_through_the_empty_rule(gappy, pose_model, tmp_path, rule):
    shown, generated = GAP_PLANS[rule]
    black = np.zeros((H, W, 3), np.uint8)
    video = write_video(tmp_path / "t.mp4", [black if r is None else gappy["images"][r] for r in shown], fps=10)
    ev = evaluate_transfer(pose_model, EvaluateConfig(imgsz=128, sample_frames=2), labels_dir=gappy["labels"],
                           video=video, empty_rule=rule)
    df = ev.per_frame
    label_rows = list(range(1, 7)) if rule == "trim" else list(range(N))
    assert df["frame"].tolist() == label_rows
    assert df["generated"].tolist() == generated
    assert df["label_person"].tolist() == [int(r not in (0, 3, 7)) for r in label_rows]
    assert (df["person_found"].notna() == df["generated"].astype(bool)).all()  # detection on generated frames only
    both = [j for j in range(1, len(generated)) if generated[j] and generated[j - 1]]
    assert df["warp_error"].notna().tolist() == [j in both for j in range(len(generated))]
    s = ev.summary
    assert s["frames"] == len(shown) and s["person_frames"] == 5 and s["person_less_frames"] == 3
    assert s["substituted_frames"] == generated.count(0) and s["trimmed_frames"] == (2 if rule == "trim" else 0)
    assert s["empty_label_frames_generated"] == 0
    assert s["detection_rate"] == pytest.approx((df["person_found"] == 1).sum() / 5)
    assert [f for f, _ in ev.samples] == [1, 6]  # samples are generated frames


def test_transfer_video_with_the_wrong_frame_count_for_the_rule_is_an_error(gappy, pose_model, tmp_path):
    from dancepipe.errors import DancepipeError

    video = write_video(tmp_path / "all.mp4", gappy["images"], fps=10)  # one frame per label, as hold/blank
    with pytest.raises(DancepipeError, match=r"all.mp4: has 8 frames but .* gives 6 output frames under "
                                             r"render.empty = trim .*rerun the render stage"):
        evaluate_transfer(pose_model, EvaluateConfig(imgsz=128), labels_dir=gappy["labels"], video=video)
    ev = evaluate_transfer(pose_model, EvaluateConfig(imgsz=128), labels_dir=gappy["labels"], video=video,
                           empty_rule="hold")
    assert ev.summary["frames"] == 8


def _check_outputs(metrics_dir: Path, holdout_page: Path, transfer_page: Path, expect_curves: bool) -> dict:
    ev = json.loads((metrics_dir / "eval.json").read_text())
    tr = json.loads((metrics_dir / "transfer.json").read_text())
    assert set(ev) == EVAL_KEYS
    assert set(tr) == TRANSFER_KEYS
    parts = tr.get("far_parts") or {}
    for d in (ev, {k: v for k, v in tr.items() if k != "far_parts"}, {f"far_parts.{p}": v for p, v in parts.items()}):
        for k, v in d.items():
            if v is not None:
                lo, hi = RANGES[k]
                assert lo <= v <= hi, (k, v)
    for name in ("eval_per_frame.csv", "transfer_per_frame.csv"):
        df = pd.read_csv(metrics_dir / name)
        assert df.columns[0] == "frame" and df["frame"].is_monotonic_increasing
    per_frame = pd.read_csv(metrics_dir / "eval_per_frame.csv")
    assert {"ssim_face", "psnr_face", "baseline_frame", "baseline_ssim", "baseline_ssim_face",
            "baseline_pose_distance", "baseline_warp_error"} <= set(per_frame.columns)
    assert {"label_person", "generated"} <= set(pd.read_csv(metrics_dir / "transfer_per_frame.csv").columns)
    for page in (holdout_page, transfer_page):
        text = page.read_text()
        assert text.startswith("<!doctype html>") and "data:image/png;base64," in text
        assert "http://" not in text and "https://" not in text  # nothing to fetch
    text = holdout_page.read_text()
    assert "<th>generator</th><th>nearest-neighbour baseline</th>" in text
    assert "label | generated | baseline | real" in text and "Transfer video" not in text
    assert ("training curves" in text) and (("No training curves" in text) != expect_curves)
    text = transfer_page.read_text()
    assert "Transfer video" in text and "Self-reenactment" not in text and "Training curves" not in text
    return {"eval": ev, "transfer": tr}


def _holdout_args(data, tmp_path: Path, labels: Path | None = None) -> list[str]:
    return ["--generator", str(data["generator"]), "--face", str(tmp_path / "no_face.pt"), "--frames",
            str(data["frames"]), "--labels", str(labels or data["labels"]), "--metrics-dir",
            str(tmp_path / "metrics"), "--report", str(tmp_path / "held-out.html")]


def _transfer_args(data, tmp_path: Path, labels: Path | None = None, video: Path | None = None) -> list[str]:
    return ["--labels", str(labels or data["labels"]), "--video", str(video or data["video"]),
            "--metrics-dir", str(tmp_path / "metrics"), "--report", str(tmp_path / "pair.html")]


def test_stage_cli_writes_metrics_plots_and_report(data, tmp_path, pose_weights):
    from stages.evaluate import main as holdout_main
    from stages.evaluate_transfer import main as transfer_main

    curves = tmp_path / "dvclive"
    (curves / "loss").mkdir(parents=True)
    (curves / "loss" / "g.tsv").write_text("timestamp\tstep\tg\n0\t0\t1.0\n0\t1\t0.5\n")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"evaluate": {"device": "cpu", "pose_model": str(pose_weights),
                                                   "imgsz": 128, "sample_frames": 2}}))
    held = [*_holdout_args(data, tmp_path), "--params", str(params)]
    trans = [*_transfer_args(data, tmp_path), "--params", str(params)]
    # an unknown render.empty rule is a usage error
    res = CliRunner().invoke(transfer_main, [*trans, "--empty", "skip"])
    assert res.exit_code == 2 and "hold" in res.output and "trim" in res.output
    # face model missing: one sentence, exit 1, nothing written
    res = CliRunner().invoke(holdout_main, held)
    assert res.exit_code == 1 and "no_face.pt: face model does not exist" in res.output
    assert not (tmp_path / "metrics").exists() and not (tmp_path / "held-out.html").exists()
    # face off in params: runs and writes everything
    params.write_text(yaml.safe_dump({"evaluate": {"device": "cpu", "pose_model": str(pose_weights),
                                                   "imgsz": 128, "sample_frames": 2, "face": False}}))
    res = CliRunner().invoke(holdout_main, [*held, "--train-curves", str(curves), "--name", "me"])
    assert res.exit_code == 0, res.output
    assert "evaluate me: held-out 4 frames" in res.output and "baseline" in res.output
    res = CliRunner().invoke(transfer_main, [*trans, "--empty", "hold", "--name", "me-walk"])
    assert res.exit_code == 0, res.output
    assert "evaluate me-walk: 8 frames" in res.output
    _check_outputs(tmp_path / "metrics", tmp_path / "held-out.html", tmp_path / "pair.html", expect_curves=True)
    assert "<title>dancepipe: me-walk</title>" in (tmp_path / "pair.html").read_text()


def _strict_json(path: Path) -> dict:
    """``path`` parsed as strict JSON: NaN, Infinity and -Infinity (which Python writes by default) fail."""

    def refuse(token: str):
        raise AssertionError(f"{path.name}: {token} is not JSON")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def test_figures_that_cannot_be_computed_are_written_as_null(data, tmp_path, pose_weights):
    """No person found anywhere (a detection score of 0.99 is out of reach for these tiny frames)
    and no face box in the held-out frames: the pose and face figures are null, present, and
    the files are strict JSON; every other figure is a finite number."""
    from dancepipe.advice.coverage import Repertoire, measure_coverage, write_coverage
    from dancepipe.pose.keypoints import columns_to_keypoints, read_index
    from stages.evaluate import main as holdout_main
    from stages.evaluate_transfer import main as transfer_main

    labels = tmp_path / "labels"
    shutil.copytree(data["labels"], labels)
    _patch_index(labels, face_ok=dict.fromkeys(HOLDOUT, False))
    kps = columns_to_keypoints(read_index(labels, "labels"))
    write_coverage(labels, measure_coverage(kps, Repertoire(kps[TRAIN], 0.01)))  # as the labels stage writes it
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"evaluate": {"device": "cpu", "pose_model": str(pose_weights), "imgsz": 128,
                                                   "det_conf": 0.99, "sample_frames": 0, "face": False}}))
    res = CliRunner().invoke(holdout_main, [*_holdout_args(data, tmp_path, labels), "--params", str(params)])
    assert res.exit_code == 0, res.output
    assert "pose distance n/a" in res.output
    res = CliRunner().invoke(transfer_main, [*_transfer_args(data, tmp_path, labels), "--params", str(params)])
    assert res.exit_code == 0, res.output
    assert "pose distance n/a" in res.output
    ev, tr = _strict_json(tmp_path / "metrics" / "eval.json"), _strict_json(tmp_path / "metrics" / "transfer.json")
    assert set(ev) == EVAL_KEYS and set(tr) == TRANSFER_KEYS  # nothing left out
    null_eval = {"pose_distance", "baseline_pose_distance", "ssim_face", "psnr_face", "baseline_ssim_face",
                 "baseline_psnr_face"}
    assert {k for k, v in ev.items() if v is None} == null_eval
    assert {k for k, v in tr.items() if v is None} == {"pose_distance", "pose_distance_covered",
                                                       "pose_distance_uncovered", "pose_distance_head",
                                                       "pose_distance_torso", "pose_distance_arms",
                                                       "pose_distance_legs"}
    assert set(tr["far_parts"]) == {"head", "torso", "arms", "legs"}
    for d in (ev, {k: v for k, v in tr.items() if k != "far_parts"}, tr["far_parts"]):
        assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in d.values() if v is not None)
    assert ev["no_person_rate"] == 1.0 and ev["baseline_no_person_rate"] == 1.0 and ev["face_frames"] == 0
    assert tr["detection_rate"] == 0.0 and tr["person_frames"] == N
    # the per-frame tables leave those cells empty
    per_frame = pd.read_csv(tmp_path / "metrics" / "eval_per_frame.csv", keep_default_na=False)
    assert (per_frame[["pose_distance", "ssim_face", "baseline_pose_distance"]] == "").all().all()


def test_stage_cli_rejects_a_video_that_does_not_match_the_labels(data, tmp_path, pose_weights):
    from stages.evaluate_transfer import main

    short = write_video(tmp_path / "short.mp4", [np.zeros((H, W, 3), np.uint8)] * 3, fps=10)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"evaluate": {"device": "cpu", "pose_model": str(pose_weights),
                                                   "imgsz": 128, "face": False}}))
    res = CliRunner().invoke(main, [*_transfer_args(data, tmp_path, video=short), "--params", str(params)])
    assert res.exit_code == 1
    assert "short.mp4: has 3 frames but" in res.output and "rerun the render stage" in res.output
    assert not (tmp_path / "metrics").exists()


def test_transfer_coverage_splits_the_pose_distance_by_the_coverage_the_labels_stage_wrote(data, tmp_path,
                                                                                           pose_model):
    """coverage.json from a repertoire holding exactly the poses of label rows 0-3 (threshold ~0): those rows are
    at distance 0 and covered, the swaying rows 4-7 are not; each pose distance is reported on its side."""
    from dancepipe.advice.coverage import Repertoire, measure_coverage, write_coverage
    from dancepipe.pose.keypoints import columns_to_keypoints, read_index

    labels = tmp_path / "labels"
    shutil.copytree(data["labels"], labels)
    kps = columns_to_keypoints(read_index(labels, "labels"))
    write_coverage(labels, measure_coverage(kps, Repertoire(kps[:4], 1e-9)))
    ev = evaluate_transfer(pose_model, EvaluateConfig(imgsz=128), labels_dir=labels, video=data["video"])
    df = ev.per_frame
    assert df["covered"].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    np.testing.assert_allclose(df["nearest_training_pose"][:4], 0, atol=1e-12)
    assert (df["nearest_training_pose"][4:] > 1e-3).all()
    t = ev.summary
    assert t["covered_frames"] == 4 and t["coverage_threshold"] == 1e-9
    assert any("Coverage: 4 of 8 generated frames" in n for n in ev.notes)
    plain = evaluate_transfer(pose_model, EvaluateConfig(imgsz=128), labels_dir=data["labels"], video=data["video"])
    assert plain.summary["covered_frames"] is None and plain.per_frame["covered"].isna().all()
    assert plain.summary["pose_distance"] == t["pose_distance"]  # coverage never changes the main figure
    # a coverage.json of another labels directory (other rows) is refused, not misread
    write_coverage(labels, measure_coverage(kps[:5], Repertoire(kps[:4], 1e-9)))
    with pytest.raises(DancepipeError, match="coverage.json has 5 rows for 8 labels"):
        evaluate_transfer(pose_model, EvaluateConfig(imgsz=128), labels_dir=labels, video=data["video"])


def test_coverage_figures_average_the_pose_distance_on_each_side_of_the_split():
    """(The tiny test generator's frames show nobody, so the split's averages are checked on a table.) Far frames
    are the generated ones whose nearest training pose is further than FAR_DISTANCE."""
    from dancepipe.advice.coverage import FAR_DISTANCE, Coverage
    from dancepipe.output.evaluate import COVERAGE_KEYS, _coverage_summary

    df = pd.DataFrame({"pose_distance": [0.1, 0.2, np.nan, 0.4, 0.3, np.nan],
                       "generated": [1, 1, 1, 1, 1, 0],
                       "nearest_training_pose": [0.01, 0.07, 0.01, FAR_DISTANCE + 0.1, np.nan, FAR_DISTANCE + 1],
                       "covered": pd.array([1, 0, 1, 0, pd.NA, pd.NA], dtype="Int64")})
    parts = {p: np.zeros(6) for p in ("head", "torso", "arms", "legs")}
    got = _coverage_summary(df, Coverage(0.05, df["nearest_training_pose"].to_numpy(), parts))
    assert {k: got[k] for k in COVERAGE_KEYS if k != "far_parts"} == {
        "coverage_threshold": 0.05, "coverage_frames": 4, "covered_frames": 2, "pose_distance_covered": pytest.approx(0.1),
        "pose_distance_uncovered": pytest.approx(0.3), "far_frames": 1, "far_share": pytest.approx(1 / 4)}
    assert set(_coverage_summary(df, None).values()) == {None}


def test_the_stage_reports_the_coverage_the_labels_stage_measured(data, tmp_path, pose_weights):
    """With coverage.json in the labels directory the stage prints and writes the coverage figures; without
    (a target whose held-out tail showed nobody) they are null and nothing is printed."""
    from dancepipe.advice.coverage import Repertoire, measure_coverage, write_coverage
    from dancepipe.output.evaluate import COVERAGE_KEYS
    from dancepipe.pose.keypoints import columns_to_keypoints, read_index
    from stages.evaluate_transfer import main

    labels = tmp_path / "labels"
    shutil.copytree(data["labels"], labels)
    kps = columns_to_keypoints(read_index(labels, "labels"))
    write_coverage(labels, measure_coverage(kps, Repertoire(kps[TRAIN], 0.01)))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"evaluate": {"device": "cpu", "pose_model": str(pose_weights), "imgsz": 128,
                                                   "face": False}}))
    res = CliRunner().invoke(main, [*_transfer_args(data, tmp_path, labels=labels), "--params", str(params)])
    assert res.exit_code == 0, res.output
    assert "coverage transfer:" in res.output
    tr = json.loads((tmp_path / "metrics" / "transfer.json").read_text())
    assert tr["coverage_threshold"] == 0.01 and tr["covered_frames"] >= len(TRAIN)  # training poses: distance 0
    res = CliRunner().invoke(main, [*_transfer_args(data, tmp_path), "--params", str(params)])
    assert res.exit_code == 0, res.output
    tr = json.loads((tmp_path / "metrics" / "transfer.json").read_text())
    assert {k: tr[k] for k in COVERAGE_KEYS} == dict.fromkeys(COVERAGE_KEYS)
    assert "coverage transfer" not in res.output


def test_transfer_samples_are_side_by_side_frames(data, tmp_path, pose_model):
    """With render's side-by-side video, the page's samples are its frames at the sampled positions."""
    frames = [np.full((H, 3 * W, 3), 20 * i, np.uint8) for i in range(N)]
    sbs = write_video(tmp_path / "sbs.mp4", frames, fps=10)
    ev = evaluate_transfer(pose_model, EvaluateConfig(imgsz=128, sample_frames=3), labels_dir=data["labels"],
                           video=data["video"], side_by_side=sbs)
    assert len(ev.samples) == 3
    for frame, panels in ev.samples:
        assert len(panels) == 1 and panels[0].shape == (H, 3 * W, 3)
        assert abs(float(panels[0].mean()) - 20 * frame) < 4  # the side-by-side frame of that position
    with pytest.raises(DancepipeError, match="gone.mp4: side-by-side video does not exist"):
        evaluate_transfer(pose_model, EvaluateConfig(imgsz=128), labels_dir=data["labels"], video=data["video"],
                          side_by_side=tmp_path / "gone.mp4")
    short = write_video(tmp_path / "short.mp4", frames[:3], fps=10)
    with pytest.raises(DancepipeError, match="short.mp4: has 3 frames but the transfer video has"):
        evaluate_transfer(pose_model, EvaluateConfig(imgsz=128), labels_dir=data["labels"], video=data["video"],
                          side_by_side=short)


def test_evaluate_config_names_allowed_values():
    with pytest.raises(ValueError, match="multiple of 32"):
        EvaluateConfig(imgsz=100)
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        EvaluateConfig(device="tpu")


def _mean(column: pd.Series) -> float | None:
    """Mean of a per-frame column's numbers, None without any (JSON null): the summary figure by hand."""
    v = pd.to_numeric(column, errors="coerce").dropna()
    return float(v.mean()) if len(v) else None


def _psnr_by_hand(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    return min(PSNR_CAP, 10 * math.log10(255**2 / mse)) if mse else PSNR_CAP


@pytest.mark.slow
def test_evaluate_on_the_demo_scores_what_the_files_hold(
    tmp_path, demo_generator, demo_face, demo_frames, demo_labels, demo_transfer_video, pose_weights,
):
    """On the demo, beyond keys and ranges: the held-out frames are the checkpoint's split; PSNR is worked out by
    hand for the baseline (two real frames) and the sampled generated frames; each summary figure in the JSON
    (6 decimals) is the mean of its per-frame column; the transfer's bookkeeping is counted from its labels
    (rendered with trim, the default)."""
    from dancepipe.model.checkpoint import load_generator

    frames, metrics = demo_frames["target"], tmp_path / "metrics"
    # the demo generator is trained for a few steps only: accept faint detections
    cfg = EvaluateConfig(device="cpu", pose_model=str(pose_weights), det_conf=0.05)
    holdout = run_holdout(cfg, generator_path=demo_generator, face_path=demo_face, frames_dir=frames,
                          labels_dir=demo_labels["train"], metrics_dir=metrics,
                          report_path=tmp_path / "held-out.html", train_curves=tmp_path / "absent")
    # the coverage the labels stage would have written beside the transfer labels
    from dancepipe.advice.coverage import measure_coverage, target_repertoire, write_coverage
    from dancepipe.pose.keypoints import columns_to_keypoints, read_index

    transfer_labels = tmp_path / "transfer_labels"
    shutil.copytree(demo_labels["transfer"], transfer_labels)
    write_coverage(transfer_labels, measure_coverage(columns_to_keypoints(read_index(transfer_labels, "labels")),
                                                     target_repertoire(demo_labels["train"], 0.1)))
    transfer = run_transfer(cfg, labels_dir=transfer_labels, video=demo_transfer_video,
                            metrics_dir=metrics, report_path=tmp_path / "pair.html")
    out = _check_outputs(metrics, tmp_path / "held-out.html", tmp_path / "pair.html", expect_curves=False)
    ev, tr = out["eval"], out["transfer"]

    # held out: the checkpoint's frames; the face figures cover those with a face box in the labels
    split = load_generator(demo_generator)[1]["split"]
    per = holdout.evaluation.per_frame  # what eval_per_frame.csv holds, before rounding to 6 digits
    assert list(pd.read_csv(metrics / "eval_per_frame.csv")["frame"]) == list(per["frame"])
    assert list(per["frame"]) == sorted(split["holdout_frames"]) and ev["frames"] == len(per) >= 2
    labels = pd.read_parquet(demo_labels["train"] / "index.parquet").set_index("frame")
    assert ev["face_frames"] == int(labels.loc[per["frame"], "face_ok"].sum())
    # the baseline shows a real training frame, named per row: its PSNR against the real frame, by hand
    files = pd.read_parquet(frames / "index.parquet").set_index("frame")["file"]

    def real(frame: int) -> np.ndarray:
        return cv2.cvtColor(cv2.imread(str(frames / files[frame])), cv2.COLOR_BGR2RGB)

    assert per["baseline_frame"].notna().sum() == ev["baseline_frames"] > 0
    for frame, base, psnr in per[["frame", "baseline_frame", "baseline_psnr"]].dropna().itertuples(index=False):
        assert int(base) in split["train_frames"]
        assert psnr == pytest.approx(_psnr_by_hand(real(int(base)), real(int(frame))), abs=1e-9), frame
    # the samples are label | generated | baseline | real: the real and baseline panels are those files, and the
    # generated frame's PSNR against the real one, by hand, is the one in the table
    assert len(holdout.evaluation.samples) == min(4, len(per))
    by_frame = per.set_index("frame")
    for frame, (_label, generated, base, real_panel) in holdout.evaluation.samples:
        np.testing.assert_array_equal(real_panel, real(frame))
        base_frame = by_frame.loc[frame, "baseline_frame"]
        np.testing.assert_array_equal(base, np.zeros_like(base) if pd.isna(base_frame) else real(int(base_frame)))
        assert by_frame.loc[frame, "psnr"] == pytest.approx(_psnr_by_hand(generated, real_panel), abs=1e-9)
    # every summary figure is the mean of its column (null where the column has no number)
    for k in ("ssim", "psnr", "ssim_box", "psnr_box", "ssim_face", "psnr_face", "pose_distance", "warp_error"):
        for key in (k, f"baseline_{k}"):
            assert ev[key] == (None if _mean(per[key]) is None else pytest.approx(_mean(per[key]), abs=1e-6)), key
    assert ev["warp_error_real"] == pytest.approx(_mean(per["warp_error_real"]), abs=1e-6)
    for prefix in ("", "baseline_"):
        assert ev[f"{prefix}no_person_rate"] == pytest.approx(1 - _mean(per[f"{prefix}person_found"]), abs=1e-6)

    # transfer: trim keeps the labels from the first with a person to the last; the rest are counted by hand
    src = pd.read_parquet(demo_labels["transfer"] / "index.parquet").sort_values("frame")
    person = src["person_found"].to_numpy(bool)
    first, last = np.flatnonzero(person)[[0, -1]]
    kept = person[first:last + 1]
    assert (tr["frames"], tr["person_frames"], tr["person_less_frames"], tr["substituted_frames"],
            tr["trimmed_frames"], tr["empty_label_frames_generated"]) == (
        len(kept), kept.sum(), (~person).sum(), (~kept).sum(), len(person) - len(kept), 0)
    tper = transfer.evaluation.per_frame
    assert list(pd.read_csv(metrics / "transfer_per_frame.csv")["frame"]) == list(tper["frame"])
    assert list(tper["frame"]) == list(src["frame"].iloc[first:last + 1])
    assert list(tper["label_person"]) == list(kept.astype(int)) and list(tper["generated"]) == list(kept.astype(int))
    found = (tper["person_found"] == 1).fillna(False) & (tper["label_person"] == 1)
    assert tr["detection_rate"] == pytest.approx(found.sum() / kept.sum(), abs=1e-6)
    for key in ("pose_distance", "pose_distance_head", "pose_distance_torso", "pose_distance_arms",
                "pose_distance_legs", "warp_error"):
        assert tr[key] == (None if _mean(tper[key]) is None else pytest.approx(_mean(tper[key]), abs=1e-6)), key
    assert tr["covered_frames"] == int((tper["covered"] == 1).fillna(False).sum())
    for key, side in (("pose_distance_covered", 1), ("pose_distance_uncovered", 0)):
        mean = _mean(tper.loc[(tper["covered"] == side).fillna(False), "pose_distance"])
        assert tr[key] == (None if mean is None else pytest.approx(mean, abs=1e-6)), key
    first_label = read_rgb(demo_labels["transfer"] / src["file"].iloc[0])
    assert transfer.evaluation.samples[0][1][1].shape == first_label.shape


@pytest.mark.slow
def test_pose_distance_measures_the_subject_never_the_bystander(demo_frames, demo_labels, pose_model):
    """On real demo frames the subject is found close to its own keypoints; with the subject
    painted out, the background bystander the detector still finds is not taken for it."""
    from dancepipe.output.evaluate import detect_subjects
    from dancepipe.output.metrics import pose_distance, subject_box
    from dancepipe.pose.keypoints import columns_to_keypoints

    frames = demo_frames["target"]
    lab = pd.read_parquet(demo_labels["train"] / "index.parquet")
    idx = pd.read_parquet(frames / "index.parquet").set_index("frame")
    kps = columns_to_keypoints(lab)
    picks = [i for i in range(0, len(lab), 9) if lab["person_found"][i]]
    real = [read_rgb(frames / idx.loc[int(lab["frame"][i]), "file"]) for i in picks]
    refs = [kps[i] for i in picks]
    found = detect_subjects(pose_model, real, refs, imgsz=320, det_conf=0.25, kp_conf=0.5)
    distances = [pose_distance(k, r) for k, r in zip(found, refs, strict=True) if k is not None]
    assert len(distances) >= 0.8 * len(picks)
    assert np.median(distances) < 0.1

    painted = []
    for img, ref in zip(real, refs, strict=True):
        x0, y0, x1, y1 = subject_box(ref, img.shape[1], img.shape[0], pad=0.3)
        out = img.copy()
        out[y0:y1, x0:x1] = 128
        painted.append(out)
    people = pose_model.predict([p[..., ::-1].copy() for p in painted], imgsz=320, conf=0.25, verbose=False)
    with_bystander = [i for i, r in enumerate(people) if r.boxes is not None and len(r.boxes) > 0]
    assert len(with_bystander) >= len(picks) // 2, "the demo target's bystander should be detectable"
    gone = detect_subjects(pose_model, painted, refs, imgsz=320, det_conf=0.25, kp_conf=0.5)
    assert all(gone[i] is None for i in with_bystander)

"""Evaluation: known answers on synthetic data, the stage CLI, and every metric on the demo."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner

from dancepipe.evaluate import EvaluateConfig, evaluate_holdout, run_evaluate
from dancepipe.metrics import PSNR_CAP
from dancepipe.render import RenderConfig, load_rgb, run_render
from tests.conftest import write_video
from tests.fixtures.render import sway_keypoints, write_frames_like, write_labels_dir, write_tiny_generator

torch.set_num_threads(2)
W, H, N = 64, 96, 8
HOLDOUT = [4, 5, 6, 7]

# valid range of every metric written to metrics/*.json
RANGES = {
    "ssim": (-1, 1), "ssim_box": (-1, 1), "psnr": (0, PSNR_CAP), "psnr_box": (0, PSNR_CAP),
    "pose_distance": (0, 10), "no_person_rate": (0, 1), "detection_rate": (0, 1),
    "warp_error": (0, 1), "warp_error_real": (0, 1), "frames": (1, 10**6),
}


class LabelEcho(torch.nn.Module):
    """G(label, prev) = label: with real frames equal to the labels the answer is known."""

    def forward(self, label, prev):
        return label.clone()


@pytest.fixture(scope="module")
def pose_model(pose_weights):
    from dancepipe.posemodel import load_pose_model

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
    src_frames = write_frames_like(root / "src_frames", [np.full((H, 48, 3), 90, np.uint8)] * N)
    clip = write_video(root / "src.mp4", [np.full((48, 64, 3), 20 * i, np.uint8) for i in range(N)], fps=10)
    video = root / "transfer.mp4"
    run_render(RenderConfig(device="cpu", preset="ultrafast"), generator_path=gen, face_path=None, labels_dir=labels,
               source_video=clip, source_frames_dir=src_frames, out=video, side_by_side_out=None)
    return {"root": root, "labels": labels, "frames": frames, "generator": gen, "video": video}


def test_perfect_reconstruction_scores_ssim_one_psnr_cap_and_real_warp_error(data, pose_model):
    cfg = EvaluateConfig(sample_frames=2, imgsz=128)
    ev = evaluate_holdout(LabelEcho(), pose_model, cfg, frames_dir=data["frames"], labels_dir=data["labels"],
                          holdout_frames=HOLDOUT)
    s = ev.summary
    assert s["frames"] == len(HOLDOUT)
    assert s["ssim"] == pytest.approx(1.0) and s["ssim_box"] == pytest.approx(1.0)
    assert s["psnr"] == PSNR_CAP and s["psnr_box"] == PSNR_CAP
    assert s["warp_error"] == pytest.approx(s["warp_error_real"])
    assert list(ev.per_frame["frame"]) == HOLDOUT
    assert math.isnan(ev.per_frame["warp_error"].iloc[0]) and ev.per_frame["warp_error"].iloc[1:].notna().all()
    assert 0.0 <= s["no_person_rate"] <= 1.0
    assert [f for f, _ in ev.samples] == [4, 7] and len(ev.samples[0][1]) == 3


def test_a_worse_generator_scores_worse(data, pose_model):
    from dancepipe.checkpoint import load_generator

    g, _ = load_generator(data["generator"])
    cfg = EvaluateConfig(sample_frames=0, imgsz=128)
    ev = evaluate_holdout(g, pose_model, cfg, frames_dir=data["frames"], labels_dir=data["labels"],
                          holdout_frames=HOLDOUT)
    assert ev.summary["ssim"] < 0.9 and ev.summary["psnr"] < 40


def test_holdout_frames_missing_from_the_data_are_reported(data, pose_model):
    from dancepipe.errors import DancepipeError

    with pytest.raises(DancepipeError, match="held-out frames are missing, e.g. frame 99"):
        evaluate_holdout(LabelEcho(), pose_model, EvaluateConfig(), frames_dir=data["frames"],
                         labels_dir=data["labels"], holdout_frames=[7, 99])
    with pytest.raises(DancepipeError, match="no held-out frames"):
        evaluate_holdout(LabelEcho(), pose_model, EvaluateConfig(), frames_dir=data["frames"],
                         labels_dir=data["labels"], holdout_frames=[])


def _check_outputs(metrics_dir: Path, report: Path, expect_curves: bool) -> dict:
    ev = json.loads((metrics_dir / "eval.json").read_text())
    tr = json.loads((metrics_dir / "transfer.json").read_text())
    assert set(ev) == {"frames", "ssim", "psnr", "ssim_box", "psnr_box", "pose_distance", "no_person_rate",
                       "warp_error", "warp_error_real"}
    assert set(tr) == {"frames", "pose_distance", "detection_rate", "warp_error"}
    for d in (ev, tr):
        for k, v in d.items():
            if v is not None:
                lo, hi = RANGES[k]
                assert lo <= v <= hi, (k, v)
    for name in ("eval_per_frame.csv", "transfer_per_frame.csv"):
        df = pd.read_csv(metrics_dir / name)
        assert df.columns[0] == "frame" and df["frame"].is_monotonic_increasing
    text = report.read_text()
    assert text.startswith("<!doctype html>") and "data:image/png;base64," in text
    assert "http://" not in text and "https://" not in text  # nothing to fetch
    assert ("training curves" in text) and (("No training curves" in text) != expect_curves)
    return {"eval": ev, "transfer": tr}


def test_stage_cli_writes_metrics_plots_and_report(data, tmp_path, pose_weights):
    from stages.evaluate import main

    curves = tmp_path / "dvclive"
    (curves / "loss").mkdir(parents=True)
    (curves / "loss" / "g.tsv").write_text("timestamp\tstep\tg\n0\t0\t1.0\n0\t1\t0.5\n")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"evaluate": {"device": "cpu", "pose_model": str(pose_weights),
                                                   "imgsz": 128, "sample_frames": 2}}))
    args = ["--generator", str(data["generator"]), "--face", str(tmp_path / "no_face.pt"), "--frames",
            str(data["frames"]), "--labels", str(data["labels"]), "--transfer-labels", str(data["labels"]),
            "--transfer-video", str(data["video"]), "--metrics-dir", str(tmp_path / "metrics"),
            "--report", str(tmp_path / "report.html"), "--params", str(params)]
    # face model missing: one sentence, exit 1, nothing written
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1 and "no_face.pt: face model does not exist" in res.output
    assert not (tmp_path / "metrics").exists() and not (tmp_path / "report.html").exists()
    # face off in params: runs and writes everything
    params.write_text(yaml.safe_dump({"evaluate": {"device": "cpu", "pose_model": str(pose_weights),
                                                   "imgsz": 128, "sample_frames": 2, "face": False}}))
    res = CliRunner().invoke(main, [*args, "--train-curves", str(curves)])
    assert res.exit_code == 0, res.output
    assert "held-out 4 frames" in res.output and "transfer 8 frames" in res.output
    _check_outputs(tmp_path / "metrics", tmp_path / "report.html", expect_curves=True)


def test_stage_cli_rejects_a_video_that_does_not_match_the_labels(data, tmp_path, pose_weights):
    from stages.evaluate import main

    short = write_video(tmp_path / "short.mp4", [np.zeros((H, W, 3), np.uint8)] * 3, fps=10)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"evaluate": {"device": "cpu", "pose_model": str(pose_weights),
                                                   "imgsz": 128, "face": False}}))
    res = CliRunner().invoke(main, [
        "--generator", str(data["generator"]), "--face", "x.pt", "--frames", str(data["frames"]),
        "--labels", str(data["labels"]), "--transfer-labels", str(data["labels"]), "--transfer-video", str(short),
        "--metrics-dir", str(tmp_path / "m"), "--report", str(tmp_path / "r.html"), "--params", str(params)])
    assert res.exit_code == 1
    assert "short.mp4: has 3 frames but" in res.output and "rerun the render stage" in res.output
    assert not (tmp_path / "m").exists()


def test_evaluate_config_names_allowed_values():
    with pytest.raises(ValueError, match="multiple of 32"):
        EvaluateConfig(imgsz=100)
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        EvaluateConfig(device="tpu")


@pytest.mark.slow
def test_evaluate_on_the_demo_gives_every_metric_finite_and_in_range(
    tmp_path, demo_generator, demo_face, demo_frames, demo_labels, demo_transfer_video, pose_weights,
):
    frames = demo_frames["target"] if isinstance(demo_frames, dict) else demo_frames
    result = run_evaluate(
        # the demo generator is trained for a few steps only: accept faint detections
        EvaluateConfig(device="cpu", pose_model=str(pose_weights), det_conf=0.05), generator_path=demo_generator,
        face_path=demo_face, frames_dir=frames, labels_dir=demo_labels["train"],
        transfer_labels_dir=demo_labels["transfer"], transfer_video=demo_transfer_video,
        metrics_dir=tmp_path / "metrics", report_path=tmp_path / "report.html",
        train_curves=tmp_path / "absent",
    )
    out = _check_outputs(tmp_path / "metrics", tmp_path / "report.html", expect_curves=False)
    for d in out.values():
        for k, v in d.items():
            assert v is not None and math.isfinite(v), k
    assert result.holdout.summary["frames"] >= 2
    assert len(result.holdout.samples) == min(4, result.holdout.summary["frames"])
    first = load_rgb(demo_labels["transfer"] / pd.read_parquet(demo_labels["transfer"] / "index.parquet")["file"][0])
    assert result.transfer.samples[0][1][1].shape == first.shape


@pytest.mark.slow
def test_pose_distance_measures_the_subject_never_the_bystander(demo_frames, demo_labels, pose_model):
    """On real demo frames the subject is found close to its own keypoints; with the subject
    painted out, the background bystander the detector still finds is not taken for it."""
    from dancepipe.evaluate import detect_subjects
    from dancepipe.keypoints import columns_to_keypoints
    from dancepipe.metrics import pose_distance, subject_box

    frames = demo_frames["target"]
    lab = pd.read_parquet(demo_labels["train"] / "index.parquet")
    idx = pd.read_parquet(frames / "index.parquet").set_index("frame")
    kps = columns_to_keypoints(lab)
    picks = [i for i in range(0, len(lab), 9) if lab["person_found"][i]]
    real = [load_rgb(frames / idx.loc[int(lab["frame"][i]), "file"]) for i in picks]
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

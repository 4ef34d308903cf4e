"""Rendering: the recurrence, one output frame per label, source fps and audio, the stage CLI."""

from __future__ import annotations

import json
import logging
import shutil
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner

from dancepipe.errors import DancepipeError
from dancepipe.output.render import (
    RenderConfig,
    Timing,
    face_boxes,
    generate_sequence,
    render_transfer,
    run_render,
)
from dancepipe.pose.keypoints import KEYPOINT_COLUMNS
from dancepipe.video.decode import iter_frames, probe
from dancepipe.video.images import read_rgb
from tests.conftest import write_video
from tests.fixtures.render import recurrence_by_hand, sway_keypoints, write_labels_dir, write_tiny_generator
from tests.test_encode import decoded_audio, onset_seconds, write_onset_video
from tests.test_sidebyside import bright_extent, write_pose_table

torch.set_num_threads(2)
W, H, N = 32, 48, 12


class StepGenerator(torch.nn.Module):
    """prev + 0.25 everywhere, whatever the label: exposes the recurrence."""

    def forward(self, label: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        return (prev + 0.25).clamp(-1, 1)


class BlackFace:
    """A face step that blacks out its box, to see where and when it is applied."""

    def refine(self, label, image, boxes):
        out = image.clone()
        for i, b in enumerate(boxes):
            if b is not None:
                x0, y0, s = b
                out[i, :, y0:y0 + s, x0:x0 + s] = -1.0
        return out


def test_each_frame_is_conditioned_on_the_previous_output_starting_from_zeros():
    labels = [np.zeros((H, W, 3), np.uint8)] * 5
    frames = list(generate_sequence(StepGenerator(), labels, device=torch.device("cpu")))
    assert [int(f[0, 0, 0]) for f in frames] == [159, 191, 223, 255, 255]


def test_face_refinement_changes_only_the_box_and_not_the_recurrence():
    labels = [np.zeros((H, W, 3), np.uint8)] * 3
    boxes = [(4, 6, 8), None, (0, 0, 4)]
    timing = Timing()
    frames = list(generate_sequence(StepGenerator(), labels, device=torch.device("cpu"), face=BlackFace(),
                                    boxes=boxes, timing=timing))
    assert (frames[0][6:14, 4:12] == 0).all() and frames[0][20, 20, 0] == 159
    assert (frames[1] == 191).all()  # unrefined output fed back, no box this frame
    assert (frames[2][:4, :4] == 0).all() and frames[2][10, 10, 0] == 223
    assert timing.frames == 3


def test_timing_puts_each_wait_on_the_step_that_spent_it():
    """Generator, face step and label reading take known times (sleeps): each lands in its own field.

    The bounds leave 0.1 s for a loaded machine, less than any step's time counted twice or in the
    wrong field (the face call alone is 0.2 s, the labels 0.18 s).
    """
    import time

    class SlowStep(StepGenerator):
        def forward(self, label, prev):
            time.sleep(0.03)
            return super().forward(label, prev)

    class SlowFace(BlackFace):
        def refine(self, label, image, boxes):
            time.sleep(0.2)
            return super().refine(label, image, boxes)

    def slow_labels():
        for _ in range(3):
            time.sleep(0.06)
            yield np.zeros((H, W, 3), np.uint8)

    timing = Timing()
    frames = list(generate_sequence(SlowStep(), slow_labels(), device=torch.device("cpu"), face=SlowFace(),
                                    boxes=[(4, 6, 8), None, (0, 0, 4)], timing=timing))
    assert len(frames) == timing.frames == 3
    assert 0.09 <= timing.generator < 0.19  # 3 x 0.03 s
    assert 0.2 <= timing.face < 0.3  # one batch of 3 frames: 0.2 s
    assert 0.18 <= timing.wait_input < 0.28  # 3 x 0.06 s


def test_face_refinement_in_batches_keeps_every_frame_in_order():
    from dancepipe.output.render import FACE_BATCH

    n = 2 * FACE_BATCH + 3  # two full batches and a remainder
    calls: list[int] = []

    class CountingBlackFace(BlackFace):
        def refine(self, label, image, boxes):
            calls.append(len(boxes))
            return super().refine(label, image, boxes)

    boxes = [(i % 5, i % 7, 3) if i % 4 else None for i in range(n)]
    labels = [np.zeros((H, W, 3), np.uint8)] * n
    frames = list(generate_sequence(StepGenerator(), labels, device=torch.device("cpu"), face=CountingBlackFace(),
                                    boxes=boxes))
    assert calls == [FACE_BATCH, FACE_BATCH, 3]
    expected = [int(round((min(0.25 * (i + 1), 1.0) + 1) * 127.5)) for i in range(n)]  # zeros, then +0.25
    for i, (frame, box) in enumerate(zip(frames, boxes, strict=True)):
        if box is None:
            assert (frame == expected[i]).all(), i
        else:
            x0, y0, s = box
            assert (frame[y0:y0 + s, x0:x0 + s] == 0).all(), i
            assert frame[H - 1, W - 1, 0] == expected[i], i


def with_empty_labels(src: Path, dst: Path, empty: list[int]) -> Path:
    """A copy of the labels directory ``src`` in which rows ``empty`` show no person (as the labels stage writes them)."""
    shutil.copytree(src, dst)
    idx = pd.read_parquet(dst / "index.parquet")
    idx.loc[empty, "person_found"] = False
    idx.loc[empty, KEYPOINT_COLUMNS] = np.nan
    idx.loc[empty, "face_ok"] = False
    for row in empty:
        cv2.imwrite(str(dst / idx["file"].iloc[row]), np.zeros((H, W, 3), np.uint8))
    idx.to_parquet(dst / "index.parquet", index=False)
    return dst


SOURCE_SCALE = 2.0  # source pixels per label pixel: the source dancer is twice the stick figure's size


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Labels of a figure half the label's height (as in the demo), and a source video 80x60 whose subject is a
    white box around the same figure at twice the size, walking right; its pose table has those boxes and points."""
    root = tmp_path_factory.mktemp("render_inputs")
    centre = np.array([W / 2, H / 2])
    kps = sway_keypoints(N, W, H)
    kps[..., :2] = (kps[..., :2] - centre) * 0.5 + centre
    labels = write_labels_dir(root / "labels", kps, W, H)
    src = kps.copy()
    src[..., :2] = SOURCE_SCALE * (kps[..., :2] - centre) + np.stack([20.0 + 4 * np.arange(N), np.full(N, 30.0)], 1)[:, None]
    lo, hi = src[..., :2].min(axis=1), src[..., :2].max(axis=1)
    pad = 0.15 * (hi - lo)  # a detector's box reaches past the joints (head top, feet)
    boxes = np.round(np.concatenate([lo - pad, hi + pad], axis=1)).astype(int)
    clip = []
    for x0, y0, x1, y1 in boxes:
        img = np.zeros((60, 80, 3), np.uint8)
        img[y0:y1, x0:x1] = 255
        clip.append(img)
    tone = write_video(root / "tone.mp4", clip, fps=15, audio_tone_hz=440.0)
    silent = write_video(root / "silent.mp4", clip, fps=12)
    poses = write_pose_table(root / "poses.parquet", boxes, kps=src)
    gen = write_tiny_generator(root / "generator.pt")
    return {"labels": labels, "poses": poses, "clip": clip, "boxes": boxes, "tone": tone, "silent": silent,
            "generator": gen, "root": root}


def assert_source_panel_shows_the_subject(inputs, panel: np.ndarray, frame: int) -> None:
    """The source panel shows frame ``frame``'s subject at the stick figure's scale, where the crop puts it.

    The crop is W x H label pixels = 64 x 96 source pixels around the subject: taller
    than the 60-px picture, so centred on it vertically; shifted to stay inside the
    80-px width horizontally (the smoothed centre may differ from this frame's box by
    the figure's sway: about a pixel).
    """
    x0, y0, x1, y1 = inputs["boxes"][frame]
    h, w, cx, cy = bright_extent(panel)
    assert h == pytest.approx((y1 - y0) / SOURCE_SCALE, abs=2), frame
    assert w == pytest.approx((x1 - x0) / SOURCE_SCALE, abs=2), frame
    crop_x0 = min(max((x0 + x1) / 2 - W * SOURCE_SCALE / 2, 0), 80 - W * SOURCE_SCALE)
    crop_y0 = (60 - H * SOURCE_SCALE) / 2
    assert cx == pytest.approx(((x0 + x1) / 2 - crop_x0) / SOURCE_SCALE - 0.5, abs=2), frame
    assert cy == pytest.approx(((y0 + y1) / 2 - crop_y0) / SOURCE_SCALE - 0.5, abs=1.5), frame


def _render(inputs, tmp_path, source: Path, side_by_side: bool = True, labels: Path | None = None, **cfg):
    return run_render(
        RenderConfig(device="cpu", preset="ultrafast", **cfg), generator_path=inputs["generator"], face_path=None,
        labels_dir=labels or inputs["labels"], source_video=source, source_poses=inputs["poses"],
        out=tmp_path / "transfer.mp4", side_by_side_out=tmp_path / "sbs.mp4" if side_by_side else None,
    )


def test_render_writes_one_h264_frame_per_label_at_source_fps_with_audio(inputs, tmp_path):
    result = _render(inputs, tmp_path, inputs["tone"])
    assert result.frames == N and not result.face_applied
    assert (result.empty, result.substituted, result.trimmed, result.audio_start) == (0, 0, 0, 0.0)
    info = probe(tmp_path / "transfer.mp4")
    assert (info.codec, info.width, info.height) == ("h264", W, H)
    assert info.fps == pytest.approx(15.0)
    assert info.has_audio and info.audio_codec == "aac"
    assert sum(1 for _ in iter_frames(tmp_path / "transfer.mp4")) == N
    with av.open(str(tmp_path / "transfer.mp4")) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
    sbs = probe(tmp_path / "sbs.mp4")
    assert (sbs.width, sbs.height, sbs.frame_count, sbs.has_audio) == (3 * W, H, N, True)
    # source | label | generated
    transfer = [f.image for f in iter_frames(tmp_path / "transfer.mp4")]
    for i, frame in enumerate(iter_frames(tmp_path / "sbs.mp4")):
        label = read_rgb(inputs["labels"] / f"{i:06d}.png")
        assert np.abs(frame.image[:, W:2 * W].astype(int) - label.astype(int)).mean() < 12
        assert np.abs(frame.image[:, 2 * W:].astype(int) - transfer[i].astype(int)).mean() < 6
        assert_source_panel_shows_the_subject(inputs, frame.image[:, :W], i)


def test_render_keeps_an_ntsc_source_rate_exactly(inputs, tmp_path):
    """A 29.97 fps source (30000/1001, as NTSC cameras label it) gives videos at exactly that rate:
    frame i at i·1001/30000 s, the stream as long as its frames, the audio as long as the video."""
    ntsc = Fraction(30000, 1001)
    src = write_video(tmp_path / "ntsc.mp4", inputs["clip"], fps=ntsc, audio_tone_hz=440.0)
    with av.open(str(src)) as c:
        assert c.streams.video[0].average_rate == ntsc
    result = _render(inputs, tmp_path, src)
    assert result.frames == N
    for video in (tmp_path / "transfer.mp4", tmp_path / "sbs.mp4"):
        with av.open(str(video)) as c:
            stream = c.streams.video[0]
            assert stream.average_rate == ntsc and stream.guessed_rate == ntsc, video.name
            times = [Fraction(f.pts) * f.time_base for f in c.decode(stream)]
            assert times == [i / ntsc for i in range(N)], video.name
            assert Fraction(stream.duration) * stream.time_base == N / ntsc, video.name
        samples, rate = decoded_audio(video)
        assert float(N / ntsc) - 0.005 <= len(samples) / rate <= float(N / ntsc) + 2 * 1024 / rate


def test_render_reads_an_ingested_video_directory(inputs, tmp_path):
    ingested = tmp_path / "source"
    ingested.mkdir()
    shutil.copy(inputs["tone"], ingested / "video.mp4")
    (ingested / "meta.json").write_text(json.dumps({"file": "video.mp4"}))
    result = _render(inputs, tmp_path, ingested)
    assert result.frames == N
    for video in (tmp_path / "transfer.mp4", tmp_path / "sbs.mp4"):
        info = probe(video)
        assert info.frame_count == N and info.has_audio and info.fps == pytest.approx(15.0)
    assert_source_panel_shows_the_subject(inputs, next(iter_frames(tmp_path / "sbs.mp4")).image[:, :W], 0)


def test_render_without_source_audio_has_no_audio_track(inputs, tmp_path):
    result = _render(inputs, tmp_path, inputs["silent"], side_by_side=False)
    info = probe(tmp_path / "transfer.mp4")
    assert not info.has_audio
    assert info.fps == pytest.approx(12.0) and info.frame_count == N
    assert result.outputs == [str(tmp_path / "transfer.mp4")]
    assert not (tmp_path / "sbs.mp4").exists()


def test_render_output_is_the_generator_run_frame_by_frame_on_its_own_output(inputs, tmp_path):
    """The video's frames are the recurrence written out by hand (:func:`recurrence_by_hand`) over the labels."""
    from dancepipe.model.checkpoint import load_generator

    _render(inputs, tmp_path, inputs["silent"], side_by_side=False, crf=0)
    g, _ = load_generator(inputs["generator"])
    labels = [cv2.cvtColor(cv2.imread(str(inputs["labels"] / f"{i:06d}.png")), cv2.COLOR_BGR2RGB) for i in range(N)]
    expected = recurrence_by_hand(g, labels)
    got = [f.image for f in iter_frames(tmp_path / "transfer.mp4")]
    luma = np.array([0.299, 0.587, 0.114])
    # crf 0 keeps luma (almost) exactly; yuv420p halves chroma resolution, so compare luma
    errors = [np.abs((a.astype(float) - b.astype(float)) @ luma).mean() for a, b in zip(expected, got, strict=True)]
    assert max(errors) < 1.5


def _face_model(path: Path) -> Path:
    """A real face model file (the face stage's format) whose refiner visibly changes faces: its
    residual head has non-zero weights, as after training (a fresh head returns the crop as is)."""
    from dancepipe.model.face_checkpoint import enabled_payload, save_face_model
    from dancepipe.model.face_networks import FaceGenerator

    torch.manual_seed(0)
    model = FaceGenerator(ngf=8, n_downsample=2, n_blocks=1)
    with torch.no_grad():
        model.out[1].weight.normal_(0, 0.05)
        model.out[1].bias.fill_(0.3)
    train = {"ngf": 8, "n_downsample": 2, "n_blocks": 1}
    save_face_model(enabled_payload(model, train, "none", crop_size=16, step=10, metrics={}), path)
    return path


def test_render_face_false_ignores_a_face_model_and_renders_the_generator_alone(inputs, tmp_path):
    face = _face_model(tmp_path / "face.pt")
    runs = {}
    for name, face_path, on in (("alone", None, True), ("face off", face, False), ("face on", face, True)):
        out = tmp_path / name
        result = run_render(RenderConfig(device="cpu", preset="ultrafast", crf=0, face=on),
                            generator_path=inputs["generator"], face_path=face_path, labels_dir=inputs["labels"],
                            source_video=inputs["silent"], source_poses=None, out=out / "t.mp4",
                            side_by_side_out=None)
        runs[name] = (result, [f.image for f in iter_frames(out / "t.mp4")])
    result, frames = runs["face off"]
    assert not result.face_applied and result.face_note == "face refinement off: render.face is false"
    assert len(frames) == N
    for i, (a, b) in enumerate(zip(runs["alone"][1], frames, strict=True)):
        assert np.array_equal(a, b), i
    # the same model with render.face on does change every frame's face box
    assert runs["face on"][0].face_applied
    boxes = face_boxes(pd.read_parquet(inputs["labels"] / "index.parquet"))
    for i, ((x0, y0, s), a, b) in enumerate(zip(boxes, runs["alone"][1], runs["face on"][1], strict=True)):
        diff = np.abs(a.astype(int) - b.astype(int))
        assert diff[y0:y0 + s, x0:x0 + s].mean() > 5, i


def test_missing_labels_fail_with_one_sentence_and_no_output(inputs, tmp_path):
    with pytest.raises(DancepipeError, match="labels directory does not exist"):
        run_render(RenderConfig(device="cpu"), generator_path=inputs["generator"], face_path=None,
                   labels_dir=tmp_path / "nope", source_video=inputs["silent"], source_poses=None,
                   out=tmp_path / "t.mp4", side_by_side_out=None)
    assert not (tmp_path / "t.mp4").exists()


def _break_label(path: Path, how: str) -> str:
    """Spoil one label PNG; returns what the error names."""
    if how == "corrupt":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
        return "not a readable image"
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
        return "not a readable image"
    cv2.imwrite(str(path), np.zeros((40, 40, 3), np.uint8))
    return f"label is 40x40, expected {W}x{H}"


@pytest.mark.parametrize("how", ["corrupt", "truncated", "wrong size"])
def test_a_render_failing_part_way_leaves_no_output_and_no_temporary_file(inputs, tmp_path, how):
    """Label 6 of 12 is spoilt: frames before it are generated and encoded, then the run fails.
    Neither video nor any temporary sibling is left, and the outputs of an earlier run are untouched."""
    labels = tmp_path / "labels"
    shutil.copytree(inputs["labels"], labels)
    message = _break_label(labels / "000006.png", how)
    outs = tmp_path / "outputs"
    outs.mkdir()
    (outs / "old.mp4").write_bytes(b"an earlier run")
    written: list[int] = []
    with pytest.raises(DancepipeError, match=f"000006.png: {message}"):
        run_render(RenderConfig(device="cpu", preset="ultrafast"), generator_path=inputs["generator"],
                   face_path=None, labels_dir=labels, source_video=inputs["tone"], source_poses=inputs["poses"],
                   out=outs / "transfer.mp4", side_by_side_out=outs / "sbs.mp4", progress=written.append)
    assert sum(written) == 6  # it failed part-way: frames 0-5 were generated and queued for encoding
    assert sorted(p.name for p in outs.iterdir()) == ["old.mp4"]
    # an earlier render's videos stay as they were
    for name in ("transfer.mp4", "sbs.mp4"):
        (outs / name).write_bytes(name.encode())
    with pytest.raises(DancepipeError, match=message):
        run_render(RenderConfig(device="cpu", preset="ultrafast"), generator_path=inputs["generator"],
                   face_path=None, labels_dir=labels, source_video=inputs["tone"], source_poses=inputs["poses"],
                   out=outs / "transfer.mp4", side_by_side_out=outs / "sbs.mp4")
    assert sorted(p.name for p in outs.iterdir()) == ["old.mp4", "sbs.mp4", "transfer.mp4"]
    assert [(outs / n).read_bytes() for n in ("transfer.mp4", "sbs.mp4")] == [b"transfer.mp4", b"sbs.mp4"]


def test_render_config_rejects_bad_values():
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        RenderConfig(device="gpu")
    with pytest.raises(ValueError):
        RenderConfig(crf=60)
    with pytest.raises(ValueError, match="'hold', 'trim' or 'blank'"):
        RenderConfig(empty="skip")
    with pytest.raises(ValueError):
        RenderConfig(panel_window=0)


def _params(tmp_path: Path, **render) -> Path:
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump({"render": {"device": "cpu", "preset": "ultrafast", **render}}))
    return p


def test_stage_cli_renders_and_reports(inputs, tmp_path):
    from stages.render import main

    face = inputs["root"] / "face_off.pt"
    torch.save({"format": "dancepipe.face/1", "enabled": False, "arch": {}, "state_dict": None, "train": {}}, face)
    res = CliRunner().invoke(main, [
        "--generator", str(inputs["generator"]), "--face", str(face), "--labels", str(inputs["labels"]),
        "--source-video", str(inputs["tone"]), "--source-poses", str(inputs["poses"]),
        "--out", str(tmp_path / "o.mp4"), "--side-by-side", str(tmp_path / "s.mp4"),
        "--params", str(_params(tmp_path)),
    ])
    assert res.exit_code == 0, res.output
    assert f"{N} frames" in res.output and "face refinement off" in res.output
    assert "every label shows a person" in res.output
    assert probe(tmp_path / "o.mp4").frame_count == N
    # the side-by-side video: source subject | the label | the frame of the transfer video
    transfer = [f.image for f in iter_frames(tmp_path / "o.mp4")]
    sbs = [f.image for f in iter_frames(tmp_path / "s.mp4")]
    assert len(sbs) == N and sbs[0].shape == (H, 3 * W, 3)
    for i, frame in enumerate(sbs):
        label = read_rgb(inputs["labels"] / f"{i:06d}.png")
        assert np.abs(frame[:, W:2 * W].astype(int) - label.astype(int)).mean() < 12, i
        assert np.abs(frame[:, 2 * W:].astype(int) - transfer[i].astype(int)).mean() < 6, i
        assert_source_panel_shows_the_subject(inputs, frame[:, :W], i)


def test_stage_cli_reports_the_person_less_labels_in_its_summary(inputs, tmp_path):
    from stages.render import main

    labels = with_empty_labels(inputs["labels"], tmp_path / "labels", EMPTY_ROWS)
    src = write_onset_video(tmp_path / "src.mp4", N, 10, onset=0.5, images=inputs["clip"])
    res = CliRunner().invoke(main, [
        "--generator", str(inputs["generator"]), "--face", str(tmp_path / "absent.pt"), "--labels", str(labels),
        "--source-video", str(src), "--out", str(tmp_path / "o.mp4"),
        "--params", str(_params(tmp_path, face=False, empty="trim")),
    ])
    assert res.exit_code == 0, res.output
    summary = res.output.strip().splitlines()[-1]
    assert summary.startswith("render: 8 frames") and "audio copied from 0.200 s" in summary  # frame 2 at 10 fps
    assert "6 person-less labels (empty = trim): 2 frames held, 4 trimmed" in summary
    assert probe(tmp_path / "o.mp4").frame_count == 8


def test_stage_cli_without_side_by_side_writes_the_transfer_video_alone(inputs, tmp_path):
    from stages.render import main

    res = CliRunner().invoke(main, [
        "--generator", str(inputs["generator"]), "--face", str(tmp_path / "absent.pt"), "--labels", str(inputs["labels"]),
        "--source-video", str(inputs["silent"]), "--out", str(tmp_path / "o.mp4"),
        "--params", str(_params(tmp_path, face=False)),
    ])
    assert res.exit_code == 0, res.output
    assert probe(tmp_path / "o.mp4").frame_count == N
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4", "params.yaml"]


def test_stage_cli_side_by_side_without_source_poses_is_a_usage_error_and_writes_nothing(inputs, tmp_path):
    from stages.render import main

    res = CliRunner().invoke(main, [
        "--generator", str(inputs["generator"]), "--face", str(tmp_path / "absent.pt"), "--labels", str(inputs["labels"]),
        "--source-video", str(inputs["silent"]), "--out", str(tmp_path / "o.mp4"),
        "--side-by-side", str(tmp_path / "s.mp4"), "--params", str(_params(tmp_path, face=False)),
    ])
    assert res.exit_code == 2
    assert "--side-by-side needs --source-poses" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_stage_cli_bad_input_exits_1_with_one_sentence(inputs, tmp_path):
    from stages.render import main

    bad = tmp_path / "not_a_model.pt"
    res = CliRunner().invoke(main, [
        "--generator", str(bad), "--face", str(bad), "--labels", str(inputs["labels"]),
        "--source-video", str(inputs["tone"]), "--source-poses", str(inputs["poses"]),
        "--out", str(tmp_path / "o.mp4"), "--side-by-side", str(tmp_path / "s.mp4"),
        "--params", str(_params(tmp_path)),
    ])
    assert res.exit_code == 1
    assert "not_a_model.pt: generator checkpoint does not exist" in res.output and res.output.count("\n") == 1
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "s.mp4").exists()
    res = CliRunner().invoke(main, [
        "--generator", str(inputs["generator"]), "--face", str(bad), "--labels", str(inputs["labels"]),
        "--source-video", str(inputs["tone"]), "--source-poses", str(inputs["poses"]),
        "--out", str(tmp_path / "o.mp4"), "--side-by-side", str(tmp_path / "s.mp4"),
        "--params", str(_params(tmp_path, crf=99)),
    ])
    assert res.exit_code == 1 and "render.crf" in res.output


EMPTY_ROWS = [0, 1, 5, 6, 10, 11]  # leading, inside and trailing person-less labels
GENERATED_ROWS = [2, 3, 4, 7, 8, 9]


class RecordingGenerator(torch.nn.Module):
    """Call k returns a uniform grey of level 40 + 30 k, and records what it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.label_max: list[float] = []
        self.prev_mean: list[float] = []

    def forward(self, label: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        self.label_max.append(float(label.max()))
        self.prev_mean.append(float(prev.mean()))
        level = 40 + 30 * (len(self.label_max) - 1)
        return torch.full_like(label, level / 127.5 - 1.0)


class RecordingFace:
    """A face step that changes nothing and records how many frames, and which labels, it saw."""

    def __init__(self) -> None:
        self.label_max: list[float] = []

    def refine(self, label, image, boxes):
        self.label_max += [float(x.max()) for x in label]
        return image.clone()


@pytest.mark.parametrize("rule, expected", [
    # output frame → grey level of the generated frame it shows (None: black)
    ("hold", [40, 40, 40, 70, 100, 100, 100, 130, 160, 190, 190, 190]),
    ("blank", [None, None, 40, 70, 100, None, None, 130, 160, 190, None, None]),
    ("trim", [40, 70, 100, 100, 100, 130, 160, 190]),
])
def test_empty_rules_never_generate_from_an_empty_label(inputs, tmp_path, rule, expected):
    labels = with_empty_labels(inputs["labels"], tmp_path / "labels", EMPTY_ROWS)
    gen, face = RecordingGenerator(), RecordingFace()
    result = render_transfer(gen, labels_dir=labels, source_video=inputs["silent"], out=tmp_path / "o.mp4",
                             side_by_side_out=tmp_path / "s.mp4", source_poses=inputs["poses"], face=face,
                             crf=0, preset="ultrafast", empty=rule)
    # six generator calls, each on a label with a person, each conditioned on the previous call's output
    assert len(gen.label_max) == result.timing.frames == len(GENERATED_ROWS)
    assert min(gen.label_max) > -1.0  # an empty label is all -1 (black)
    assert gen.prev_mean == pytest.approx([0.0] + [(40 + 30 * k) / 127.5 - 1.0 for k in range(5)], abs=1e-6)
    assert len(face.label_max) == len(GENERATED_ROWS) and min(face.label_max) > -1.0  # face step: generated only
    assert (result.frames, result.empty) == (len(expected), len(EMPTY_ROWS))
    assert (result.substituted, result.trimmed) == {"hold": (6, 0), "blank": (6, 0), "trim": (2, 4)}[rule]
    frames = [f.image for f in iter_frames(tmp_path / "o.mp4")]
    assert len(frames) == len(expected) == probe(tmp_path / "s.mp4").frame_count
    for i, (frame, level) in enumerate(zip(frames, expected, strict=True)):
        assert np.abs(frame.astype(float) - (0 if level is None else level)).max() <= 2, (i, level)
    for i, frame in enumerate(iter_frames(tmp_path / "s.mp4")):
        assert np.abs(frame.image[:, 2 * W:].astype(int) - frames[i].astype(int)).mean() < 3, i


def test_empty_rules_with_a_trained_generator_hold_the_exact_previous_frame(inputs, tmp_path):
    labels = with_empty_labels(inputs["labels"], tmp_path / "labels", EMPTY_ROWS)
    _render(inputs, tmp_path, inputs["silent"], side_by_side=False, labels=labels, empty="hold", crf=0)
    frames = [f.image.astype(int) for f in iter_frames(tmp_path / "transfer.mp4")]
    assert len(frames) == N
    for a, b in [(0, 2), (1, 2), (5, 4), (6, 4), (10, 9), (11, 9)]:
        assert np.abs(frames[a] - frames[b]).max() <= 1, (a, b)  # held (lossless up to chroma rounding)
    assert np.abs(frames[3] - frames[2]).mean() > 0.5  # generated frames differ from each other


def test_trim_starts_the_audio_at_the_first_kept_frame(inputs, tmp_path):
    # source: 12 frames at 10 fps, a tone from 0.65 s; labels 0-2 and 10-11 show nobody, so the
    # output keeps source frames 3-9 (0.3 s to 1.0 s): the tone must start 0.35 s into 0.7 s
    src = write_onset_video(tmp_path / "src.mp4", N, 10, onset=0.65, images=inputs["clip"])
    labels = with_empty_labels(inputs["labels"], tmp_path / "labels", [0, 1, 2, 10, 11])
    result = _render(inputs, tmp_path, src, labels=labels, empty="trim")
    assert (result.frames, result.trimmed, result.substituted, result.empty) == (7, 5, 0, 5)
    assert result.audio_start == pytest.approx(0.3)
    for video in (tmp_path / "transfer.mp4", tmp_path / "sbs.mp4"):
        assert probe(video).frame_count == 7
        samples, rate = decoded_audio(video)
        assert onset_seconds(samples, rate) == pytest.approx(0.35, abs=0.005)
        assert 0.7 - 0.005 <= len(samples) / rate <= 0.7 + 2 * 1024 / rate  # ends with the video
    # the side-by-side shows the same source frames: its source panel tracks the subject of frames 3-9
    for j, frame in enumerate(iter_frames(tmp_path / "sbs.mp4")):
        assert_source_panel_shows_the_subject(inputs, frame.image[:, :W], 3 + j)


def test_labels_without_any_person_are_one_sentence_and_write_nothing(inputs, tmp_path):
    labels = with_empty_labels(inputs["labels"], tmp_path / "labels", list(range(N)))
    with pytest.raises(DancepipeError, match="none of the 12 labels shows a person"):
        _render(inputs, tmp_path, inputs["silent"], labels=labels)
    assert not (tmp_path / "transfer.mp4").exists() and not (tmp_path / "sbs.mp4").exists()


@pytest.mark.slow
def test_demo_transfer_video_has_the_planned_frames_and_the_source_audio_in_sync(demo_transfer_video, demo_labels,
                                                                                  demo_source_video):
    """Rendered with the default rule, trim: the video runs from the first label with a person to the last
    one (person-less labels inside are held, at the ends dropped), and the audio is cut to the same span."""
    labels = pd.read_parquet(demo_labels["transfer"] / "index.parquet").sort_values("frame")
    assert RenderConfig().empty == "trim"
    with_person = np.flatnonzero(labels["person_found"].to_numpy(bool))
    kept = int(with_person[-1] - with_person[0] + 1)
    src = probe(demo_source_video)
    out = probe(demo_transfer_video)
    assert len(labels) == src.frame_count
    assert out.frame_count == kept and out.codec == "h264"
    assert out.fps == pytest.approx(src.fps)
    assert out.has_audio and out.audio_codec == src.audio_codec == "aac"
    samples, rate = decoded_audio(demo_transfer_video)
    assert len(samples) / rate == pytest.approx(kept / src.fps, abs=0.05)  # trimmed with the video
    sbs = demo_transfer_video.parent / "side_by_side.mp4"
    assert sbs.exists() and probe(sbs).frame_count == kept


def test_a_labels_index_without_face_columns_skips_the_face_step_and_says_so(caplog):
    old_index = pd.DataFrame({"frame": [0, 1], "file": ["000000.png", "000001.png"], "person_found": [True, True]})
    with caplog.at_level(logging.WARNING, logger="dancepipe.output.render"):
        assert face_boxes(old_index) == [None, None]
    assert any("no face box columns" in r.getMessage() and "face refinement is skipped" in r.getMessage()
               for r in caplog.records)

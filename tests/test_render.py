"""Rendering: the recurrence, one output frame per label, source fps and audio, the stage CLI."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from dancepipe.errors import DancepipeError
from dancepipe.render import RenderConfig, Timing, generate_sequence, run_render
from dancepipe.video import iter_frames, probe
from tests.conftest import write_video
from tests.fixtures.render import sway_keypoints, write_frames_like, write_labels_dir, write_tiny_generator

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
    assert timing.frames == 3 and timing.generator > 0


def test_face_refinement_in_batches_keeps_every_frame_in_order():
    from dancepipe.render import FACE_BATCH

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


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("render_inputs")
    kps = sway_keypoints(N, W, H)
    labels = write_labels_dir(root / "labels", kps, W, H)
    src_imgs = [np.full((H, 40, 3), 30 + 10 * i, np.uint8) for i in range(N)]
    frames = write_frames_like(root / "frames", src_imgs)
    clip = [np.full((60, 80, 3), 20 * (i % 10), np.uint8) for i in range(N)]
    tone = write_video(root / "tone.mp4", clip, fps=15, audio_tone_hz=440.0)
    silent = write_video(root / "silent.mp4", clip, fps=12)
    gen = write_tiny_generator(root / "generator.pt")
    return {"labels": labels, "frames": frames, "tone": tone, "silent": silent, "generator": gen, "root": root}


def _render(inputs, tmp_path, source: Path, side_by_side: bool = True, **cfg):
    return run_render(
        RenderConfig(device="cpu", preset="ultrafast", **cfg), generator_path=inputs["generator"], face_path=None,
        labels_dir=inputs["labels"], source_video=source, source_frames_dir=inputs["frames"],
        out=tmp_path / "transfer.mp4", side_by_side_out=tmp_path / "sbs.mp4" if side_by_side else None,
    )


def test_render_writes_one_h264_frame_per_label_at_source_fps_with_audio(inputs, tmp_path):
    result = _render(inputs, tmp_path, inputs["tone"])
    assert result.frames == N and not result.face_applied
    info = probe(tmp_path / "transfer.mp4")
    assert (info.codec, info.width, info.height) == ("h264", W, H)
    assert info.fps == pytest.approx(15.0)
    assert info.has_audio and info.audio_codec == "aac"
    assert sum(1 for _ in iter_frames(tmp_path / "transfer.mp4")) == N
    with av.open(str(tmp_path / "transfer.mp4")) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
    sbs = probe(tmp_path / "sbs.mp4")
    assert (sbs.width, sbs.height, sbs.frame_count, sbs.has_audio) == (40 + 2 * W, H, N, True)
    # middle panel is the label itself
    first_sbs = next(iter_frames(tmp_path / "sbs.mp4")).image
    from dancepipe.render import load_rgb

    label0 = load_rgb(inputs["labels"] / "000000.png")
    assert np.abs(first_sbs[:, 40:40 + W].astype(int) - label0.astype(int)).mean() < 12


def test_render_without_source_audio_has_no_audio_track(inputs, tmp_path):
    result = _render(inputs, tmp_path, inputs["silent"], side_by_side=False)
    info = probe(tmp_path / "transfer.mp4")
    assert not info.has_audio
    assert info.fps == pytest.approx(12.0) and info.frame_count == N
    assert result.outputs == [str(tmp_path / "transfer.mp4")]
    assert not (tmp_path / "sbs.mp4").exists()


def test_render_output_matches_generating_directly(inputs, tmp_path):
    from dancepipe.checkpoint import load_generator
    from dancepipe.render import load_rgb, read_index

    _render(inputs, tmp_path, inputs["silent"], side_by_side=False, crf=0)
    g, _ = load_generator(inputs["generator"])
    idx = read_index(inputs["labels"], "labels")
    expected = list(generate_sequence(g, [load_rgb(inputs["labels"] / f) for f in idx["file"]],
                                      device=torch.device("cpu")))
    got = [f.image for f in iter_frames(tmp_path / "transfer.mp4")]
    luma = np.array([0.299, 0.587, 0.114])
    # crf 0 keeps luma (almost) exactly; yuv420p halves chroma resolution, so compare luma
    errors = [np.abs((a.astype(float) - b.astype(float)) @ luma).mean() for a, b in zip(expected, got, strict=True)]
    assert max(errors) < 1.5


def test_missing_labels_fail_with_one_sentence_and_no_output(inputs, tmp_path):
    with pytest.raises(DancepipeError, match="labels directory does not exist"):
        run_render(RenderConfig(device="cpu"), generator_path=inputs["generator"], face_path=None,
                   labels_dir=tmp_path / "nope", source_video=inputs["silent"], source_frames_dir=None,
                   out=tmp_path / "t.mp4", side_by_side_out=None)
    assert not (tmp_path / "t.mp4").exists()


def test_render_config_rejects_bad_values():
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        RenderConfig(device="gpu")
    with pytest.raises(ValueError):
        RenderConfig(crf=60)


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
        "--source-video", str(inputs["tone"]), "--source-frames", str(inputs["frames"]),
        "--out", str(tmp_path / "o.mp4"), "--side-by-side", str(tmp_path / "s.mp4"),
        "--params", str(_params(tmp_path)),
    ])
    assert res.exit_code == 0, res.output
    assert f"{N} frames" in res.output and "face refinement off" in res.output
    assert probe(tmp_path / "o.mp4").frame_count == N and (tmp_path / "s.mp4").exists()


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


def test_stage_cli_side_by_side_without_source_frames_is_one_sentence_and_writes_nothing(inputs, tmp_path):
    from stages.render import main

    res = CliRunner().invoke(main, [
        "--generator", str(inputs["generator"]), "--face", str(tmp_path / "absent.pt"), "--labels", str(inputs["labels"]),
        "--source-video", str(inputs["silent"]), "--out", str(tmp_path / "o.mp4"),
        "--side-by-side", str(tmp_path / "s.mp4"), "--params", str(_params(tmp_path, face=False)),
    ])
    assert res.exit_code == 1
    assert "side-by-side video needs the source frames directory" in res.output and res.output.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_stage_cli_bad_input_exits_1_with_one_sentence(inputs, tmp_path):
    from stages.render import main

    bad = tmp_path / "not_a_model.pt"
    res = CliRunner().invoke(main, [
        "--generator", str(bad), "--face", str(bad), "--labels", str(inputs["labels"]),
        "--source-video", str(inputs["tone"]), "--source-frames", str(inputs["frames"]),
        "--out", str(tmp_path / "o.mp4"), "--side-by-side", str(tmp_path / "s.mp4"),
        "--params", str(_params(tmp_path)),
    ])
    assert res.exit_code == 1
    assert "not_a_model.pt: generator checkpoint does not exist" in res.output and res.output.count("\n") == 1
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "s.mp4").exists()
    res = CliRunner().invoke(main, [
        "--generator", str(inputs["generator"]), "--face", str(bad), "--labels", str(inputs["labels"]),
        "--source-video", str(inputs["tone"]), "--source-frames", str(inputs["frames"]),
        "--out", str(tmp_path / "o.mp4"), "--side-by-side", str(tmp_path / "s.mp4"),
        "--params", str(_params(tmp_path, crf=99)),
    ])
    assert res.exit_code == 1 and "render.crf" in res.output


@pytest.mark.slow
def test_demo_transfer_video_has_one_frame_per_source_frame_and_the_source_audio(demo_transfer_video, demo_labels,
                                                                                  demo_source_video):
    import pandas as pd

    n = len(pd.read_parquet(demo_labels["transfer"] / "index.parquet"))
    src = probe(demo_source_video)
    out = probe(demo_transfer_video)
    assert n == src.frame_count
    assert out.frame_count == n and out.codec == "h264"
    assert out.fps == pytest.approx(src.fps)
    assert out.has_audio and out.audio_codec == src.audio_codec == "aac"
    assert (demo_transfer_video.parent / "side_by_side.mp4").exists()

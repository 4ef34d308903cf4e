"""Decoding and probing (dancepipe.video.decode) on tiny synthetic videos made with PyAV."""

from __future__ import annotations

import subprocess

import cv2
import numpy as np
import pytest

from dancepipe.errors import DancepipeError
from dancepipe.video.decode import DecodeReport, iter_frames, iter_planes, probe

# Ten flat frames, each a different colour, so decoded content can be checked per frame.
COLOURS = [(20 * i + 30, 200 - 15 * i, (60 * i) % 256) for i in range(10)]


def flat_frames(w: int = 64, h: int = 48) -> list[np.ndarray]:
    return [np.full((h, w, 3), c, np.uint8) for c in COLOURS]


def noisy_frames(n: int, w: int = 64, h: int = 48, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def ffmpeg_decode_first(path) -> np.ndarray:
    """The first frame as decoded (and auto-rotated) by the ffmpeg command line: an independent oracle."""
    import imageio_ffmpeg

    out = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-frames:v", "1",
         "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True, check=True,
    ).stdout
    return np.frombuffer(out, np.uint8)


def test_decodes_every_frame_with_its_content(make_video):
    path = make_video("flat.mp4", flat_frames(), fps=10)
    report = DecodeReport()
    frames = list(iter_frames(path, report=report))
    assert [f.index for f in frames] == list(range(10))
    assert report.decoded == 10 and report.errors == 0 and report.missing == 0
    for f, colour in zip(frames, COLOURS, strict=True):
        assert f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8
        np.testing.assert_allclose(f.image.reshape(-1, 3).mean(axis=0), colour, atol=4)
    np.testing.assert_allclose([f.timestamp for f in frames], np.arange(10) / 10, atol=1e-6)
    bgr = next(iter_frames(path, bgr=True)).image
    np.testing.assert_array_equal(bgr[..., ::-1], frames[0].image)
    info = probe(path)
    assert (info.width, info.height, info.frame_count, info.rotation) == (64, 48, 10, 0)
    assert info.fps == pytest.approx(10) and info.duration == pytest.approx(1.0)
    assert not info.variable_frame_rate and not info.has_audio and info.codec == "h264"


def test_planes_match_rgb_decode(make_video):
    path = make_video("noise.mp4", noisy_frames(4), fps=10)
    for rgb, planar in zip(iter_frames(path), iter_planes(path), strict=True):
        assert (rgb.index, rgb.timestamp) == (planar.index, planar.timestamp)
        assert planar.y.shape == (48, 64) and planar.u.shape == planar.v.shape == (24, 32)
        i420 = np.concatenate([planar.y, planar.u.reshape(12, 64), planar.v.reshape(12, 64)])
        converted = cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)
        # Two different YUV->RGB implementations: equal up to rounding and chroma filtering.
        assert np.abs(converted.astype(int) - rgb.image).mean() < 6


@pytest.mark.parametrize("rotation", [90, 270, 180])
def test_rotation_metadata_gives_upright_frames(make_video, rotation):
    img = np.zeros((32, 64, 3), np.uint8)
    img[:8, :8] = (255, 0, 0)  # red top-left, blue bottom-right: orientation is checkable
    img[-8:, -16:] = (0, 0, 255)
    path = make_video(f"rot{rotation}.mp4", [img] * 3, rotation=rotation)
    info = probe(path)
    assert info.rotation == rotation
    expected_wh = (32, 64) if rotation in (90, 270) else (64, 32)
    assert (info.width, info.height) == expected_wh
    frame = next(iter_frames(path)).image
    assert frame.shape == (expected_wh[1], expected_wh[0], 3)
    # Same picture as ffmpeg's own auto-rotation, and not the stored (sideways) one.
    np.testing.assert_array_equal(frame.reshape(-1), ffmpeg_decode_first(path))
    planar = next(iter_planes(path))
    assert planar.y.shape == frame.shape[:2]
    red = np.argwhere((frame[..., 0] > 200) & (frame[..., 2] < 60)).mean(axis=0)
    blue = np.argwhere((frame[..., 2] > 200) & (frame[..., 0] < 60)).mean(axis=0)
    assert not np.allclose(red, blue)
    # The corner markers moved as a rotation moves them (not a flip): check via np.rot90.
    k = {90: 1, 180: 2, 270: 3}[rotation]
    ref = np.rot90(img, k)
    ref_red = np.argwhere((ref[..., 0] > 200) & (ref[..., 2] < 60)).mean(axis=0)
    np.testing.assert_allclose(red, ref_red, atol=1.5)


def test_variable_frame_rate_keeps_presentation_times(make_video):
    pts_ms = [0, 100, 150, 400, 450, 500, 900, 1000]
    # rate=1000 makes the encoder's time base 1 ms, so the uneven times survive encoding.
    path = make_video("vfr.mp4", flat_frames()[: len(pts_ms)], fps=1000, pts=pts_ms)
    info = probe(path)
    assert info.variable_frame_rate
    assert info.frame_count == len(pts_ms)
    ts = [f.timestamp for f in iter_frames(path)]
    np.testing.assert_allclose(ts, np.array(pts_ms) / 1000, atol=1e-3)
    # The frame rate reported for a VFR clip is the mean rate, not the container's nominal one.
    assert info.fps == pytest.approx(len(pts_ms) / info.duration)


def test_constant_frame_rate_is_not_flagged_vfr(make_video):
    path = make_video("cfr.mp4", flat_frames()[:6], fps=25, pts=[40 * i for i in range(6)])
    assert not probe(path).variable_frame_rate


@pytest.mark.parametrize("name", ["cut.mkv", "cut.mp4"])
def test_truncated_file_decodes_what_is_readable_and_counts_the_loss(make_video, tmp_path, name):
    if name.endswith(".mp4"):
        # Index at the front (as web/phone exports have it), else an mp4 cut anywhere is unreadable.
        import av

        path = tmp_path / "full.mp4"
        with av.open(str(path), "w", options={"movflags": "faststart"}) as c:
            s = c.add_stream("libx264", rate=10)
            s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
            for img in noisy_frames(30):
                c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
            c.mux(s.encode())
    else:
        path = make_video("full.mkv", noisy_frames(30), fps=10)
    cut = tmp_path / name
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    report = DecodeReport()
    frames = list(iter_frames(cut, report=report))
    assert 5 < len(frames) < 25
    assert report.decoded == len(frames)
    assert report.damaged and report.errors + report.missing >= 30 - len(frames) - 3
    assert [f.index for f in frames] == list(range(len(frames)))
    full = DecodeReport()
    assert sum(1 for _ in iter_frames(path, report=full)) == 30 and not full.damaged


def test_mp4_cut_before_its_index_is_rejected(make_video, tmp_path):
    path = make_video("tail_index.mp4", noisy_frames(10))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DancepipeError, match="cut.mp4: not a readable video file"):
        probe(cut)


def test_audio_is_detected(make_video):
    with_audio = make_video("tone.mp4", flat_frames(), fps=10, audio_tone_hz=440.0)
    info = probe(with_audio)
    assert info.has_audio and info.audio_codec == "aac"
    assert sum(1 for _ in iter_frames(with_audio)) == 10  # audio packets never reach the video decoder
    assert not probe(make_video("silent.mp4", flat_frames(), fps=10)).has_audio


def test_bad_files_raise_one_sentence(tmp_path):
    with pytest.raises(DancepipeError, match="does not exist"):
        probe(tmp_path / "nope.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(DancepipeError, match="empty"):
        list(iter_frames(tmp_path / "empty.mp4"))
    (tmp_path / "text.mp4").write_text("this is not a video\n" * 20)
    with pytest.raises(DancepipeError, match="not a readable video"):
        probe(tmp_path / "text.mp4")

"""H.264 writing and audio carry-over, checked by decoding what was written."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from dancepipe.errors import DancepipeError
from dancepipe.video.decode import iter_frames, probe
from dancepipe.video.encode import fps_fraction, mp4_writer
from tests.conftest import write_video


def _frames(n: int, h: int = 48, w: int = 64) -> list[np.ndarray]:
    return [np.full((h, w, 3), (i * 12) % 256, np.uint8) for i in range(n)]


def write_onset_video(path, n: int, fps: int, onset: float, codec: str = "aac", rate: int = 44100,
                      images: list[np.ndarray] | None = None):
    """A clip of ``n`` frames (grey, or ``images``) whose audio is silent until ``onset`` s, then a 440 Hz tone.

    ``codec`` aac writes an MP4 (copied by the writer), pcm_s16le a Matroska file (re-encoded).
    """
    images = _frames(n) if images is None else images
    container = av.open(str(path), "w", format="mp4" if codec == "aac" else "matroska")
    v = container.add_stream("libx264", rate=fps)
    v.height, v.width = images[0].shape[:2]
    v.pix_fmt = "yuv420p"
    a = container.add_stream(codec, rate=rate)
    a.layout = "mono"
    for img in images:
        for p in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            container.mux(p)
    for p in v.encode():
        container.mux(p)
    t = np.arange(int(n / fps * rate)) / rate
    tone = np.where(t >= onset, 0.5 * np.sin(2 * np.pi * 440 * t), 0.0).astype(np.float32)[None]
    if codec != "aac":
        tone = (tone * 32767).astype(np.int16)
    for start in range(0, tone.shape[1], 1024):
        f = av.AudioFrame.from_ndarray(tone[:, start:start + 1024], format="fltp" if codec == "aac" else "s16",
                                       layout="mono")
        f.sample_rate, f.pts = rate, start
        for p in a.encode(f):
            container.mux(p)
    for p in a.encode():
        container.mux(p)
    container.close()
    return path


def decoded_audio(path) -> tuple[np.ndarray, int]:
    """The first audio track of ``path`` decoded (as players do, edit lists applied), mono float, and its rate."""
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        chunks = []
        for f in c.decode(s):
            x = f.to_ndarray()
            x = x[0] if f.format.is_planar else x.reshape(-1, len(f.layout.channels))[:, 0]
            chunks.append(x.astype(np.float64) / (32768.0 if x.dtype == np.int16 else 1.0))
        return np.concatenate(chunks), s.rate


def onset_seconds(samples: np.ndarray, rate: int, threshold: float = 0.1) -> float:
    """Time of the first sample louder than ``threshold`` (inf when none is)."""
    loud = np.flatnonzero(np.abs(samples) > threshold)
    return loud[0] / rate if len(loud) else float("inf")


def _audio_seconds(path) -> float:
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        return sum(f.samples for f in c.decode(s)) / s.rate


def test_writes_h264_yuv420p_at_the_given_rate_without_audio(tmp_path):
    out = tmp_path / "out.mp4"
    with mp4_writer(out, width=64, height=48, fps=Fraction(30000, 1001), crf=10) as w:
        for img in _frames(12):
            w.write(img)
    info = probe(out)
    assert (info.codec, info.width, info.height, info.frame_count) == ("h264", 64, 48, 12)
    assert info.fps == pytest.approx(30000 / 1001)
    assert not info.has_audio
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
    decoded = [f.image for f in iter_frames(out)]
    assert len(decoded) == 12
    assert abs(int(decoded[5].mean()) - 60) <= 2


def test_odd_sizes_are_padded_to_even(tmp_path):
    out = tmp_path / "odd.mp4"
    with mp4_writer(out, width=33, height=21, fps=10) as w:
        for img in _frames(3, 21, 33):
            w.write(img)
    info = probe(out)
    assert (info.width, info.height) == (34, 22)


def test_aac_audio_is_copied_and_trimmed_to_the_video(tmp_path):
    src = write_video(tmp_path / "tone.mp4", _frames(20), fps=10, audio_tone_hz=440.0)
    out = tmp_path / "out.mp4"
    with mp4_writer(out, width=64, height=48, fps=10, audio_from=src) as w:
        for img in _frames(15):  # shorter than the source: audio stops with the video
            w.write(img)
    info = probe(out)
    assert info.has_audio and info.audio_codec == "aac"
    assert 1.4 <= _audio_seconds(out) <= 1.6
    with av.open(str(src)) as a, av.open(str(out)) as b:
        src_packets = [bytes(p) for p in a.demux(a.streams.audio[0]) if p.size][:10]
        out_packets = [bytes(p) for p in b.demux(b.streams.audio[0]) if p.size][:10]
    assert src_packets == out_packets  # remuxed, not re-encoded


def test_audio_that_mp4_cannot_hold_is_reencoded_to_aac(tmp_path):
    src = tmp_path / "pcm.mkv"
    with av.open(str(src), "w") as c:
        v = c.add_stream("libx264", rate=10)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = c.add_stream("pcm_s16le", rate=8000)
        a.layout = "mono"
        for img in _frames(10):
            for p in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        tone = (3000 * np.sin(np.arange(8000) / 8000 * 2 * np.pi * 300)).astype(np.int16)[None]
        for start in range(0, 8000, 800):
            f = av.AudioFrame.from_ndarray(tone[:, start:start + 800], format="s16", layout="mono")
            f.sample_rate, f.pts = 8000, start
            for p in a.encode(f):
                c.mux(p)
        for p in a.encode():
            c.mux(p)
    out = tmp_path / "out.mp4"
    with mp4_writer(out, width=64, height=48, fps=10, audio_from=src) as w:
        for img in _frames(10):
            w.write(img)
    info = probe(out)
    assert info.audio_codec == "aac"
    assert 0.9 <= _audio_seconds(out) <= 1.2


def test_failure_leaves_no_file_behind(tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(DancepipeError, match="expected"):
        with mp4_writer(out, width=64, height=48, fps=10) as w:
            w.write(_frames(1)[0])
            w.write(np.zeros((10, 10, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DancepipeError, match="no frames"):
        with mp4_writer(out, width=64, height=48, fps=10):
            pass
    assert list(tmp_path.iterdir()) == []


def test_fps_fraction_snaps_ntsc_rates():
    assert fps_fraction(29.97002997) == Fraction(30000, 1001)
    assert fps_fraction(60.0) == 60
    with pytest.raises(DancepipeError):
        fps_fraction(0.0)


@pytest.mark.parametrize("codec", ["aac", "pcm_s16le"])  # packet copy, and decode + re-encode
@pytest.mark.parametrize("start", [0.0, 0.37, 1.0])
def test_audio_start_shifts_the_track_to_the_first_frame_shown(tmp_path, codec, start):
    # the tone starts 1.5 s into the source; an output whose first frame is source time
    # ``start`` must hear it at 1.5 - start, and its audio must end with its 2 s of video
    src = write_onset_video(tmp_path / ("src.mp4" if codec == "aac" else "src.mkv"), 30, 10, onset=1.5, codec=codec)
    assert onset_seconds(*decoded_audio(src)) == pytest.approx(1.5, abs=0.002)
    out = tmp_path / "out.mp4"
    with mp4_writer(out, width=64, height=48, fps=10, audio_from=src, audio_start=start) as w:
        for img in _frames(20):
            w.write(img)
    assert probe(out).audio_codec == "aac"
    samples, rate = decoded_audio(out)
    assert onset_seconds(samples, rate) == pytest.approx(1.5 - start, abs=0.005)
    assert 2.0 - 0.005 <= len(samples) / rate <= 2.0 + 2 * 1024 / rate  # ends with the video (whole AAC frames)


def test_a_negative_audio_start_is_refused(tmp_path):
    src = write_onset_video(tmp_path / "src.mp4", 10, 10, onset=0.5)
    with pytest.raises(DancepipeError, match="audio start"):
        with mp4_writer(tmp_path / "o.mp4", width=64, height=48, fps=10, audio_from=src, audio_start=-1.0) as w:
            w.write(_frames(1)[0])
    assert not (tmp_path / "o.mp4").exists()


def write_tone_source(path, audio_codec: str, video_codec: str = "libx264", n: int = 20, fps: int = 10,
                      rate: int = 48000, tone_hz: float = 440.0, options: dict[str, str] | None = None):
    """A grey clip (``n`` frames) with a stereo ``tone_hz`` sine of the clip's length in ``audio_codec``.

    The container follows ``path``'s extension; samples are written in the encoder's first
    sample format.
    """
    container = av.open(str(path), "w")
    v = container.add_stream(video_codec, rate=fps)
    v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
    a = container.add_stream(audio_codec, rate=rate, options=options or {})
    a.layout = "stereo"
    fmt = av.AudioFormat(av.Codec(audio_codec, "w").audio_formats[0].name)
    for img in _frames(n):
        container.mux(v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
    container.mux(v.encode())
    total = int(n / fps * rate)
    tone = 0.4 * np.sin(2 * np.pi * tone_hz * np.arange(total) / rate)
    scale = {"flt": 1.0, "s16": 32767.0, "s32": 2**31 * 0.99}[fmt.name.rstrip("p")]
    dtype = {"flt": np.float32, "s16": np.int16, "s32": np.int32}[fmt.name.rstrip("p")]
    for start in range(0, total, 1024):
        x = tone[start:start + 1024] * scale
        data = np.stack([x, x]) if fmt.is_planar else np.repeat(x, 2)[None]
        f = av.AudioFrame.from_ndarray(np.ascontiguousarray(data.astype(dtype)), format=fmt.name, layout="stereo")
        f.sample_rate, f.pts = rate, start
        container.mux(a.encode(f))
    container.mux(a.encode())
    container.close()
    return path


def _codec(stream) -> str:
    """The codec of a stream (FFmpeg's codec name, not its decoder's: mp3, not mp3float)."""
    return stream.codec_context.codec.canonical_name


def _dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


# source file, its audio encoder (options), its video encoder, the codec expected in the MP4,
# and the longest packet the copied track may end with (AAC re-encoding: two 1024-sample frames)
AUDIO_SOURCES = {
    "mp3 in avi": ("src.avi", "libmp3lame", None, "libx264", "mp3", 1152),
    "ac3 in mkv": ("src.mkv", "ac3", None, "libx264", "ac3", 1536),
    "eac3 in mp4": ("src.mp4", "eac3", None, "libx264", "eac3", 1536),
    "alac in mov": ("src.mov", "alac", None, "libx264", "alac", 4096),
    "opus in webm": ("src.webm", "libopus", None, "libvpx-vp9", "aac", 2048),
    "vorbis in webm": ("src.webm", "vorbis", {"strict": "experimental"}, "libvpx", "aac", 2048),
    "flac in mkv": ("src.mkv", "flac", None, "libx264", "aac", 2048),
}


@pytest.mark.parametrize("case", list(AUDIO_SOURCES))
def test_each_documented_audio_codec_is_copied_or_reencoded_to_aac(tmp_path, case):
    """docs/render-evaluate.md: AAC, MP3, AC-3, E-AC-3 and ALAC are copied unchanged; anything
    else (Vorbis, Opus-in-WebM, FLAC, PCM, ...) becomes AAC. Either way the MP4 holds the
    source's tone, as long as the video (1.5 s of a 2 s source)."""
    name, encoder, options, video_codec, expected, max_packet = AUDIO_SOURCES[case]
    src = write_tone_source(tmp_path / name, encoder, video_codec, options=options)
    with av.open(str(src)) as c:
        source_codec = _codec(c.streams.audio[0])
    out = tmp_path / "out.mp4"
    with mp4_writer(out, width=64, height=48, fps=10, audio_from=src) as w:
        for img in _frames(15):
            w.write(img)
    with av.open(str(out)) as c:
        assert [s.type for s in c.streams] == ["video", "audio"]
        assert _codec(c.streams.audio[0]) == expected, f"{source_codec} became {_codec(c.streams.audio[0])}"
        assert c.streams.audio[0].rate == 48000
    samples, rate = decoded_audio(out)
    assert 1.5 - 0.005 <= len(samples) / rate <= 1.5 + max_packet / rate + 0.005
    assert _dominant_hz(samples[rate // 10:], rate) == pytest.approx(440.0, abs=2.0)
    if expected == source_codec:  # remuxed: the packets are the source's, byte for byte
        with av.open(str(src)) as a, av.open(str(out)) as b:
            src_packets = [bytes(p) for p in a.demux(a.streams.audio[0]) if p.size][:10]
            out_packets = [bytes(p) for p in b.demux(b.streams.audio[0]) if p.size][:10]
        assert src_packets == out_packets


def test_probe_names_the_audio_codec_not_its_decoder(tmp_path):
    """MP3 decodes with FFmpeg's 'mp3float' decoder; probe (and so meta.json) says 'mp3'."""
    from dancepipe.video.decode import probe

    name, encoder, options, video_codec, _, _ = AUDIO_SOURCES["mp3 in avi"]
    src = write_tone_source(tmp_path / name, encoder, video_codec, options=options)
    assert probe(src).audio_codec == "mp3"

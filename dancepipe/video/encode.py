"""H.264 MP4 writing with PyAV, optionally carrying another video's audio track.

The rendered videos must play in a browser, so the picture is H.264 (libx264) in
yuv420p with even dimensions (odd sizes are padded by one edge pixel on the right or
bottom). Frames are fed one at a time and written immediately, so memory stays
constant however long the clip is. The file is written to a temporary sibling and
renamed into place only when it is complete (see :mod:`dancepipe.atomic`).

Audio: when ``audio_from`` names a video with an audio stream, its packets are copied
unchanged (remuxed) if the codec can live in MP4 (:data:`MP4_COPY_CODECS`); any other
codec (Vorbis, PCM, ...) is decoded and re-encoded to AAC. Audio packets are
interleaved with the video as it is written and are trimmed to the video's duration.

``audio_start`` (seconds after the source's first video frame) starts the audio later,
for an output whose first frame is a later source frame (render's ``trim`` rule): the
copied track then begins with the packet that covers that time, plus one packet of
decoder pre-roll, and the packets before the output's start get negative times, which
the MP4 muxer turns into an edit list, so players start at the exact sample; the
re-encoded track drops the decoded samples before that time.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from dancepipe.atomic import atomic_path
from dancepipe.errors import DancepipeError
from dancepipe.video.decode import resolve_video

log = logging.getLogger(__name__)

# Audio codecs copied bit for bit into MP4; everything else is re-encoded to AAC.
MP4_COPY_CODECS: frozenset[str] = frozenset({"aac", "mp3", "ac3", "eac3", "alac"})


def fps_fraction(fps: float | Fraction) -> Fraction:
    """Turn a float frame rate into an exact fraction (29.97 → 30000/1001)."""
    if isinstance(fps, Fraction):
        return fps
    if not np.isfinite(fps) or fps <= 0:
        raise DancepipeError(f"frame rate {fps!r} is not a positive number")
    return Fraction(fps).limit_denominator(1001)


def even_pad(image: np.ndarray) -> np.ndarray:
    """Pad an (H, W, 3) image by one edge pixel on the right/bottom where H or W is odd."""
    h, w = image.shape[:2]
    ph, pw = h % 2, w % 2
    if not (ph or pw):
        return image
    return np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="edge")


class _AudioCopier:
    """Feeds the audio of ``source`` into ``out`` up to a given time, copying or re-encoding.

    Output time 0 is source time ``start`` seconds after the source's first video
    frame; audio before it is dropped (all but one pre-roll packet when copying).
    """

    def __init__(self, source: Path, out: av.container.OutputContainer, start: float = 0.0) -> None:
        if not np.isfinite(start) or start < 0:
            raise DancepipeError(f"{source}: audio start {start!r} s is not a time >= 0")
        self.input = av.open(str(source))
        self.in_stream = self.input.streams.audio[0]
        codec = self.in_stream.codec_context.codec.canonical_name  # "mp3", not its decoder "mp3float"
        self.copy = codec in MP4_COPY_CODECS
        # Keep audio in sync with the first video frame: the video timeline starts there.
        video = self.input.streams.video[0] if self.input.streams.video else None
        v_start = video.start_time if video is not None and video.start_time is not None else 0
        v_offset = float(v_start * video.time_base) if video is not None and video.time_base else 0.0
        self.offset = v_offset + float(start)  # source seconds shown at output time 0
        tb = self.in_stream.time_base
        self.in_tb = float(tb) if tb else 1.0 / max(1, self.in_stream.rate or 1)
        if self.copy:
            self.out_stream = out.add_stream_from_template(self.in_stream)
            log.info("copying the %s audio track of %s", codec, source)
        else:
            rate = self.in_stream.rate or 44100
            self.out_stream = out.add_stream("aac", rate=rate)
            # Unlabelled layouts ("1 channels") are not accepted by the AAC encoder.
            layout = "mono" if self.in_stream.codec_context.channels == 1 else "stereo"
            self.out_stream.layout = layout
            self.resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
            self.samples = 0
            log.info("%s audio in %s cannot go into MP4 unchanged; re-encoding it to AAC", codec, source)
        self.packets = self.input.demux(self.in_stream)
        self.pending: av.Packet | None = None
        self.preroll: av.Packet | None = None  # the last packet that ends before output time 0
        self.started = False  # re-encoding: the samples before output time 0 have been dropped
        self.done = False
        self.out = out

    def _next(self) -> av.Packet | None:
        if self.pending is not None:
            p, self.pending = self.pending, None
            return p
        for packet in self.packets:
            if packet.pts is not None and packet.size > 0:
                return packet
        return None

    def _time(self, packet: av.Packet) -> float:
        return float(packet.pts) * self.in_tb - self.offset

    def feed(self, until: float, end: float | None = None) -> None:
        """Write audio packets starting before ``until`` seconds (none starting at/after ``end``)."""
        while not self.done:
            packet = self._next()
            if packet is None:
                self.done = True
                break
            t = self._time(packet)
            if t >= until:
                self.pending = packet
                break
            if end is not None and t >= end:
                self.done = True
                break
            if self.copy:
                self._copy(packet, t)
            else:
                self._reencode(packet)

    def _copy(self, packet: av.Packet, t: float) -> None:
        """Remux one packet at output time ``t``; packets ending before time 0 are kept only as pre-roll."""
        if t + float(packet.duration or 0) * self.in_tb <= 0:
            self.preroll = packet  # entirely before the output's start
            return
        if self.preroll is not None:
            # One packet before the start primes the decoder (AAC overlaps frames); like
            # the encoder's own priming it keeps a negative time, and the MP4 muxer
            # writes an edit list so that playback starts at output time 0.
            self._mux_shifted(self.preroll)
            self.preroll = None
        self._mux_shifted(packet)

    def _mux_shifted(self, packet: av.Packet) -> None:
        shift = round(self.offset / self.in_tb)
        packet.pts -= shift
        if packet.dts is not None:
            packet.dts -= shift
        packet.stream = self.out_stream
        self.out.mux(packet)

    def _drop_before_start(self, frame: av.AudioFrame, packet: av.Packet) -> av.AudioFrame | None:
        """The part of a decoded frame at output time >= 0 (None when it all lies before)."""
        if self.started:
            return frame
        start = float(frame.time) if frame.time is not None else float(packet.pts) * self.in_tb
        t = start - self.offset
        if t >= 0:
            self.started = True
            return frame
        cut = int(round(-t * frame.sample_rate))
        if cut >= frame.samples:
            return None
        self.started = True
        if cut == 0:
            return frame
        data = frame.to_ndarray()
        channels = len(frame.layout.channels)
        data = data[:, cut:] if frame.format.is_planar else data[:, cut * channels:]
        trimmed = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=frame.format.name,
                                             layout=frame.layout.name)
        trimmed.sample_rate = frame.sample_rate
        return trimmed

    def _reencode(self, packet: av.Packet | None) -> None:
        frames = packet.decode() if packet is not None else [None]
        for frame in frames:
            if frame is not None and packet is not None:
                frame = self._drop_before_start(frame, packet)
                if frame is None:
                    continue
            for rframe in self.resampler.resample(frame):
                rframe.pts = self.samples
                rframe.time_base = Fraction(1, self.out_stream.rate)
                self.samples += rframe.samples
                for out_packet in self.out_stream.encode(rframe):
                    self.out.mux(out_packet)

    def finish(self, end: float) -> None:
        """Write the remaining audio that starts before ``end`` and flush any encoder."""
        self.feed(until=end, end=end)
        if not self.copy:
            self._reencode(None)
            for out_packet in self.out_stream.encode(None):
                self.out.mux(out_packet)

    def close(self) -> None:
        self.input.close()


class VideoWriter:
    """An open H.264 MP4 being written frame by frame; made by :func:`mp4_writer`."""

    def __init__(
        self,
        path: Path,
        *,
        width: int,
        height: int,
        fps: Fraction,
        crf: int,
        preset: str,
        audio_from: Path | None,
        name: Path,
        audio_start: float = 0.0,
    ) -> None:
        self.name = name  # the final path, for messages
        self.width, self.height = int(width), int(height)
        self.fps = fps
        self.frames = 0
        self._container = av.open(str(path), "w", format="mp4")
        self._audio: _AudioCopier | None = None
        stream = self._container.add_stream("libx264", rate=fps)
        stream.width = self.width + self.width % 2
        stream.height = self.height + self.height % 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(int(crf)), "preset": preset}
        self._video = stream
        if audio_from is not None:
            audio_from = resolve_video(audio_from)  # an ingested video directory names its file
            try:
                with av.open(str(audio_from)) as probe_in:
                    has_audio = bool(probe_in.streams.audio)
            except (av.error.FFmpegError, OSError) as e:
                raise DancepipeError(f"{audio_from}: cannot read the audio source ({e.__class__.__name__})") from e
            if has_audio:
                self._audio = _AudioCopier(audio_from, self._container, start=audio_start)

    def write(self, image: np.ndarray) -> None:
        """Encode one (H, W, 3) uint8 RGB frame of the size given at construction."""
        if image.shape != (self.height, self.width, 3) or image.dtype != np.uint8:
            raise DancepipeError(
                f"{self.name}: frame {self.frames} is {image.shape} {image.dtype}, expected "
                f"({self.height}, {self.width}, 3) uint8"
            )
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(even_pad(image)), format="rgb24")
        frame.pts = self.frames
        frame.time_base = 1 / self.fps
        for packet in self._video.encode(frame):
            self._container.mux(packet)
        self.frames += 1
        if self._audio is not None:
            # audio up to the end of the video written so far (interleaved, trimmed)
            self._audio.feed(until=self.frames / float(self.fps))

    def finish(self) -> None:
        """Flush the encoder and the rest of the audio (up to the video's end)."""
        if self.frames == 0:
            raise DancepipeError(f"{self.name}: no frames were written")
        for packet in self._video.encode(None):
            self._container.mux(packet)
        if self._audio is not None:
            self._audio.finish(end=self.frames / float(self.fps))

    def close(self) -> None:
        """Release the files (the container writes its trailer)."""
        if self._audio is not None:
            self._audio.close()
            self._audio = None
        self._container.close()


@contextlib.contextmanager
def mp4_writer(
    path: str | Path,
    *,
    width: int,
    height: int,
    fps: float | Fraction,
    crf: int = 18,
    preset: str = "medium",
    audio_from: str | Path | None = None,
    audio_start: float = 0.0,
) -> Iterator[VideoWriter]:
    """Open an H.264 MP4 for frame-by-frame writing; rename it into place on success.

    ``audio_from`` may be None or a video without audio (then the output has no audio
    stream); an ingested video directory stands for the file it holds. ``audio_start``
    is the source time (seconds after its first video frame) that the output's first
    frame shows: the audio starts there and, as always, ends with the video. On an
    exception the partial file is removed and ``path`` is untouched.
    """
    if width < 2 or height < 2:
        raise DancepipeError(f"{path}: cannot encode {width}x{height} frames")
    final = Path(path)
    with atomic_path(final) as tmp:
        writer = VideoWriter(
            tmp, width=width, height=height, fps=fps_fraction(fps), crf=crf, preset=preset,
            audio_from=Path(audio_from) if audio_from is not None else None, name=final,
            audio_start=audio_start,
        )
        try:
            yield writer
            writer.finish()
        finally:
            writer.close()


class BackgroundWriter:
    """Run one or more :class:`VideoWriter` in a thread so encoding overlaps generation.

    ``put(images)`` queues one frame per writer (a tuple in writer order); the queue
    is bounded so memory stays constant. Encoding errors surface on the next ``put``
    or on ``close``.
    """

    def __init__(self, writers: list[VideoWriter], maxsize: int = 8) -> None:
        self.writers = writers
        self.queue: queue.Queue = queue.Queue(maxsize=max(1, maxsize))
        self.error: BaseException | None = None
        self.seconds = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True, name="dancepipe-encode")
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.error is not None:
                continue  # drain after a failure so the producer never blocks
            t0 = time.perf_counter()
            try:
                for writer, image in zip(self.writers, item, strict=True):
                    writer.write(image)
            except BaseException as e:  # noqa: BLE001 - re-raised in the producer thread
                self.error = e
            self.seconds += time.perf_counter() - t0

    def put(self, images: tuple[np.ndarray, ...]) -> None:
        """Queue one frame for each writer (blocks while the queue is full)."""
        if self.error is not None:
            raise self.error
        self.queue.put(images)

    def close(self) -> None:
        """Wait until every queued frame is encoded; re-raise an encoding error."""
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error

"""Video probing and decoding with PyAV.

All decoding in dancepipe goes through here so rotation metadata, variable frame
rates and damaged files are handled in one place:

* frames come out upright: a display-matrix rotation is applied on decode, and the
  reported width/height are those of the upright picture;
* every frame carries its own presentation timestamp, so variable-frame-rate clips
  keep their true timing;
* a truncated file yields the frames that could be decoded and reports how many
  packets failed, instead of crashing half-way.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

import av
import numpy as np

from dancepipe.errors import DancepipeError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What downstream stages need to know about a video (upright geometry)."""

    path: str
    width: int
    height: int
    fps: float
    frame_count: int
    duration: float
    rotation: int
    codec: str
    has_audio: bool
    audio_codec: str | None
    variable_frame_rate: bool

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Frame:
    """One decoded, upright frame: ``image`` is (H, W, 3) uint8 in RGB (or BGR if asked)."""

    index: int
    timestamp: float
    image: np.ndarray


# An ingested video is a directory holding the untouched file (named by its real
# container, e.g. video.avi) and this sidecar, whose "file" key names it.
INGEST_META = "meta.json"

# A container may announce one frame more than it holds (the demo's AVI header says
# 1,572 and 1,571 decode); a shortfall of at most this many frames is not damage.
MISSING_TOLERANCE = 1


def resolve_video(path: str | Path) -> Path:
    """The video file behind ``path``: the path itself, or the file an ingest directory names."""
    p = Path(path)
    if not p.is_dir():
        return p
    meta = p / INGEST_META
    if not meta.is_file():
        raise DancepipeError(f"{p}: expected a video file or an ingested video directory (with {INGEST_META})")
    try:
        name = json.loads(meta.read_text(encoding="utf-8"))["file"]
    except (ValueError, KeyError, TypeError) as e:
        raise DancepipeError(f"{meta}: not an ingest metadata file (no 'file' key)") from e
    return p / name


def container_facts(path: str | Path) -> tuple[str, int | None]:
    """What the container says of itself: the extension naming its format, and its announced frame count.

    The extension (without dot) is the file's own suffix when the container accepts it
    (``.mov`` stays ``.mov``), otherwise the format's usual one, so an AVI is never
    stored as ``.mp4``. The count is the header's (None when it announces none).
    """
    container = _open(path)
    try:
        fmt = container.format
        names = fmt.name.split(",")
        exts = {e.lower() for e in (fmt.extensions or ())}
        n = container.streams.video[0].frames
    finally:
        container.close()
    announced = int(n) if n and n > 0 else None
    own = Path(path).suffix.lower().lstrip(".")
    if own and own in exts:
        return own, announced
    preferred = {"mov": "mp4", "matroska": "mkv", "mpegts": "ts", "mpeg": "mpg"}
    for name in names:
        if name in preferred:
            return preferred[name], announced
        if name in exts:
            return name, announced
    return (sorted(exts)[0] if exts else names[0]), announced


def _open(path: str | Path) -> av.container.InputContainer:
    p = resolve_video(path)
    if not p.exists():
        raise DancepipeError(f"{p}: video file does not exist")
    if p.stat().st_size == 0:
        raise DancepipeError(f"{p}: video file is empty (0 bytes)")
    try:
        container = av.open(str(p))
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise DancepipeError(f"{p}: not a readable video file ({e.__class__.__name__})") from e
    if not container.streams.video:
        container.close()
        raise DancepipeError(f"{p}: file has no video stream")
    return container


def _normalise_rotation(deg: float | int | None) -> int:
    """Snap a display rotation to 0/90/180/270 degrees counter-clockwise."""
    if deg is None:
        return 0
    return int(round(float(deg) / 90.0)) % 4 * 90


def rotate_upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a counter-clockwise display rotation (as stored by phones) to ``image``."""
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(image, k=k)) if k else image


def probe(path: str | Path) -> VideoInfo:
    """Read a video's metadata, decoding only the first frame (for rotation).

    The frame count is taken by demuxing packets (cheap, no decoding) because the
    container's own count is missing or wrong for many files. A clip is flagged as
    variable frame rate when its packet durations differ by more than 1 %.
    """
    container = _open(path)
    try:
        stream = container.streams.video[0]
        rotation = 0
        try:
            first = next(container.decode(stream))
            rotation = _normalise_rotation(getattr(first, "rotation", 0))
        except StopIteration as e:
            raise DancepipeError(f"{path}: video stream contains no decodable frame") from e
        except av.error.FFmpegError as e:
            raise DancepipeError(f"{path}: first frame cannot be decoded ({e})") from e
        container.seek(0)
        pts: list[int] = []
        for packet in container.demux(stream):
            if packet.pts is not None and packet.size > 0:
                pts.append(packet.pts)
        pts.sort()
        tb = stream.time_base or Fraction(1, 1000)
        count = len(pts)
        if count >= 2:
            deltas = np.diff(np.asarray(pts, dtype=np.float64)) * float(tb)
            med = float(np.median(deltas))
            vfr = bool(med > 0 and np.any(np.abs(deltas - med) > 0.01 * med + 1e-9))
            duration = float((pts[-1] - pts[0]) * tb) + med
        else:
            vfr = False
            duration = float(stream.duration * tb) if stream.duration else 0.0
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else (count / duration if duration > 0 else 0.0)
        if count >= 2 and duration > 0 and vfr:
            fps = count / duration
        width, height = stream.codec_context.width, stream.codec_context.height
        if rotation in (90, 270):
            width, height = height, width
        audio = container.streams.audio[0] if container.streams.audio else None
        return VideoInfo(
            path=str(path),
            width=int(width),
            height=int(height),
            fps=float(fps),
            frame_count=int(count),
            duration=float(duration),
            rotation=rotation,
            codec=stream.codec_context.name,
            has_audio=audio is not None,
            audio_codec=audio.codec_context.codec.canonical_name if audio is not None else None,
            variable_frame_rate=vfr,
        )
    finally:
        container.close()


class DecodeReport:
    """Counts what went wrong while decoding, filled in by :func:`iter_frames`.

    ``errors`` counts packets FFmpeg could not read or decode. ``missing`` counts
    frames the container promises (its sample index, or for a single-stream file its
    duration) but that never arrived: a file cut short usually just ends early
    without any decode error, so this is how truncation shows up.
    """

    def __init__(self) -> None:
        self.decoded = 0
        self.errors = 0
        self.missing = 0

    @property
    def damaged(self) -> bool:
        """True when packets were unreadable or frames are missing."""
        return bool(self.errors or self.missing > MISSING_TOLERANCE)


def _missing_frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                    decoded: int, last_ts: float | None, first_ts: float | None) -> int:
    """Frames the container announces beyond what was decoded (0 when it announces nothing)."""
    if stream.frames and stream.frames > 0:
        return max(0, int(stream.frames) - decoded)
    rate = stream.average_rate or stream.guessed_rate
    if not rate or last_ts is None or first_ts is None:
        return 0
    if stream.duration and stream.time_base:
        total = float(stream.duration * stream.time_base)
    elif container.duration and len(container.streams) == 1:
        total = container.duration / 1_000_000
    else:
        return 0
    gap = total - (last_ts - first_ts) - 1.0 / float(rate)
    return max(0, int(round(gap * float(rate)))) if gap > 1.5 / float(rate) else 0


@dataclasses.dataclass(frozen=True)
class PlanarFrame:
    """One decoded, upright frame as 8-bit YUV 4:2:0 planes, without colour conversion.

    ``y`` is (H, W); ``u`` and ``v`` are (ceil(H/2), ceil(W/2)), limited range as the
    codec stores them. They are read-only views into the decoder's buffer (rotated
    videos give views with non-unit strides): slice what you need and copy it. This
    exists for consumers that keep only a small crop of each frame, where converting
    every full frame to RGB would cost more than the rest of their work.
    """

    index: int
    timestamp: float
    y: np.ndarray
    u: np.ndarray
    v: np.ndarray


def _decode(path: str | Path, report: DecodeReport) -> Iterator[tuple[int, float, av.VideoFrame, int]]:
    """Yield ``(index, timestamp, frame, rotation)`` for every decodable frame."""
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tb = float(stream.time_base or Fraction(1, 1000))
        t0: float | None = None
        ts: float | None = None
        index = 0
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError:
                report.errors += 1
                break
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                report.errors += 1
                continue
            for frame in frames:
                ts = (frame.pts * tb) if frame.pts is not None else (index / float(stream.average_rate or 30))
                if t0 is None:
                    t0 = ts
                report.decoded += 1
                yield index, float(ts - t0), frame, _normalise_rotation(getattr(frame, "rotation", 0))
                index += 1
        report.missing = _missing_frames(container, stream, report.decoded, ts, t0)
    finally:
        container.close()


def iter_frames(
    path: str | Path,
    *,
    bgr: bool = False,
    report: DecodeReport | None = None,
) -> Iterator[Frame]:
    """Yield every decodable frame of ``path`` upright, in presentation order.

    Frame indices count decoded frames from 0. Timestamps are in seconds from the
    first frame. Corrupt packets are skipped and counted in ``report.errors``; the
    caller decides whether to warn. Memory use is one frame at a time.
    """
    report = report if report is not None else DecodeReport()
    fmt = "bgr24" if bgr else "rgb24"
    frames = _decode(path, report)
    try:
        for index, ts, frame, rotation in frames:
            image = rotate_upright(frame.to_ndarray(format=fmt), rotation)
            yield Frame(index=index, timestamp=ts, image=image)
    finally:
        frames.close()


def _plane(frame: av.VideoFrame, i: int) -> np.ndarray:
    plane = frame.planes[i]
    flat = np.frombuffer(plane, dtype=np.uint8)[: plane.line_size * plane.height]
    return flat.reshape(plane.height, plane.line_size)[:, : plane.width]


def iter_planes(path: str | Path, *, report: DecodeReport | None = None) -> Iterator[PlanarFrame]:
    """Like :func:`iter_frames`, but yield upright YUV 4:2:0 planes (see :class:`PlanarFrame`).

    Streams stored in another pixel format (4:2:2, 10-bit, full-range ``yuvj``) are
    converted to 8-bit ``yuv420p`` by FFmpeg first; the common ``yuv420p`` case is
    zero-copy. Indices, timestamps and error counting match :func:`iter_frames`.
    """
    report = report if report is not None else DecodeReport()
    frames = _decode(path, report)
    try:
        for index, ts, frame, rotation in frames:
            if frame.format.name != "yuv420p":
                frame = frame.reformat(format="yuv420p")
            k = (rotation // 90) % 4
            y, u, v = (np.rot90(_plane(frame, i), k) if k else _plane(frame, i) for i in range(3))
            yield PlanarFrame(index=index, timestamp=ts, y=y, u=u, v=v)
    finally:
        frames.close()


_DONE = object()


def prefetch(items: Iterable[T], size: int = 8) -> Iterator[T]:
    """Run ``items`` in a background thread, buffering up to ``size`` results.

    Used to overlap video decoding (which releases the GIL inside FFmpeg) with model
    inference. Exceptions raised by the producer are re-raised in the consumer.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, size))
    stop = threading.Event()

    def worker() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_DONE)
        except BaseException as e:  # noqa: BLE001 - forwarded to the consumer thread
            q.put(e)

    thread = threading.Thread(target=worker, daemon=True, name="dancepipe-prefetch")
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Group ``items`` into lists of ``size`` (the last may be shorter)."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


ProgressFn = Callable[[int], None]

"""The live server: the page, the WebSocket protocol and the worker threads of a session.

**Protocol.** The page sends each camera frame as one binary message: the 4-byte magic
``DPL1``, the frame's number (uint32) and its capture time (float64, ms since the
epoch), little-endian, then the frame as a JPEG. The only text message it sends is
``{"type": "recalibrate"}``. The server answers a frame with one binary message: a
uint32 header length, the JSON header (the frame's number and capture time, each step's
milliseconds, drop counts, the calibration state) and a JPEG of camera | stick figure |
generated. Status arrives as JSON text: ``hello`` (the target and the mode), ``busy``
(another page is live), ``error`` (a rejected message, or a failure that ended the
session). Anything else from the page (a wrong magic, a body that is not a JPEG, a
frame larger than ``--max-image-side``, unknown text) is rejected with an ``error``
answer and a log line, and the session goes on; a message over ``max_message_bytes`` is
refused by the WebSocket layer itself, which closes that connection (code 1009) and
leaves the server running.

**One page at a time.** A second page that connects while one is live is refused with a
``busy`` message naming the reason; it can connect once the first one closes (a page that
reconnects while its old connection is still stopping, a reload, waits for it instead).

**Threads.** Frames enter a :class:`~dancepipe.live.slot.NewestSlot`; the *pose* thread
takes the newest, decodes it, runs the pose model and draws the label, and hands the
label on through a second slot to the *generator* thread (waiting until that thread has
taken the previous label: a label drawn while the generator is busy would only be replaced,
and its pose work would slow the generator on a small CPU; when the generator is the slower
step, the pose thread also waits until it can finish just as the generator frees up, so the
frame it takes is as new as it can be), which runs the generator and
the face GAN, composes the three panels, encodes the JPEG and queues it for sending
(newest only again: a slow page never builds a backlog). With ``pipelined`` off, one
thread runs all of it in turn (the serial anchor of ``benchmarks/bench_live.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import io
import json
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from aiohttp import WSMsgType, web
from PIL import Image
from PIL.JpegImagePlugin import JpegImageFile

from dancepipe.errors import DancepipeError
from dancepipe.live.config import LiveConfig
from dancepipe.live.pipeline import (
    Compositor,
    Labeler,
    LabelFrame,
    LiveGenerator,
    Models,
    StepTimes,
    describe,
    encode_jpeg,
)
from dancepipe.live.record import Recorder
from dancepipe.live.slot import NewestSlot, SlotClosed

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
MAGIC = b"DPL1"
FRAME_HEADER = struct.Struct("<4sId")  # magic, frame number, capture time (ms since the epoch)
REPLY_LENGTH = struct.Struct("<I")
BUSY_CODE = 4409  # WebSocket close code for "another page is live" (4000-4999: the application's own)


class BadMessage(ValueError):
    """A message from the page that the protocol does not allow (the sentence says why)."""


@dataclasses.dataclass
class Job:
    """One camera frame on its way through a session."""

    seq: int
    captured_ms: float  # capture time, ms since the epoch (the page's clock, or the server's with --source)
    received: float  # time.perf_counter() when it reached the server
    jpeg: bytes | None = None  # from the page: decoded by the pose thread
    image: np.ndarray | None = None  # from --source: already decoded
    times: StepTimes = dataclasses.field(default_factory=StepTimes)
    # CPU time each thread spent on the frame (time.thread_time: unlike wall time, it does not grow
    # when other processes share the cores); decode to label, then generator to encode
    cpu_ms: dict[str, float] = dataclasses.field(default_factory=dict)


def parse_frame(data: bytes, max_side: int) -> tuple[int, float, bytes]:
    """Check one binary message from the page; returns (frame number, capture time ms, JPEG bytes).

    Only the JPEG's header is read here (its size is checked before anything is
    decoded, so a small file that claims a huge picture is refused cheaply).
    """
    if len(data) < FRAME_HEADER.size + 4:
        raise BadMessage(f"a {len(data)}-byte message is too short to hold a frame")
    magic, seq, captured = FRAME_HEADER.unpack_from(data)
    if magic != MAGIC:
        raise BadMessage(f"a binary message starts with {magic!r}, not the frame magic {MAGIC!r}")
    if not np.isfinite(captured):
        raise BadMessage("a frame's capture time is not a number")
    body = data[FRAME_HEADER.size:]
    with _open_jpeg(body, seq) as im:
        w, h = im.size
    if max(w, h) > max_side:
        raise BadMessage(f"frame {seq} is {w}x{h}, larger than the {max_side}-pixel limit")
    return seq, float(captured), body


def _open_jpeg(body: bytes, seq: int) -> JpegImageFile:
    """The JPEG reader on ``body``, its header read.

    Pillow's JPEG reader is used directly, not ``Image.open``: only a JPEG is wanted, and
    ultralytics replaces ``Image.open`` with a version that, on a file it cannot identify,
    imports an optional HEIF plugin and fails with ModuleNotFoundError where that is not
    installed (which crashed the connection on garbage from the page).
    """
    try:
        return JpegImageFile(io.BytesIO(body))
    except (SyntaxError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise BadMessage(f"frame {seq} is not a readable JPEG ({e})") from e


def decode_jpeg(body: bytes, seq: int) -> np.ndarray:
    """The RGB pixels of a JPEG the page sent (a truncated file is an error, not a grey frame)."""
    with _open_jpeg(body, seq) as im:
        try:
            im.load()
            return np.asarray(im.convert("RGB"))
        except (OSError, ValueError, SyntaxError) as e:
            raise BadMessage(f"frame {seq} could not be decoded ({e})") from e


def pack_reply(header: dict[str, Any], jpeg: bytes) -> bytes:
    """One answer: the header's length, the JSON header, the JPEG."""
    text = json.dumps(header, separators=(",", ":")).encode()
    return REPLY_LENGTH.pack(len(text)) + text + jpeg


def unpack_reply(data: bytes) -> tuple[dict[str, Any], bytes]:
    """The header and JPEG of an answer (what the page's script does; the tests and bench_live use it)."""
    (n,) = REPLY_LENGTH.unpack_from(data)
    return json.loads(data[REPLY_LENGTH.size:REPLY_LENGTH.size + n]), data[REPLY_LENGTH.size + n:]


def source_frames(path: Path, stop: threading.Event) -> Iterator[tuple[np.ndarray, float]]:
    """(image, decode ms) of a video file, in real time and looped, until ``stop`` is set."""
    from dancepipe.video.decode import iter_frames, probe

    info = probe(path)
    period = 1.0 / info.fps if info.fps > 0 else 1.0 / 25
    while not stop.is_set():
        start, shown = time.perf_counter(), 0
        frames = iter_frames(path)
        while not stop.is_set():
            t0 = time.perf_counter()
            frame = next(frames, None)
            if frame is None:
                break
            decode_ms = (time.perf_counter() - t0) * 1e3
            wait = start + shown * period - time.perf_counter()
            if wait > 0:
                stop.wait(wait)
            shown += 1
            yield frame.image, decode_ms
        if shown == 0:
            raise DancepipeError(f"{path}: no frame could be decoded")


class Average:
    """An exponential moving average of a step's duration (0 until the first sample)."""

    def __init__(self, weight: float = 0.2) -> None:
        self.weight, self.value, self.count = weight, 0.0, 0

    def add(self, x: float) -> None:
        self.value = x if self.count == 0 else self.value + self.weight * (x - self.value)
        self.count += 1


class Session:
    """One connected page: the worker threads and everything that follows one person."""

    def __init__(self, server: LiveServer, ws: web.WebSocketResponse, loop: asyncio.AbstractEventLoop) -> None:
        self.server, self.ws, self.loop = server, ws, loop
        models, cfg = server.models, server.cfg
        self.labeler = Labeler(models.target, cfg)
        self.generator = LiveGenerator(models.generator, models.face, models.device, models.precision)
        self.compose = Compositor(models.target.width, models.target.height, cfg.camera_panel_aspect)
        self.inbox: NewestSlot[Job] = NewestSlot()
        self.middle: NewestSlot[tuple[Job, np.ndarray, LabelFrame]] = NewestSlot()
        self.stop_event = threading.Event()
        self.recalibrate = threading.Event()
        self.received = self.shown = self.send_dropped = 0
        self.error: str | None = None
        self.pose_ms, self.generate_ms = Average(), Average()  # the two threads' recent times per frame
        self._pending: bytes | None = None
        self._wake = asyncio.Event()
        self.closing = False  # the page's connection has ended; the threads are stopping
        self.finished = asyncio.Event()  # ... and have stopped
        targets: list[Callable[[], None]] = [self._pose_loop]
        if cfg.pipelined:
            targets.append(self._generator_loop)
        if server.source is not None:
            targets.append(self._play_source)
        self.threads = [threading.Thread(target=self._guard, args=(fn,), daemon=True, name=f"live-{fn.__name__[1:]}")
                        for fn in targets]

    # ---------------------------------------------------------------- control (event loop side)

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def offer(self, job: Job) -> None:
        self.received += 1
        self.inbox.put(job)

    def stop(self) -> None:
        """Stop the threads (blocking: call it from an executor)."""
        self.stop_event.set()
        self.inbox.close()
        self.middle.close()
        for t in self.threads:
            t.join(timeout=30)

    async def send_loop(self) -> None:
        """Send the newest answer whenever there is one (older unsent answers are dropped and counted)."""
        while not self.ws.closed:
            await self._wake.wait()
            self._wake.clear()
            payload, self._pending = self._pending, None
            if payload is not None and not self.ws.closed:
                try:
                    await self.ws.send_bytes(payload)
                except ConnectionResetError:
                    return

    def _deliver(self, payload: bytes) -> None:
        if self._pending is not None:
            self.send_dropped += 1
        self._pending = payload
        self._wake.set()

    # ---------------------------------------------------------------- workers (threads)

    def _guard(self, fn: Callable[[], None]) -> None:
        """Run one worker; a failure ends the session with one sentence on the page and the traceback in the log."""
        try:
            with torch.inference_mode():
                fn()
        except SlotClosed:
            return
        except Exception as e:  # noqa: BLE001 - a worker thread's failure is reported to the page, never lost
            if self.stop_event.is_set():
                return
            log.exception("live session failed in %s", fn.__name__)
            self.error = str(e) if isinstance(e, DancepipeError) else f"{e.__class__.__name__}: {e}"
            self.loop.call_soon_threadsafe(self.server.fail, self, self.error)

    def _play_source(self) -> None:
        seq = 0
        for image, decode_ms in source_frames(self.server.source, self.stop_event):  # type: ignore[arg-type]
            job = Job(seq=seq, captured_ms=time.time() * 1e3, received=time.perf_counter(), image=image)
            job.times.decode = decode_ms
            self.received += 1
            self.inbox.put(job)
            seq += 1

    def _pose_loop(self) -> None:
        models, cfg = self.server.models, self.server.cfg
        while True:
            job = self.inbox.get()
            if job is None:
                continue
            if self.recalibrate.is_set():
                self.recalibrate.clear()
                self.labeler.reset()
                log.info("recalibrating: the person's statistics are collected again")
            t0, c0 = time.perf_counter(), time.thread_time()
            if job.image is None:
                try:
                    job.image = decode_jpeg(job.jpeg or b"", job.seq)
                except BadMessage as e:
                    self.server.reject(str(e), self)
                    continue
                job.times.decode = (time.perf_counter() - t0) * 1e3
            t1 = time.perf_counter()
            det = models.pose([job.image])[0]
            t2 = time.perf_counter()
            label = self.labeler(det, job.captured_ms / 1e3, job.image.shape[0])
            t3 = time.perf_counter()
            job.times.pose, job.times.label = (t2 - t1) * 1e3, (t3 - t2) * 1e3
            job.cpu_ms["pose_thread"] = (time.thread_time() - c0) * 1e3
            if cfg.pipelined:
                self.middle.put((job, job.image, label))
                # backpressure: the next frame is taken only once the generator has this one, so the
                # pose thread never spends the CPU on a label that would be replaced before it is drawn,
                # and the frame it takes next is the newest at that moment
                while not self.middle.wait_empty(timeout=0.5):
                    if self.stop_event.is_set():
                        return
                # just in time: when the generator is the slower step, start the next pose when it will
                # finish as the generator frees up, on the newest frame then, not one that waits for it
                self.pose_ms.add(job.times.decode + job.times.pose + job.times.label)
                self.stop_event.wait(max(0.0, self.generate_ms.value - self.pose_ms.value) / 1e3)
            else:
                self._finish(job, job.image, label)

    def _generator_loop(self) -> None:
        while True:
            item = self.middle.get()
            if item is not None:
                t0 = time.perf_counter()
                self._finish(*item)
                self.generate_ms.add((time.perf_counter() - t0) * 1e3)

    def _finish(self, job: Job, camera: np.ndarray, label: LabelFrame) -> None:
        cfg = self.server.cfg
        c0 = time.thread_time()
        generated = self.generator(label, job.times)
        t0 = time.perf_counter()
        panels = self.compose(camera, label.label, generated)
        jpeg = encode_jpeg(panels, cfg.jpeg_quality)
        job.times.encode = (time.perf_counter() - t0) * 1e3
        job.cpu_ms["generator_thread"] = (time.thread_time() - c0) * 1e3
        self.shown += 1
        header = {
            "type": "frame", "seq": job.seq, "captured": job.captured_ms, "person": label.found,
            "server_ms": round((time.perf_counter() - job.received) * 1e3, 2), "steps": job.times.to_dict(),
            "cpu_ms": {k: round(v, 2) for k, v in job.cpu_ms.items()},
            "received": self.received, "shown": self.shown,
            "dropped": {"camera": self.inbox.dropped, "label": self.middle.dropped, "send": self.send_dropped},
            "calibration": self.labeler.calibration.state.to_dict(),
            "panels": [self.compose.camera_width, self.compose.width, self.compose.width],
        }
        self.loop.call_soon_threadsafe(self._deliver, pack_reply(header, jpeg))
        if self.server.recorder is not None:
            self.server.recorder.show(panels)


class LiveServer:
    """The aiohttp application serving one target (see the module docstring)."""

    def __init__(self, models: Models, cfg: LiveConfig, *, source: Path | None = None,
                 recorder: Recorder | None = None) -> None:
        self.models, self.cfg, self.source, self.recorder = models, cfg, source, recorder
        self.session: Session | None = None
        self.rejected = 0
        self.refused = 0
        self.sessions = 0
        self.app = web.Application()
        self.app.add_routes([
            web.get("/", self._index), web.get("/ws", self._websocket), web.get("/health", self._health),
            web.get("/favicon.ico", self._no_icon),
            web.static("/static", STATIC),
        ])

    # ---------------------------------------------------------------- http

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def _no_icon(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def _health(self, request: web.Request) -> web.Response:
        s = self.session
        return web.json_response({
            **describe(self.models), "mode": "source" if self.source else "camera", "live": s is not None,
            "sessions": self.sessions, "rejected": self.rejected, "refused": self.refused,
            "shown": s.shown if s else 0,
        })

    # ---------------------------------------------------------------- websocket

    def reject(self, reason: str, session: Session | None) -> None:
        """Log a rejected message and tell its page (callable from any thread)."""
        self.rejected += 1
        log.warning("rejected a message from the page: %s", reason)
        if session is not None:
            payload = json.dumps({"type": "error", "message": f"rejected: {reason}"})
            session.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(_send_text(session.ws, payload)))

    def fail(self, session: Session, message: str) -> None:
        """A worker failed: tell the page in one sentence and close its connection."""
        asyncio.ensure_future(_close_with(session.ws, message))

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=self.cfg.max_message_bytes)
        await ws.prepare(request)
        ending = self.session
        if ending is not None and ending.closing:
            # a reloaded page connects while its old connection's threads are still stopping: wait for them
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(ending.finished.wait(), timeout=10)
        if self.session is not None:
            self.refused += 1
            log.info("refused a second page: another page is live")
            await ws.send_json({"type": "busy", "message": "Another page is already live on this server; close it "
                                                           "(or wait for it to close) and reload this one."})
            await ws.close(code=BUSY_CODE, message=b"busy")
            return ws
        loop = asyncio.get_running_loop()
        session = self.session = Session(self, ws, loop)
        self.sessions += 1
        await ws.send_json({"type": "hello", **describe(self.models), "mode": "source" if self.source else "camera",
                            "max_message_bytes": self.cfg.max_message_bytes})
        session.start()
        sender = asyncio.ensure_future(session.send_loop())
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    self._on_frame(session, msg.data)
                elif msg.type == WSMsgType.TEXT:
                    self._on_text(session, msg.data)
                elif msg.type == WSMsgType.ERROR:
                    self.rejected += 1
                    log.warning("rejected a message from the page and closed its connection: %s", ws.exception())
        finally:
            session.closing = True
            sender.cancel()
            await loop.run_in_executor(None, session.stop)
            self.session = None
            session.finished.set()
            log.info("page disconnected: %d frames received, %d shown, dropped %d camera / %d label / %d send",
                     session.received, session.shown, session.inbox.dropped, session.middle.dropped,
                     session.send_dropped)
        return ws

    def _on_frame(self, session: Session, data: bytes) -> None:
        if self.source is not None:
            self.reject("this server plays a --source video, so camera frames are not taken", session)
            return
        try:
            seq, captured, body = parse_frame(data, self.cfg.max_image_side)
        except BadMessage as e:
            self.reject(str(e), session)
            return
        session.offer(Job(seq=seq, captured_ms=captured, received=time.perf_counter(), jpeg=body))

    def _on_text(self, session: Session, text: str) -> None:
        try:
            command = json.loads(text)
        except ValueError:
            command = None
        if isinstance(command, dict) and command.get("type") == "recalibrate":
            session.recalibrate.set()
            return
        self.reject(f"unknown text message {text[:60]!r} (only {{\"type\": \"recalibrate\"}} is understood)", session)


async def _send_text(ws: web.WebSocketResponse, text: str) -> None:
    if not ws.closed:
        try:
            await ws.send_str(text)
        except ConnectionResetError:
            pass


async def _close_with(ws: web.WebSocketResponse, message: str) -> None:
    await _send_text(ws, json.dumps({"type": "error", "message": message, "fatal": True}))
    await ws.close(code=1011, message=b"server error")


# ---------------------------------------------------------------------------- running it


def port_error(host: str, port: int, e: OSError) -> DancepipeError:
    """The one sentence for a port the server cannot listen on."""
    if e.errno == errno.EADDRINUSE:
        return DancepipeError(f"port {port} on {host} is already in use (by another dancepipe live?); "
                              "choose another with --port")
    return DancepipeError(f"cannot listen on {host}:{port} ({e.strerror or e})")


def check_port(host: str, port: int) -> None:
    """Fail early, before the models load, when ``host:port`` cannot be listened on."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise DancepipeError(f"--host {host}: not an address of this machine ({e.strerror})") from e
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds: a closed port in TIME_WAIT is free
        try:
            s.bind(addr)
        except OSError as e:
            raise port_error(host, port, e) from e


class Running:
    """A server listening on a background thread's event loop (tests and bench_live); :meth:`stop` ends it."""

    def __init__(self, server: LiveServer, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server, self.host = server, host
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self.port = port
        self.thread = threading.Thread(target=self._run, daemon=True, name="live-server")
        self.thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            runner = await start(self.server, self.host, self.port)
        except BaseException as e:  # noqa: BLE001 - handed to the thread that started the server
            self._error = e
            self._ready.set()
            return
        self.port = runner.addresses[0][1]
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def stop(self) -> None:
        if self._stop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(timeout=60)


async def start(server: LiveServer, host: str, port: int) -> web.AppRunner:
    """Listen on ``host:port`` (0: any free port); a port in use is one sentence."""
    runner = web.AppRunner(server.app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as e:
        await runner.cleanup()
        raise port_error(host, port, e) from e
    return runner


async def serve_forever(server: LiveServer, host: str, port: int, on_ready: Callable[[str], None]) -> None:
    """Serve until cancelled (Ctrl-C); then close the sessions and the recording."""
    runner = await start(server, host, port)
    on_ready(f"http://{host}:{runner.addresses[0][1]}/")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()

"""A Python stand-in for the page: drive a live server with frames and measure what comes back.

It speaks the page's protocol (:mod:`dancepipe.live.server`) and behaves as its script
does: one frame per camera tick, at most ``in_flight`` frames sent and not yet answered,
the capture time stamped just before the frame is encoded, the answer counted as shown
once its JPEG is decoded. ``benchmarks/bench_live.py`` measures the server with it, and
the tests use it where no browser is needed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from dancepipe.live.server import FRAME_HEADER, MAGIC, unpack_reply


def frame_message(seq: int, image: np.ndarray, captured_ms: float, quality: int = 80) -> bytes:
    """One camera frame as the page sends it: magic, number, capture time, JPEG of the RGB ``image``."""
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return FRAME_HEADER.pack(MAGIC, seq, captured_ms) + jpeg.tobytes()


@dataclasses.dataclass
class Shown:
    """One answer as the client displayed it."""

    header: dict[str, Any]
    image: np.ndarray  # the decoded camera | stick figure | generated panels (RGB)
    latency_ms: float  # capture to decoded
    at: float  # time.perf_counter() when shown


@dataclasses.dataclass
class DriveResult:
    sent: int
    skipped: int  # camera ticks with no frame sent (too many in flight), as the page counts them
    shown: list[Shown]
    texts: list[dict[str, Any]]
    seconds: float
    warmup: float

    def measured(self) -> list[Shown]:
        """The answers after the warm-up."""
        start = self.shown[0].at + self.warmup if self.shown else 0.0
        return [s for s in self.shown if s.at >= start]

    def summary(self) -> dict[str, Any]:
        """frames/s, latency percentiles and median step times over the measured answers."""
        m = self.measured()
        if len(m) < 2:
            return {"fps": 0.0, "frames": len(m)}
        lat = sorted(s.latency_ms for s in m)
        steps = {k: statistics.median(s.header["steps"][k] for s in m) for k in m[-1].header["steps"]}
        last = m[-1].header
        return {
            "fps": (len(m) - 1) / (m[-1].at - m[0].at), "frames": len(m),
            "p50": lat[len(lat) // 2], "p95": lat[min(len(lat) - 1, int(0.95 * len(lat)))],
            "steps": steps, "dropped": last["dropped"], "received": last["received"], "sent": self.sent,
            "skipped": self.skipped, "server_ms": statistics.median(s.header["server_ms"] for s in m),
            "cpu_ms": {k: statistics.median(s.header["cpu_ms"][k] for s in m) for k in last["cpu_ms"]},
        }


async def drive(url: str, frames: Sequence[np.ndarray], *, fps: float = 25.0, seconds: float = 10.0,
                in_flight: int = 8, warmup: float = 2.0, keep_images: bool = False) -> DriveResult:
    """Send ``frames`` (looped) at ``fps`` for ``seconds`` to the server at ``url``; collect the answers."""
    import aiohttp

    ws_url = url.replace("http://", "ws://").rstrip("/") + "/ws"
    shown: list[Shown] = []
    texts: list[dict[str, Any]] = []
    state = {"sent": 0, "skipped": 0, "answered": -1}
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url, max_msg_size=0) as ws:
        hello = await ws.receive_json(timeout=60)
        texts.append(hello)
        if hello.get("type") != "hello":
            return DriveResult(0, 0, [], texts, 0.0, warmup)

        async def receive() -> None:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    texts.append(msg.json())
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    header, jpeg = unpack_reply(msg.data)
                    image = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR),
                                         cv2.COLOR_BGR2RGB)
                    now_ms = time.time() * 1e3
                    state["answered"] = max(state["answered"], header["seq"])
                    shown.append(Shown(header, image if keep_images else image[:1, :1], now_ms - header["captured"],
                                       time.perf_counter()))

        receiver = asyncio.ensure_future(receive())
        start = time.perf_counter()
        tick = 0
        while time.perf_counter() - start < seconds:
            due = start + tick / fps
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tick += 1
            if hello.get("mode") != "camera":
                continue
            if state["sent"] - 1 - state["answered"] >= in_flight:
                state["skipped"] += 1
                continue
            captured = time.time() * 1e3
            await ws.send_bytes(frame_message(state["sent"], frames[state["sent"] % len(frames)], captured))
            state["sent"] += 1
        await asyncio.sleep(0.5)  # the answers still on their way
        receiver.cancel()
        elapsed = time.perf_counter() - start
    return DriveResult(state["sent"], state["skipped"], shown, texts, elapsed, warmup)

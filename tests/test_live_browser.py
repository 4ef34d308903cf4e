"""The live mirror end to end: a real server, a real (tiny) trained target, Debian's Chromium.

The camera is Chromium's fake capture device playing a .y4m slice of the dancer demo clip
(``--use-fake-device-for-media-stream --use-file-for-fake-video-capture``): one slice with
both arms up, one with both arms down. What the pose model sees in each slice is checked
on the clip itself first (the pipeline's pose model at its full inference size), then the
page must show a stick figure with the arms the same way, generated frames, and its frame
rate. The target is the session's tiny demo model (tests/fixtures: a few training steps
on the Pose2Sim clip), so the generated picture is not yet a person; the benchmark
(benchmarks/bench_live.py) runs the trained demo target.

Also here, against the same server: a second page is refused, a page without a camera
says so, malformed and oversized messages are rejected and logged while the server
keeps serving, ``--source`` and ``--record`` through the installed command, and the live
calibration on real pose data, which must end where the normfit stage does.

Needs ``/usr/bin/chromium`` (``apt-get install chromium``; .ci/run installs it) and the
``playwright`` package (test extras); Playwright's own browser download is never used.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from dancepipe.live.config import LiveConfig, MethodParams, TargetFiles

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# Slices of the dancer clip (frame ranges): both arms raised above the head, then both hanging down.
ARMS_UP, ARMS_DOWN = (207, 232), (1080, 1105)
CAMERA_SIZE = (320, 304)  # the clip's 518x496, halved: a small camera keeps the test quick
# The label colours of dancepipe.pose.skeleton: forearms (left, right) and the shoulder line.
FOREARMS = [(255, 170, 60), (60, 200, 255)]
SHOULDERS = (255, 255, 0)


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def live_target(tmp_path_factory, demo_generator: Path, demo_face: Path, demo_poses: dict[str, Path],
                demo_frames: dict[str, Path], demo_norm: Path) -> TargetFiles:
    """The session's tiny demo target laid out as the pipeline writes a target (models/, data/)."""
    root = tmp_path_factory.mktemp("live_target")
    for src, dst in [(demo_generator, "models/t/generator.pt"), (demo_face, "models/t/face.pt"),
                     (demo_poses["target"], "data/subjects/t/poses.parquet"),
                     (demo_norm.with_name("profile.json"), "data/profiles/t.json"),
                     (demo_frames["target"] / "transform.json", "data/frames/t/transform.json")]:
        (root / dst).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, root / dst)
    return TargetFiles.locate("t", root / "models", root / "data")


def _slice(first: int, last: int) -> list[np.ndarray]:
    from dancepipe.assets import fetch_asset
    from dancepipe.video.decode import iter_frames

    out = []
    for f in iter_frames(fetch_asset("dancer")):
        if f.index > last:
            break
        if f.index >= first:
            out.append(cv2.resize(f.image, CAMERA_SIZE, interpolation=cv2.INTER_AREA))
    return out


def write_y4m(path: Path, frames: list[np.ndarray], fps: int = 25) -> Path:
    """Frames as a YUV4MPEG2 file, what Chromium's fake camera plays (in a loop)."""
    with av.open(str(path), "w", format="yuv4mpegpipe") as out:
        stream = out.add_stream("rawvideo", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def cameras(tmp_path_factory) -> dict[str, tuple[Path, list[np.ndarray]]]:
    root = tmp_path_factory.mktemp("live_cameras")
    out = {}
    for name, (first, last) in (("up", ARMS_UP), ("down", ARMS_DOWN)):
        frames = _slice(first, last)
        out[name] = (write_y4m(root / f"{name}.y4m", frames), frames)
    return out


@pytest.fixture(scope="module")
def method(pose_weights: Path) -> MethodParams:
    from dancepipe.catalog import TrackingConfig
    from dancepipe.pose.detect import PosesConfig
    from dancepipe.transfer.labels import LabelsConfig
    from dancepipe.transfer.normalize import NormfitConfig

    return MethodParams(PosesConfig(model=str(pose_weights), device="cpu"), TrackingConfig(), NormfitConfig(),
                        LabelsConfig())


@pytest.fixture(scope="module")
def models(live_target: TargetFiles, method: MethodParams):
    import torch

    from dancepipe.live.pipeline import Models

    torch.set_num_threads(1)  # one per worker thread: the machine is small and shared
    return Models(live_target, method, LiveConfig(device="cpu"))


@pytest.fixture(scope="module")
def server(models):
    from dancepipe.live.server import LiveServer, Running

    running = Running(LiveServer(models, models.cfg))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        raise AssertionError("playwright is not installed: pip install -e '.[test]'") from e
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)"
    with sync_playwright() as p:
        yield p


def browser(playwright, camera: Path | None):
    """A headless Chromium; with ``camera``, its fake webcam plays that .y4m and access is granted."""
    args = list(CHROMIUM_ARGS)
    if camera is not None:
        args += ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-video-capture={camera}"]
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)


# ---------------------------------------------------------------------------- what the pictures show


def arms_up_in_keypoints(kps: np.ndarray) -> bool | None:
    """From (17, 3) COCO keypoints: both wrists above the nose (True), both below the shoulders (False)."""
    from dancepipe.pose.keypoints import KP

    wrists = kps[[KP["left_wrist"], KP["right_wrist"]], 1]
    shoulders = kps[[KP["left_shoulder"], KP["right_shoulder"]], 1]
    nose = kps[KP["nose"], 1]
    if not np.isfinite(wrists).all():
        return None
    if np.isfinite(nose) and (wrists < nose).all():
        return True
    if np.isfinite(shoulders).any() and (wrists > np.nanmax(shoulders)).all():
        return False
    return None


def _near(image: np.ndarray, colour: tuple[int, int, int], tolerance: float = 45.0) -> np.ndarray:
    return np.linalg.norm(image.astype(np.float64) - np.array(colour, np.float64), axis=2) < tolerance


def arms_up_in_label(label: np.ndarray) -> bool | None:
    """From a drawn stick figure: the forearms' pixels above the shoulder line (True) or below it (False)."""
    forearms = _near(label, FOREARMS[0]) | _near(label, FOREARMS[1])
    shoulders = _near(label, SHOULDERS)
    if forearms.sum() < 5 or shoulders.sum() < 3:
        return None
    return bool(np.median(np.nonzero(forearms)[0]) < np.median(np.nonzero(shoulders)[0]))


def test_the_camera_slices_show_arms_up_and_down(cameras, method: MethodParams) -> None:
    """The premise of the browser test, read off the clip by the pipeline's pose model at full size."""
    from dancepipe.pose.detect import PoseRunner, mask_keypoints
    from dancepipe.pose.estimator import load_pose_model

    runner = PoseRunner(load_pose_model(method.poses.model, "cpu"), method.poses, "cpu")
    for name, want in (("up", True), ("down", False)):
        frames = cameras[name][1][::5]
        seen = []
        for det in runner(frames):
            k = int(np.argmax(det.scores))
            seen.append(arms_up_in_keypoints(mask_keypoints(det.keypoints[k], method.poses.kp_conf)))
        assert seen.count(want) >= 0.8 * len(seen), f"{name}: {seen}"


# ---------------------------------------------------------------------------- the page


def _canvas(page) -> np.ndarray:
    """The page's displayed picture, exactly (the canvas as a PNG)."""
    url = page.evaluate("document.getElementById('view').toDataURL('image/png')")
    png = np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8)
    return cv2.cvtColor(cv2.imdecode(png, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _panels(page) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    header = page.evaluate("window.live.header")
    image = _canvas(page)
    cw, lw, gw = header["panels"]
    return header, image[:, :cw], image[:, cw:cw + lw], image[:, cw + lw:cw + lw + gw]


@pytest.mark.parametrize("pose", ["up", "down"])
def test_the_page_mirrors_the_camera(playwright, server, cameras, pose: str) -> None:
    b = browser(playwright, cameras[pose][0])
    try:
        page = b.new_page(viewport={"width": 1100, "height": 700})
        page.goto(server.url)
        page.wait_for_function("window.live.header && window.live.header.calibration.ready && window.live.shown > 8",
                               timeout=90_000)
        verdicts, generated = [], []
        for _ in range(6):
            header, camera, label, gen = _panels(page)
            assert header["person"], "the page's frame shows no person"
            verdicts.append(arms_up_in_label(label))
            generated.append(gen.astype(np.float64))
            page.wait_for_timeout(300)
        want = pose == "up"
        # None: the colours could not be read (a forearm hidden behind the head); never the other way
        assert verdicts.count(want) >= 3 and verdicts.count(not want) == 0, \
            f"arms {pose} in the camera, the stick figures show {verdicts}"
        # generated frames arrive: a picture (not the black of "no frame yet"), and a new one each time
        assert all(g.std() > 5 for g in generated)
        assert np.mean([np.abs(a - b).mean() for a, b in zip(generated, generated[1:], strict=False)]) > 0.5
        fps_text = page.inner_text("#fps")
        match = re.fullmatch(r"(\d+\.\d) frames/s", fps_text)
        assert match and float(match.group(1)) > 0.5, fps_text
        assert re.fullmatch(r"\d+ / \d+ ms", page.inner_text("#latency"))
        stats = page.evaluate("({errors: window.live.errors, shown: window.live.shown, sent: window.live.sent})")
        assert stats["errors"] == [] and stats["shown"] <= stats["sent"]
        # the recalibrate control starts the collection again
        usable = page.evaluate("window.live.header.calibration.usable")
        page.click("#recalibrate")
        page.wait_for_function(f"window.live.header.calibration.usable < {usable}", timeout=30_000)
    finally:
        b.close()


def test_a_second_page_is_refused_while_one_is_live(playwright, server, cameras) -> None:
    b = browser(playwright, cameras["down"][0])
    try:
        first = b.new_page()
        first.goto(server.url)
        first.wait_for_function("window.live.shown > 2", timeout=90_000)
        second = b.new_page()
        second.goto(server.url)
        second.wait_for_selector("#error:not([hidden])", timeout=20_000)
        assert "Another page is already live" in second.inner_text("#error")
        assert second.evaluate("window.live.shown") == 0 and second.evaluate("window.live.closed.code") == 4409
        shown = first.evaluate("window.live.shown")
        first.wait_for_function(f"window.live.shown > {shown + 2}", timeout=30_000)  # the first page goes on
    finally:
        b.close()


def test_a_page_without_a_camera_says_so(playwright, server) -> None:
    b = browser(playwright, None)
    try:
        page = b.new_page()
        page.goto(server.url)
        page.wait_for_selector("#error:not([hidden])", timeout=30_000)
        text = page.inner_text("#error")
        assert text.startswith("No camera could be opened") and "--source" in text
    finally:
        b.close()


# ---------------------------------------------------------------------------- the protocol, abused


def in_thread(coroutine):
    """Run a coroutine to its end on a thread of its own: Playwright's sync API keeps an event loop
    running on this one while the browser fixture is alive, and asyncio.run refuses to nest."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()



def test_malformed_and_oversized_messages_are_rejected_and_logged(server, cameras, caplog) -> None:
    import aiohttp

    from dancepipe.live.client import drive, frame_message

    ws_url = server.url.replace("http://", "ws://") + "ws"
    limit = server.server.cfg.max_message_bytes

    async def abuse() -> dict:
        out: dict = {}
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(ws_url) as ws:
                assert (await ws.receive_json(timeout=30))["type"] == "hello"
                await ws.send_bytes(b"DPL1" + b"\x00" * 12 + b"not a jpeg at all")
                out["binary"] = await ws.receive_json(timeout=30)
                await ws.send_str("{not json")
                out["text"] = await ws.receive_json(timeout=30)
                await ws.send_bytes(frame_message(0, cameras["up"][1][0], time.time() * 1e3)[:4] + b"\xff" * (limit + 1))
                msg = await ws.receive(timeout=30)
                out["oversized"] = (msg.type, ws.close_code)
            async with http.get(server.url + "health") as r:
                out["health"] = await r.json()
        return out

    with caplog.at_level(logging.WARNING, logger="dancepipe.live.server"):
        out = in_thread(abuse())
    assert out["binary"]["type"] == "error" and "not a readable JPEG" in out["binary"]["message"]
    assert out["text"]["type"] == "error" and "unknown text message" in out["text"]["message"]
    assert out["oversized"][1] == 1009  # message too big: that connection is closed ...
    rejected = [r.getMessage() for r in caplog.records if "rejected a message" in r.getMessage()]
    for reason in ("not a readable JPEG", "unknown text message", "closed its connection"):
        assert sum(reason in m for m in rejected) == 1, rejected
    assert out["health"]["rejected"] >= 3
    # ... and the server goes on: a new page gets frames
    result = in_thread(drive(server.url, cameras["down"][1], fps=25, seconds=4, warmup=0))
    assert result.texts[0]["type"] == "hello" and len(result.shown) >= 2


# ---------------------------------------------------------------------------- --source and --record, installed command


def test_the_command_plays_a_source_video_and_records_what_was_shown(tmp_path: Path, live_target: TargetFiles,
                                                                      cameras) -> None:
    from dancepipe.live.client import drive
    from dancepipe.video.decode import probe
    from dancepipe.video.encode import mp4_writer

    source = tmp_path / "source.mp4"
    frames = cameras["up"][1]
    with mp4_writer(source, width=frames[0].shape[1], height=frames[0].shape[0], fps=25) as w:
        for f in frames:
            w.write(f)
    work = tmp_path / "cwd"
    work.mkdir()
    exe = Path(sys.executable).with_name("dancepipe")
    root = live_target.generator.parents[2]
    cmd = [str(exe), "live", "--target", "t", "--models-dir", str(root / "models"), "--data-dir", str(root / "data"),
           "--params", "absent.yaml", "--port", "0", "--device", "cpu", "--source", str(source),
           "--record", str(tmp_path / "shown.mp4")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url, lines = None, []
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            lines.append(line)
            if m := re.search(r"open (http://\S+/)", line):
                url = m.group(1)
            assert line or proc.poll() is None, "".join(lines)
        assert url, "".join(lines)
        result = in_thread(drive(url, frames, seconds=5, warmup=0))
        assert result.texts[0]["mode"] == "source" and len(result.shown) >= 5
        assert all(s.header["steps"]["decode"] > 0 for s in result.shown)
    finally:
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, output
    assert f"recorded {tmp_path / 'shown.mp4'}" in output
    info = probe(tmp_path / "shown.mp4")
    assert info.frame_count >= 5 and info.height == 192 and info.width == 256 + 2 * 128
    assert list(work.iterdir()) == []  # nothing else was written (the cwd stays empty)


# ---------------------------------------------------------------------------- calibration on real pose data


def test_live_calibration_ends_where_normfit_does(demo_poses: dict[str, Path], demo_norm: Path) -> None:
    """The walker of the Sports2D clip, fed frame by frame, calibrates to the normfit stage's own mapping."""
    from dancepipe.live.calibrate import LiveCalibration
    from dancepipe.pose.keypoints import read_keypoints
    from dancepipe.transfer.normalize import NormfitConfig, fit_subject

    cfg = NormfitConfig()
    source = read_keypoints(demo_poses["source"])
    cal = LiveCalibration(fit_subject(read_keypoints(demo_poses["target"]), cfg), cfg, keep=len(source), refit_every=1)
    modes, ranges = [], []
    for kps in source:
        cal.add(kps)
        state = cal.state
        modes.append(state.mode)
        if state.mode is not None:
            ranges.append(state.close - state.far)
    first = next(i for i, m in enumerate(modes) if m is not None)
    assert modes[first] == "constant"  # one frame: no depth range yet, normfit's constant rule
    assert modes[-1] == "interpolate" and ranges[-1] > 5 * max(ranges[0], 1.0)  # she walked towards the camera
    expected = json.loads(demo_norm.read_text())["mapping"]
    got = cal.mapping.to_dict()
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-9) if isinstance(value, float) else got[key] == value, key
    cal.reset()
    assert cal.mapping is None and cal.state.usable == 0

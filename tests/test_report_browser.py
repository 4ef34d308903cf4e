"""The report in a real browser: Debian's Chromium, headless, driven by Playwright.

The pages are opened from disk (``file://``), as a user opens ``outputs/report.html``.
Each ``<video>`` must load the rendered H.264 MP4 it names (ready to show a frame, with
the file's length and size), play (its clock advances), and show the file's pictures: a
screenshot of the element, taken paused, is compared with the frames decoded by PyAV.

Needs ``/usr/bin/chromium`` (``apt-get install chromium``; .ci/run installs it) and the
``playwright`` package (test extras). Playwright's own browser download is never used.
Without them the tests fail with a sentence saying what to install.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from dancepipe.video.decode import iter_frames, probe
from tests.test_report import DANCES, build_outputs

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

# Waits for the element to hold the current frame (readyState >= 2, HAVE_CURRENT_DATA) or to fail,
# then reports what the browser made of its source.
LOADED = """async (v) => {
  if (v.readyState < 2 && !v.error) {
    await new Promise((done) => {
      v.addEventListener('loadeddata', done, {once: true});
      v.addEventListener('error', done, {once: true});
      setTimeout(done, 15000);
    });
  }
  return {src: v.currentSrc, ready: v.readyState, error: v.error ? v.error.code : null, duration: v.duration,
          width: v.videoWidth, height: v.videoHeight};
}"""
# Plays (muted: a page may start sound only after a click) until the clock passes `until` seconds,
# then pauses with the controls hidden, so a screenshot shows the picture alone. `shown` is the media
# time of the last frame the browser put on screen (requestVideoFrameCallback), `frames` how many it did.
PLAYS = """async (v, until) => {
  v.muted = true;
  const start = v.currentTime;
  let shown = null, frames = 0;
  const tick = (now, meta) => { shown = meta.mediaTime; frames = meta.presentedFrames; v.requestVideoFrameCallback(tick); };
  v.requestVideoFrameCallback(tick);
  await v.play();
  const t0 = performance.now();
  while (v.currentTime < until && performance.now() - t0 < 10000) {
    await new Promise((r) => setTimeout(r, 50));
  }
  v.pause();
  v.controls = false;
  await new Promise((r) => setTimeout(r, 200));
  return {start, time: v.currentTime, shown, frames, error: v.error ? v.error.code : null};
}"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless Chromium context with a fresh profile."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        raise AssertionError("playwright is not installed: pip install -e '.[test]'") from e
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)"
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1200, "height": 900})
        yield context
        context.close()


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    """outputs/ with real renders, their pages and the index (see tests/test_report.py)."""
    return build_outputs(tmp_path_factory.mktemp("browser")).parent


def decoded(path: Path) -> list[np.ndarray]:
    return [f.image for f in iter_frames(path)]


def check_videos(page: Any, base: Path, shots: Path) -> list[dict[str, Any]]:
    """Load, play and photograph every ``<video>`` of the open page; what each did (and its screenshot)."""
    results = []
    for i, element in enumerate(page.query_selector_all("video")):
        state = element.evaluate(LOADED)
        src = element.get_attribute("src")
        assert state["error"] is None and state["ready"] >= 2, f"video {src!r} did not load: {state}"
        info = probe(base / src)
        assert state["duration"] == pytest.approx(info.frame_count / info.fps, abs=0.1), src
        assert (state["width"], state["height"]) == (info.width, info.height), src
        played = element.evaluate(PLAYS, 0.4)
        assert played["error"] is None and played["time"] > played["start"] + 0.3, f"{src!r} did not play: {played}"
        shot = shots / f"video-{i}.png"
        element.screenshot(path=str(shot))
        assert played["frames"] >= 3, f"{src!r} put {played['frames']} frames on screen while playing"
        results.append({"src": src, "time": played["shown"], "fps": info.fps, "shot": shot})
    return results


def assert_shows_the_video(shot: Path, frames: list[np.ndarray], time: float, fps: float) -> None:
    """The screenshot is the video's picture at ``time`` (within a frame): not blank, and not the poster
    (the middle frame, still on screen if the video never played)."""
    img = cv2.cvtColor(cv2.imread(str(shot)), cv2.COLOR_BGR2RGB)
    h, w = frames[0].shape[:2]
    seen = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA).astype(float)
    assert seen.std() > 20, f"{shot}: the video's region is blank"
    at = round(time * fps)
    assert abs(at - len(frames) // 2) >= 3, "play to a time whose frame differs from the poster"

    def off(k: int) -> float:  # mean absolute difference to frame k, 0..255
        return float(np.abs(seen - frames[k]).mean())

    best = min(off(k) for k in range(max(at - 1, 0), min(at + 2, len(frames))))
    assert best < 6 and best < 0.6 * off(len(frames) // 2), (shot, time, best, off(len(frames) // 2))


def test_index_videos_load_play_and_show_their_frames_from_disk(browser, outputs: Path, tmp_path: Path):
    page = browser.new_page()
    page.goto((outputs / "report.html").as_uri())
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)  # with the posters, for a person to look at
    results = check_videos(page, outputs, tmp_path)
    assert [r["src"] for r in results] == [f"me/side_by_side/{s}.mp4" for s in DANCES]
    for r in results:
        assert_shows_the_video(r["shot"], decoded(outputs / r["src"]), r["time"], r["fps"])
    # the held-out samples copied from the target's page are shown
    sizes = page.eval_on_selector_all("img", "imgs => imgs.map((i) => [i.complete, i.naturalWidth])")
    assert len(sizes) >= 4 and all(done and width > 0 for done, width in sizes)
    page.close()


def test_the_pair_page_plays_its_video(browser, outputs: Path, tmp_path: Path):
    page = browser.new_page()
    page.goto((outputs / "me" / "walk.html").as_uri())
    (r,) = check_videos(page, outputs / "me", tmp_path)
    assert_shows_the_video(r["shot"], decoded(outputs / "me" / r["src"]), r["time"], r["fps"])
    page.close()


def test_a_missing_video_is_caught(browser, outputs: Path, tmp_path: Path):
    """The check fails on a page whose video is not where its src says (moved after the report was made)."""
    copy = tmp_path / "outputs"
    shutil.copytree(outputs, copy)
    (copy / "me" / "side_by_side" / "jump.mp4").unlink()
    page = browser.new_page()
    page.goto((copy / "report.html").as_uri())
    with pytest.raises(AssertionError, match="video 'me/side_by_side/jump.mp4' did not load"):
        check_videos(page, copy, tmp_path)
    page.close()

"""The picture of the live page in the README and docs/live.md (``make live-picture``).

Serves a trained target (the demo's ``dancer`` by default) with ``dancepipe live``'s server,
opens the page in Debian's Chromium with a fake webcam playing a slice of the dancer demo
clip, waits until the calibration is ready and the page has shown some frames, and saves a
screenshot of the page, reduced to 256 colours so it stays small.

    python -m tools.live_picture [--target dancer] [--out docs/images/live.png]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click
import cv2

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")


@click.command()
@click.option("--target", default="dancer", show_default=True)
@click.option("--models-dir", default="models", show_default=True, type=click.Path(path_type=Path))
@click.option("--data-dir", default="data", show_default=True, type=click.Path(path_type=Path))
@click.option("--params", default="params.yaml", show_default=True)
@click.option("--first", default=207, show_default=True, help="first frame of the dancer clip played as the camera.")
@click.option("--frames", default=100, show_default=True, help="frames played (looped by the fake camera).")
@click.option("--face/--no-face", default=True, show_default=True)
@click.option("--out", default="docs/images/live.png", show_default=True, type=click.Path(path_type=Path))
def main(target: str, models_dir: Path, data_dir: Path, params: str, first: int, frames: int, face: bool,
         out: Path) -> None:
    import torch
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from benchmarks.bench_live import camera_frames
    from dancepipe.live.config import LiveConfig, MethodParams, TargetFiles
    from dancepipe.live.pipeline import Models
    from dancepipe.live.server import LiveServer, Running
    from tests.test_live_browser import CHROMIUM_ARGS, write_y4m

    camera = [cv2.resize(f, (f.shape[1] // 2 * 2, f.shape[0] // 2 * 2)) for f in camera_frames(None, first, frames)]
    cfg = LiveConfig(face=face)
    torch.set_num_threads(cfg.threads)
    models = Models(TargetFiles.locate(target, models_dir, data_dir, face=face), MethodParams.load(params), cfg)
    running = Running(LiveServer(models, cfg))
    try:
        with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
            y4m = write_y4m(Path(tmp) / "camera.y4m", camera)
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[
                *CHROMIUM_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-video-capture={y4m}"])
            page = browser.new_page(viewport={"width": 980, "height": 560})
            page.goto(running.url)
            page.wait_for_function("window.live.header && window.live.header.calibration.ready "
                                   "&& window.live.shown > 60", timeout=180_000)
            png = Path(tmp) / "page.png"
            page.screenshot(path=str(png))
            browser.close()
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.open(png).convert("RGB").quantize(256).save(out, optimize=True)
    finally:
        running.stop()
    click.echo(f"{out}: {out.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()

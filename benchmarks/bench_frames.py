"""Frames stage speed vs the ffmpeg command line doing the same work.

For each demo clip, both sides decode the video, crop it to the same box (the
:class:`~dancepipe.video.crop.CropTransform` our stage fits), scale it to the training
size with an area filter and write one JPEG per frame:

* dancepipe: ``dancepipe.video.frames.extract_frames`` (library call, ``frames`` params);
* anchor: ``ffmpeg -threads N -i clip -vf [pad,]crop,scale=...:flags=area -q:v 2 %06d.jpg``
  with the ffmpeg binary from ``imageio-ffmpeg`` and N = ``frames.workers``.

The crop comes from ``data/subjects/<subject>/poses.parquet`` when the pipeline has been run,
otherwise from a synthetic pose table with one fixed box of the demo subjects' size
(printed as ``box: synthetic``); the work per frame is the same either way. Runs
alternate between the two sides; the median wall time of ``--repeats`` runs is
reported, and CPU seconds per frame too (our process vs the ffmpeg child), which
stays meaningful when other jobs load the machine. Run: ``python -m benchmarks.bench_frames``.
"""

from __future__ import annotations

import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import click
import numpy as np
import pandas as pd

from dancepipe.assets import fetch_asset
from dancepipe.config import load_config
from dancepipe.pose.keypoints import SCHEMA, read_table
from dancepipe.video.crop import CropTransform
from dancepipe.video.decode import probe
from dancepipe.video.frames import FramesConfig, extract_frames, plan_transform

CLIPS = {"dancer": "dancer", "walker": "sports2d"}  # demo subject -> its pinned clip (params.yaml)


def synthetic_poses(width: int, height: int, frames: int, fps: float) -> pd.DataFrame:
    """A pose table with one fixed box about the size of the demo subjects (x 35-60 %, y 15-65 %)."""
    cols: dict[str, np.ndarray] = {f.name: np.full(frames, np.nan, np.float32) for f in SCHEMA}
    cols["frame"] = np.arange(frames, dtype=np.int64)
    cols["timestamp"] = np.arange(frames) / fps
    cols["person_found"] = np.ones(frames, dtype=bool)
    box = (width * 0.35, height * 0.15, width * 0.6, height * 0.65)
    for name, value in zip(("box_x0", "box_y0", "box_x1", "box_y1"), box, strict=True):
        cols[name] = np.full(frames, value, np.float32)
    return pd.DataFrame(cols)


def ffmpeg_filter(t: CropTransform) -> str:
    """The ffmpeg filter chain equivalent to ``t``: pad (if the crop leaves the frame), crop, scale."""
    x0, y0 = int(round(t.x0)), int(round(t.y0))
    x1, y1 = int(round(t.x0 + t.crop_w)), int(round(t.y0 + t.crop_h))
    left, top = max(0, -x0), max(0, -y0)
    right, bottom = max(0, x1 - t.src_width), max(0, y1 - t.src_height)
    chain = []
    if left or top or right or bottom:
        chain.append(f"pad={t.src_width + left + right}:{t.src_height + top + bottom}:{left}:{top}:black")
    chain.append(f"crop={x1 - x0}:{y1 - y0}:{x0 + left}:{y0 + top}")
    chain.append(f"scale={t.width}:{t.height}:flags=area")
    return ",".join(chain)


def run_ffmpeg(exe: str, video: Path, t: CropTransform, out: Path, threads: int) -> int:
    out.mkdir(parents=True, exist_ok=True)
    cmd = [
        exe, "-v", "error", "-nostdin", "-threads", str(threads), "-i", str(video),
        # passthrough: one JPEG per decoded frame (the image muxer would otherwise pad to the
        # container's announced rate, e.g. 1,572 images for the dancer's 1,571 frames)
        "-vf", ffmpeg_filter(t), "-fps_mode", "passthrough", "-q:v", "2", "-threads", str(threads),
        str(out / "%06d.jpg"),
    ]
    subprocess.run(cmd, check=True)
    return len(list(out.glob("*.jpg")))


@click.command()
@click.option("--params", "params_path", default="params.yaml", show_default=True,
              help="params file whose 'frames' section is benchmarked.")
@click.option("--subjects-dir", "poses_dir", default="data/subjects", show_default=True,
              help="where real pose tables are looked for (<subject>/poses.parquet, the subject stage's).")
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(1, 20),
              help="timed runs per side and clip; the median is reported.")
def main(params_path: str, poses_dir: str, repeats: int) -> None:
    """Print frames/s of the frames stage and of ffmpeg, and their ratio, per demo clip."""
    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    cfg = load_config("frames", params_path)
    assert isinstance(cfg, FramesConfig)
    click.echo(f"frames {cfg.width}x{cfg.height}, quality {cfg.jpeg_quality}, workers {cfg.workers}; "
               f"ffmpeg -threads {cfg.workers}, -q:v 2")
    for subject, clip in CLIPS.items():
        video = fetch_asset(clip)
        info = probe(video)
        real = Path(poses_dir) / subject / "poses.parquet"
        if real.exists() and read_table(real)[1].get("width") == info.width:
            poses: Path | pd.DataFrame = real
            df = read_table(real)[0]
            source = str(real)
        else:
            df = synthetic_poses(info.width, info.height, info.frame_count, info.fps)
            poses, source = df, "synthetic"
        t = plan_transform(df, info.width, info.height, cfg)
        ours: list[tuple[float, float]] = []
        theirs: list[tuple[float, float]] = []
        with tempfile.TemporaryDirectory(prefix="bench-frames-") as tmp:
            for _round in range(repeats + 1):  # the first round warms caches and is not timed
                wall, cpu = time.perf_counter(), _cpu(resource.RUSAGE_SELF)
                n_ours = extract_frames(video, poses, Path(tmp) / "ours", cfg).frames
                ours.append((time.perf_counter() - wall, _cpu(resource.RUSAGE_SELF) - cpu))
                wall, cpu = time.perf_counter(), _cpu(resource.RUSAGE_CHILDREN)
                n_ff = run_ffmpeg(exe, video, t, Path(tmp) / "ffmpeg", cfg.workers)
                theirs.append((time.perf_counter() - wall, _cpu(resource.RUSAGE_CHILDREN) - cpu))
                shutil.rmtree(Path(tmp) / "ours")
                shutil.rmtree(Path(tmp) / "ffmpeg")
        if n_ours != n_ff:
            raise click.ClickException(f"{clip}: dancepipe wrote {n_ours} frames but ffmpeg {n_ff}")
        fps_ours = n_ours / statistics.median(w for w, _ in ours[1:])
        fps_ff = n_ff / statistics.median(w for w, _ in theirs[1:])
        cpu_ours = 1000 * statistics.median(c for _, c in ours[1:]) / n_ours
        cpu_ff = 1000 * statistics.median(c for _, c in theirs[1:]) / n_ff
        click.echo(
            f"{clip:15s} {n_ours:4d} frames {info.width}x{info.height} (box: {source}, "
            f"crop {t.crop_w:.0f}x{t.crop_h:.0f})\n"
            f"  wall: dancepipe {fps_ours:7.1f} frames/s, ffmpeg {fps_ff:7.1f} frames/s, "
            f"ratio {fps_ours / fps_ff:.2f}x\n"
            f"  cpu:  dancepipe {cpu_ours:5.2f} ms/frame, ffmpeg {cpu_ff:5.2f} ms/frame, "
            f"ratio (ffmpeg/ours) {cpu_ff / cpu_ours:.2f}x"
        )


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()

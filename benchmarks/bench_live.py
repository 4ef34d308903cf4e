"""Live mirror speed: frames/s and latency of ``dancepipe live``, against the serial pipeline.

A demo clip plays the camera: a Python client (:mod:`dancepipe.live.client`, the page's
protocol and pacing) sends its frames at the clip's rate to a live server running the
trained demo target (``models/<target>/``, the target's data under ``data/``), for
``--seconds`` after a warm-up, and measures what comes back:

* end-to-end frames/s shown, and the latency from capture (before the frame's JPEG is
  encoded) to display (the answer's JPEG decoded), p50 and p95;
* each step's median milliseconds on the server (decode, pose, label, generator, face,
  encode) and the frames dropped (newest-only hand-overs);
* the process's CPU time per frame shown (server and client), and the CPU time each worker
  thread spends per frame (``time.thread_time``): on a shared machine the wall figures depend on
  the load, these much less, and they bound the frame rate an idle machine would reach.

Rows, each a fresh server in this process:

* **anchor**: the straightforward pipeline: one thread doing everything in turn, fp32, the
  pose model at the pipeline's own inference size (``poses.imgsz``), torch on every core;
* **ours**: what ``dancepipe live`` does by default: pose and generator on two threads
  (one torch thread each), bf16 where the CPU has it, pose at ``--pose-size``.

It prints the CPU and the load average (the machine may be shared: rerun on a quiet one
to compare) and the ratio ours / anchor. The goal on a 2-core CPU with the demo target is
at least 10 frames/s and p95 latency at most 200 ms.

    python -m benchmarks.bench_live [--target dancer] [--seconds 20] [--device cpu]
"""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from dancepipe.live.client import drive
from dancepipe.live.config import LiveConfig, MethodParams, TargetFiles
from dancepipe.live.pipeline import Models
from dancepipe.live.server import LiveServer, Running

STEPS = ("decode", "pose", "label", "generator", "face", "encode")
GOAL_FPS, GOAL_P95 = 10.0, 200.0


def cpu_name() -> str:
    """The CPU's model name as lscpu reports it (the platform's processor string otherwise)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def camera_frames(clip: Path | None, first: int, count: int) -> list[np.ndarray]:
    """``count`` frames of ``clip`` (the dancer demo clip by default) from frame ``first``."""
    from dancepipe.assets import fetch_asset
    from dancepipe.video.decode import iter_frames

    frames = []
    for f in iter_frames(clip or fetch_asset("dancer")):
        if f.index >= first:
            frames.append(f.image)
        if len(frames) >= count:
            break
    return frames


def measure(files: TargetFiles, method: MethodParams, cfg: LiveConfig, frames: list[np.ndarray], fps: float,
            seconds: float, warmup: float) -> dict[str, Any]:
    """One configuration: load, serve, drive, summarise."""
    torch.set_num_threads(cfg.threads)
    models = Models(files, method, cfg)
    running = Running(LiveServer(models, cfg))
    cpu0 = time.process_time()
    try:
        result = asyncio.run(drive(running.url, frames, fps=fps, seconds=seconds + warmup, warmup=warmup))
    finally:
        running.stop()
    cpu = time.process_time() - cpu0
    summary = result.summary()
    summary["texts"] = result.texts[1:]
    # CPU time of this process (server and client) per frame shown: what the frame rate would be
    # bounded by on an idle machine with every core free, whatever else ran meanwhile
    summary["steps_cpu"] = summary.pop("cpu_ms", {})
    summary["cpu_ms"] = cpu / max(len(result.shown), 1) * 1e3
    summary["precision"] = models.precision
    summary["device"] = str(models.device)
    return summary


@click.command()
@click.option("--target", default="dancer", show_default=True, help="the trained target to drive.")
@click.option("--models-dir", default="models", show_default=True, type=click.Path(path_type=Path))
@click.option("--data-dir", default="data", show_default=True, type=click.Path(path_type=Path))
@click.option("--params", default="params.yaml", show_default=True, help="the target's params file.")
@click.option("--clip", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="video played as the camera (default: the dancer demo clip).")
@click.option("--first", default=1000, show_default=True, help="first frame of the clip played.")
@click.option("--fps", default=25.0, show_default=True, help="camera frame rate.")
@click.option("--seconds", default=20.0, show_default=True, help="measured seconds per row (after the warm-up).")
@click.option("--warmup", default=3.0, show_default=True, help="seconds not measured at the start of a row.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--pose-size", default=256, show_default=True, help="ours: the pose model's inference size.")
@click.option("--anchor/--no-anchor", default=True, show_default=True, help="also measure the serial anchor.")
@click.option("--compiled/--no-compiled", default=True, show_default=True,
              help="also measure ours with the generator torch.compiled (--compile; compiling takes a minute or more).")
def main(target: str, models_dir: Path, data_dir: Path, params: str, clip: Path | None, first: int, fps: float,
         seconds: float, warmup: float, device: str, pose_size: int, anchor: bool, compiled: bool) -> None:
    from dancepipe.errors import DancepipeError

    try:
        files = TargetFiles.locate(target, models_dir, data_dir)
    except DancepipeError as e:  # no trained target yet: `make demo` makes the dancer
        raise click.ClickException(str(e)) from e
    method = MethodParams.load(params)
    frames = camera_frames(clip, first, int(fps * 10))
    h, w = frames[0].shape[:2]
    cores = os.cpu_count() or 1
    from dancepipe.hardware.devices import MachineFacts

    bf16 = "native bf16" if MachineFacts.from_torch().cpu_native_bf16 else "no native bf16"
    click.echo(f"bench_live: target {target}, camera {w}x{h} at {fps:g} fps, {seconds:g} s per row; "
               f"{cpu_name()} ({bf16}), {cores} cores; load average {os.getloadavg()[0]:.2f} at the start")
    rows = []
    if anchor:
        rows.append((f"anchor: serial, fp32, pose {method.poses.imgsz}, {cores} threads", LiveConfig(
            device=device, precision="fp32", pipelined=False, threads=cores, pose_size=method.poses.imgsz)))
    rows.append((f"ours: 2 threads, auto precision, pose {pose_size}", LiveConfig(device=device, pose_size=pose_size)))
    if compiled:
        rows.append(("ours + --compile", LiveConfig(device=device, pose_size=pose_size, compile=True)))
    results = []
    for name, cfg in rows:
        r = measure(files, method, cfg, frames, fps, seconds, warmup)
        if r["frames"] < 2:
            click.echo(f"{name}: no frames shown in {seconds:g} s (answers: {r.get('texts')})")
            continue
        results.append((name, r))
        steps = " ".join(f"{s} {r['steps'][s]:.1f}" for s in STEPS)
        click.echo(f"{name} [{r['precision']} on {r['device']}]: {r['fps']:.1f} frames/s, latency p50 {r['p50']:.0f} ms "
                   f"p95 {r['p95']:.0f} ms; median ms per step: {steps}; dropped {r['dropped']} of "
                   f"{r['received']} received; {r['cpu_ms']:.0f} CPU ms per frame shown")
        threads = r["steps_cpu"]
        if cfg.threads > 1:  # thread_time misses torch's own worker threads: no bound from it
            continue
        if cfg.pipelined:
            bound = 1e3 / max(threads.values())
            how = "the slower of the two threads, each on its own core"
        else:
            bound = 1e3 / sum(threads.values())
            how = "one thread doing both"
        click.echo("    CPU ms per frame by thread: " + ", ".join(f"{k} {v:.1f}" for k, v in threads.items())
                   + f" -> at most {bound:.1f} frames/s on an idle machine ({how})")
    click.echo(f"load average {os.getloadavg()[0]:.2f} at the end")
    base = results[0][1] if anchor else None
    for name, r in results[1 if anchor else 0:]:
        label = name.split(":")[0]
        if base is not None:
            click.echo(f"{label} / anchor: {r['fps'] / base['fps']:.2f}x frames/s, p95 latency "
                       f"{base['p95'] / r['p95']:.2f}x lower")
        ok = r["fps"] >= GOAL_FPS and r["p95"] <= GOAL_P95
        click.echo(f"{label}: goal (>= {GOAL_FPS:g} frames/s, p95 <= {GOAL_P95:g} ms) {'met' if ok else 'not met'}")


if __name__ == "__main__":
    main()

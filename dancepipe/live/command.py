"""``dancepipe live``: the live mirror's command (options → config → :mod:`dancepipe.live.server`)."""

from __future__ import annotations

import asyncio
import logging
import webbrowser
from pathlib import Path

import click
from pydantic import ValidationError

from dancepipe.cli import stage_command
from dancepipe.hardware.devices import DEVICE_HELP
from dancepipe.hardware.precision import PRECISION_HELP

log = logging.getLogger("dancepipe.live")


@click.command("live")
@click.option("--target", required=True, help="the trained target to drive (a name in params.yaml's targets).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to listen on; only this machine can connect unless you name another address "
                   "(browsers offer the camera only to http://localhost or https pages).")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535),
              help="port to listen on (0: any free port).")
@click.option("--source", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="play this video file as the camera (looped, in real time) instead of the page's webcam.")
@click.option("--record", type=click.Path(dir_okay=False, path_type=Path),
              help="write what the page shows (camera | stick figure | generated) to this H.264 MP4; "
                   "without it nothing is written.")
@click.option("--models-dir", default="models", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="where the train stages wrote <target>/generator.pt and <target>/face.pt.")
@click.option("--data-dir", default="data", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="the pipeline's data directory: subjects/<target>/poses.parquet, profiles/<target>.json and "
                   "frames/<target>/transform.json are read from it.")
@click.option("--params", "params_path", default="params.yaml", show_default=True, type=click.Path(dir_okay=False),
              help="params file the target was built with: its poses, tracking, normfit and labels sections "
                   "(the pose model, subject rule, normalisation and stick figures) are used; defaults without it.")
@click.option("--device", default="auto", show_default=True, help=f"where the networks run: {DEVICE_HELP}.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True,
              help=f"the networks' precision: {PRECISION_HELP}.")
@click.option("--pose-size", default=256, show_default=True, type=click.IntRange(64, 1280),
              help="pose model inference size in pixels (long side, a multiple of 32): smaller is faster.")
@click.option("--face/--no-face", default=True, show_default=True,
              help="refine the face with the target's face GAN (models/<target>/face.pt).")
@click.option("--compile", "compile_generator", is_flag=True,
              help="torch.compile the generator: faster frames after a compilation of a minute or more at start.")
@click.option("--serial", is_flag=True,
              help="run pose and generator on one thread in turn (slower; for comparison) instead of two.")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, 256),
              help="torch threads per worker thread on the CPU.")
@click.option("--open", "open_browser", is_flag=True, help="open the page in the default browser.")
@stage_command
def live(target: str, host: str, port: int, source: Path | None, record: Path | None, models_dir: Path,
         data_dir: Path, params_path: str, device: str, precision: str, pose_size: int, face: bool,
         compile_generator: bool, serial: bool, threads: int, open_browser: bool) -> None:
    """Serve a page that mirrors your moves onto a trained target, live.

    Open the printed address: the page asks for the webcam, streams it here, and shows
    the camera, your stick figure in the target's space and the generated target side by
    side, with frames/s and latency. Stop with Ctrl-C. docs/live.md has the details.
    """
    import torch

    from dancepipe.live.config import LiveConfig, MethodParams, TargetFiles
    from dancepipe.live.pipeline import Models
    from dancepipe.live.record import Recorder
    from dancepipe.live.server import LiveServer, check_port, serve_forever

    try:
        cfg = LiveConfig(pose_size=pose_size, device=device, precision=precision, face=face, pipelined=not serial,
                         threads=threads, compile=compile_generator)
    except ValidationError as e:
        err = e.errors()[0]
        raise click.UsageError(f"--{str(err['loc'][0]).replace('_', '-')}: {err['msg']}") from e
    if record is not None and not record.parent.resolve().is_dir():
        raise click.BadParameter(f"{record.parent} is not a directory", param_hint="--record")
    files = TargetFiles.locate(target, models_dir, data_dir, face=face)
    check_port(host, port)
    torch.set_num_threads(cfg.threads)
    click.echo(f"loading the target '{target}' ...")
    models = Models(files, MethodParams.load(params_path), cfg)
    log.info("%s; generator %s on %s (%s), pose size %d", models.face_note, files.generator, models.device,
             models.precision, cfg.pose_size)
    recorder = Recorder(record, fps=cfg.record_fps) if record is not None else None
    server = LiveServer(models, cfg, source=source, recorder=recorder)

    def ready(url: str) -> None:
        click.echo(f"dancepipe live: open {url} (Ctrl-C stops)")
        if open_browser:
            webbrowser.open(url)

    try:
        asyncio.run(serve_forever(server, host, port, ready))
    except KeyboardInterrupt:
        click.echo("stopped")
    finally:
        if recorder is not None:
            written = recorder.close()
            click.echo(f"recorded {written}" if written else "nothing was shown, so nothing was recorded")

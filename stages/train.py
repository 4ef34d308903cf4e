"""train: the pix2pixHD generator with temporal smoothing (one process, or torchrun + DDP)."""

from __future__ import annotations

import subprocess
import sys
from contextlib import nullcontext

import click

from dancepipe.cli import PARAMS_OPTION, progress, stage_command
from dancepipe.config import load_config
from dancepipe.errors import DancepipeError
from dancepipe.hardware import distributed as du
from dancepipe.model.train import check_devices, run_training

DIR = click.Path(file_okay=False)


@click.command()
@click.option("--frames", required=True, type=DIR, help="target frames directory (JPEGs + index.parquet).")
@click.option("--labels", required=True, type=DIR, help="training label directory (PNGs + index.parquet).")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="where to write the final generator (e.g. models/dancer/generator.pt).")
@click.option("--checkpoints", required=True, type=DIR,
              help="checkpoint directory, kept between runs so a killed run resumes.")
@click.option("--logdir", required=True, type=DIR, help="dvclive directory for losses, sample grids, metrics.json.")
@PARAMS_OPTION
@stage_command
def main(frames: str, labels: str, out: str, checkpoints: str, logdir: str, params_path: str) -> None:
    """Train the generator on consecutive (label, frame) pairs of the target video."""
    cfg = load_config("train", params_path)
    if not du.under_launcher():  # else the user's own torchrun (several machines) started it: join that job
        check_devices(cfg)  # device, device count and amp errors before any process starts
        if cfg.devices > 1:
            rc = subprocess.call(du.torchrun_command(cfg.devices, __file__, sys.argv[1:]))
            if rc != 0:
                raise DancepipeError(f"train.devices = {cfg.devices}: the torchrun job failed with exit status {rc}")
            return
    ctx = du.context_from_env()
    du.init(ctx, du.device_for(ctx, cfg.device, "train.device"))
    try:
        bar = progress(cfg.steps, "train", unit="step") if ctx.is_main else nullcontext(None)
        with bar as advance:
            result = run_training(cfg, frames, labels, out, checkpoints, logdir, ctx=ctx, progress=advance)
    finally:
        du.shutdown()
    if ctx.is_main:
        resumed = f", resumed from step {result.resumed_from}" if result.resumed_from else ""
        m = result.metrics
        click.echo(
            f"train: {result.step} steps{resumed} on {ctx.world_size} process(es); "
            f"train L1 {m.get('train_l1', float('nan')):.4f}, held-out L1 {m.get('holdout_l1', float('nan')):.4f}, "
            f"{m.get('images_per_s', 0.0):.1f} images/s → {result.out}"
        )


if __name__ == "__main__":
    main()

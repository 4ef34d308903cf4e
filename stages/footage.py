"""footage@<target>: what the target's video offers the generator, and advice when it is thin.

Duration, frames with the whole body, how much of the picture the body fills and how
varied the poses are (:mod:`dancepipe.advice.footage`), written as metrics beside her
evaluation (the report shows them) and said before anything is trained.
"""

from __future__ import annotations

import click

from dancepipe.advice.footage import run_footage
from dancepipe.cli import PARAMS_OPTION, figure, stage_command


@click.command()
@click.option("--subject", "subject_dir", type=click.Path(file_okay=False), required=True,
              help="the target's subject directory (data/subjects/<target>: poses.parquet and meta.json).")
@click.option("--min-joints", type=click.IntRange(1, 17), default=8, show_default=True,
              help="labels.draw.min_joints: visible keypoints that make a frame show a person.")
@click.option("--train-height", type=click.IntRange(1), default=192, show_default=True,
              help="frames.height: the training frames' height in pixels; a smaller body in the video is upsampled.")
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="where to write the figures (JSON, e.g. metrics/eval/dancer/footage.json).")
@PARAMS_OPTION
@stage_command
def main(subject_dir: str, min_joints: int, train_height: int, out: str, params_path: str) -> None:
    """Measure the target's footage and say what to film when it is thin.

    Its two params come on the command line (dvc.yaml passes them); the params file is only
    checked for a broken catalog, as every stage does.
    """
    f = run_footage(subject_dir, out, min_joints=min_joints, train_height=train_height)
    click.echo(f"footage: {f['seconds']:.0f} s, {f['frames']} frames, the whole body in {f['full_body_share']:.0%}, "
               f"{f['distinct_poses']} distinct poses, body {figure(f['body_px'], '.0f')} px tall "
               f"({figure(f['fill'], '.0%')} of the picture); wrote {out}")
    if f["advice"]:
        click.secho(f"advice: {f['advice']}", fg="yellow", err=True)


if __name__ == "__main__":
    main()

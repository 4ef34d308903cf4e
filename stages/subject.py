"""subject@<name>: follow one named person of a posed video → data/subjects/<name>/."""

from __future__ import annotations

import click

from dancepipe.catalog import load_catalog, load_tracking
from dancepipe.cli import PARAMS_OPTION, stage_command
from dancepipe.pose.subject import run_subject


@click.command()
@click.option("--name", required=True, help="the subject's name under 'subjects' in params.yaml (e.g. walker).")
@click.option("--video", "video_dir", type=click.Path(file_okay=False), required=True,
              help="the subject's ingested video directory (e.g. data/videos/sports2d).")
@click.option("--detections", type=click.Path(dir_okay=False), required=True,
              help="that video's detection table from the poses stage (e.g. data/poses/sports2d.parquet).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="subject directory to write (e.g. data/subjects/walker): the video, meta.json and "
                   "poses.parquet, the person's keypoint table.")
@PARAMS_OPTION
@stage_command
def main(name: str, video_dir: str, detections: str, out_dir: str, params_path: str) -> None:
    """Pick the person subjects.<name>.person names and write their keypoint table."""
    subject = load_catalog(params_path).subject(name)
    cfg = load_tracking(params_path)
    r = run_subject(name, subject, video_dir, detections, out_dir, cfg)
    click.echo(f"subject {name}: person {subject.person} seen in {r['frames_with_subject']} of {r['frames']} "
               f"frames -> {out_dir}")


if __name__ == "__main__":
    main()

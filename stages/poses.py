"""poses@<subject>: COCO-17 keypoints of the video's main person → Parquet table."""

from __future__ import annotations

import click

from dancepipe.cli import PARAMS_OPTION, progress, stage_command
from dancepipe.config import load_config
from dancepipe.poses import extract_poses
from dancepipe.video import probe


@click.command()
@click.option("--video", type=click.Path(), required=True,
              help="ingested video to detect poses in: the ingest directory (e.g. data/videos/target) or a video file.")
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="where to write the keypoint table (e.g. data/poses/target.parquet).")
@PARAMS_OPTION
@stage_command
def main(video: str, out: str, params_path: str) -> None:
    """Detect poses in every frame, follow the main person and write one row per frame."""
    cfg = load_config("poses", params_path)
    total = probe(video).frame_count
    with progress(total, desc=f"poses {video}") as advance:
        summary = extract_poses(video, out, cfg, progress=advance)
    click.echo(
        f"poses {video}: {summary['frames']} frames, subject in {summary['frames_with_subject']}, "
        f"{summary['fps']:.1f} frames/s ({summary['device']} {summary['precision']}, {summary['weights']}) -> {out}"
    )


if __name__ == "__main__":
    main()

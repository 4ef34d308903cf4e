"""poses@<video>: COCO-17 keypoints of every person in one video → detection table (Parquet)."""

from __future__ import annotations

import click

from dancepipe.cli import PARAMS_OPTION, progress, stage_command
from dancepipe.config import load_config
from dancepipe.pose.detect import extract_poses
from dancepipe.video.decode import probe


@click.command()
@click.option("--video", type=click.Path(), required=True,
              help="ingested video to detect poses in: the ingest directory (e.g. data/videos/dancer) or a video file.")
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="where to write the detection table (e.g. data/poses/dancer.parquet).")
@PARAMS_OPTION
@stage_command
def main(video: str, out: str, params_path: str) -> None:
    """Detect every person's pose in every frame and write one row per (frame, person)."""
    cfg = load_config("poses", params_path)
    total = probe(video).frame_count
    with progress(total, desc=f"poses {video}") as advance:
        summary = extract_poses(video, out, cfg, progress=advance)
    click.echo(
        f"poses {video}: {summary['frames']} frames, a person in {summary['frames_with_person']} "
        f"(at most {summary['most_people']} at once), "
        f"{summary['fps']:.1f} frames/s ({summary['device']} {summary['precision']}, {summary['weights']}) -> {out}"
    )


if __name__ == "__main__":
    main()

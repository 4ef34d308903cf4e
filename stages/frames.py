"""frames@<target>: crop the target's video to training-size JPEG frames plus an index."""

from __future__ import annotations

import click

from dancepipe.cli import PARAMS_OPTION, progress, stage_command
from dancepipe.config import load_config
from dancepipe.video.frames import count_rows, extract_frames


@click.command()
@click.option("--video", type=click.Path(), required=True,
              help="ingested video of the subject: a subject or ingest directory (e.g. data/subjects/dancer) or a video file.")
@click.option("--poses", type=click.Path(dir_okay=False), required=True,
              help="the subject's pose table, which fixes the crop (e.g. data/subjects/dancer/poses.parquet).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="directory to write: <frame>.jpg, index.parquet, transform.json (e.g. data/frames/dancer).")
@PARAMS_OPTION
@stage_command
def main(video: str, poses: str, out_dir: str, params_path: str) -> None:
    """Crop, resize and JPEG-encode every frame of one subject's video."""
    cfg = load_config("frames", params_path)
    with progress(count_rows(poses), "frames") as advance:
        result = extract_frames(video, poses, out_dir, cfg, progress=advance)
    t = result.transform
    click.echo(
        f"frames: {result.frames} frames ({result.persons_found} with the subject) at "
        f"{t.width}x{t.height}, crop {t.crop_w:.0f}x{t.crop_h:.0f} at ({t.x0:.0f}, {t.y0:.0f}) -> {out_dir}"
    )


if __name__ == "__main__":
    main()

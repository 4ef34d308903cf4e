"""ingest@<subject>: copy the subject's video (or a pinned demo clip) into data/videos."""

from __future__ import annotations

import click

from dancepipe.cli import PARAMS_OPTION, stage_command
from dancepipe.config import load_config
from dancepipe.ingest import ingest_video


@click.command()
@click.option("--subject", type=click.Choice(["target", "source"]), required=True,
              help="which params entry to read: ingest.target or ingest.source.")
@click.option("--out", "out_video", type=click.Path(dir_okay=False), required=True,
              help="where to write the video copy (e.g. data/videos/target.mp4).")
@click.option("--meta", "out_meta", type=click.Path(dir_okay=False), required=True,
              help="where to write the metadata JSON (fps, size, rotation, timestamps).")
@PARAMS_OPTION
@stage_command
def main(subject: str, out_video: str, out_meta: str, params_path: str) -> None:
    """Bring one subject's video into the pipeline and describe it."""
    cfg = load_config("ingest", params_path)
    meta = ingest_video(getattr(cfg, subject), out_video, out_meta)
    click.echo(
        f"ingest {subject}: {meta['frame_count']} frames, {meta['width']}x{meta['height']}, "
        f"{meta['fps']:.2f} fps, rotation {meta['rotation']}, audio {'yes' if meta['has_audio'] else 'no'}"
    )


if __name__ == "__main__":
    main()

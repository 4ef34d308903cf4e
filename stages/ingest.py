"""ingest@<video>: copy one named video (or a pinned demo clip) into data/videos/<video>/."""

from __future__ import annotations

import click

from dancepipe.catalog import load_catalog
from dancepipe.cli import PARAMS_OPTION, stage_command
from dancepipe.video.ingest import ingest_video


@click.command()
@click.option("--name", required=True, help="the video's name under 'videos' in params.yaml (e.g. dancer).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="directory to write (e.g. data/videos/dancer): video.<ext>, named by its real "
                   "container, and meta.json (fps, size, rotation, timestamps).")
@PARAMS_OPTION
@stage_command
def main(name: str, out_dir: str, params_path: str) -> None:
    """Bring one video into the pipeline unchanged and describe it."""
    catalog = load_catalog(params_path)
    meta = ingest_video(catalog.video(name), out_dir)
    click.echo(
        f"ingest {name}: {meta['file']}, {meta['frame_count']} frames, {meta['width']}x{meta['height']}, "
        f"{meta['fps']:.2f} fps, rotation {meta['rotation']}, audio {'yes' if meta['has_audio'] else 'no'}"
    )


if __name__ == "__main__":
    main()

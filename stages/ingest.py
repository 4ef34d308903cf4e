"""ingest@<subject>: copy the subject's video (or a pinned demo clip) into data/videos/<subject>/."""

from __future__ import annotations

import click

from dancepipe.cli import PARAMS_OPTION, stage_command
from dancepipe.config import load_config
from dancepipe.ingest import ingest_video


@click.command()
@click.option("--subject", type=click.Choice(["target", "source"]), required=True,
              help="which params entry to read: ingest.target or ingest.source.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="directory to write (e.g. data/videos/target): video.<ext>, named by its real "
                   "container, and meta.json (fps, size, rotation, timestamps).")
@PARAMS_OPTION
@stage_command
def main(subject: str, out_dir: str, params_path: str) -> None:
    """Bring one subject's video into the pipeline unchanged and describe it."""
    cfg = load_config("ingest", params_path)
    meta = ingest_video(getattr(cfg, subject), out_dir)
    click.echo(
        f"ingest {subject}: {meta['file']}, {meta['frame_count']} frames, {meta['width']}x{meta['height']}, "
        f"{meta['fps']:.2f} fps, rotation {meta['rotation']}, audio {'yes' if meta['has_audio'] else 'no'}"
    )


if __name__ == "__main__":
    main()

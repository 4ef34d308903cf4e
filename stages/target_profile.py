"""profile@<target>: measure the target once for every dance transferred onto her.

Her bone lengths, which way she faces the camera and her head's shape on her torso
(:mod:`dancepipe.transfer.profile`), read by each ``labels_transfer`` pair of hers.
"""

from __future__ import annotations

import click

from dancepipe.cli import stage_command
from dancepipe.transfer.profile import run_profile


@click.command()
@click.option("--poses", type=click.Path(dir_okay=False), required=True,
              help="the target's keypoint table (e.g. data/subjects/dancer/poses.parquet).")
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="where to write the profile (JSON, e.g. data/profiles/dancer.json).")
@stage_command
def main(poses: str, out: str) -> None:
    """Write the target's bone lengths, facing counts and head shape."""
    p = run_profile(poses, out)
    facing = ", ".join(f"{k} {v}" for k, v in p["facing"].items())
    click.echo(f"profile: {p['person_frames']} frames with a person; facing {facing}; "
               f"{'a whole face' if p['head'] else 'no whole face'} to give sources")


if __name__ == "__main__":
    main()

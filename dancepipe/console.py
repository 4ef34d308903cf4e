"""The installed ``dancepipe`` command: tools that use the pipeline's outputs outside ``dvc repro``.

The pipeline itself runs through DVC (``dvc repro``, stages/); this group holds what a user
runs by hand on a trained target, starting with ``dancepipe live`` (docs/live.md).
"""

from __future__ import annotations

import click

from dancepipe.live.command import live


@click.group()
@click.version_option(package_name="dancepipe")
def main() -> None:
    """dancepipe: Everybody Dance Now motion transfer as a DVC pipeline (run the pipeline with `dvc repro`)."""


main.add_command(live)

if __name__ == "__main__":
    main()

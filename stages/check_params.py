"""check_params: validate the whole params.yaml before running anything.

``python stages/check_params.py`` checks every section against its typed config and
exits 1 with one sentence naming the first bad key (typo, wrong type, out of range),
then checks the catalog of videos, subjects, targets and sources.
"""

from __future__ import annotations

import click

from dancepipe.catalog import load_catalog
from dancepipe.cli import PARAMS_OPTION, stage_command
from dancepipe.config import validate_params


@click.command()
@PARAMS_OPTION
@stage_command
def main(params_path: str) -> None:
    """Validate every params section (all stages) in one go."""
    configs = validate_params(params_path, require_all=True)
    catalog = load_catalog(params_path)
    click.echo(f"{params_path}: {len(configs)} sections valid ({', '.join(configs)}); "
               f"{len(catalog.videos)} videos, {len(catalog.subjects)} subjects, "
               f"{len(catalog.pairs())} target-source pairs")


if __name__ == "__main__":
    main()

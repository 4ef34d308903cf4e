"""report: outputs/report.html, the index over every target's samples and every dance's video, with their numbers."""

from __future__ import annotations

import click

from dancepipe.catalog import load_catalog
from dancepipe.cli import PARAMS_OPTION, stage_command
from dancepipe.output.report import write_index


@click.command()
@click.option("--metrics", "metrics_dir", type=click.Path(file_okay=False), required=True,
              help="the evaluations' metrics root (metrics/eval): <target>/eval.json, <target>/<source>/transfer.json.")
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="index page to write (outputs/report.html); it shows the held-out samples and side-by-side "
                   "videos the evaluate and render stages wrote beside it, and links them relatively.")
@PARAMS_OPTION
@stage_command
def main(metrics_dir: str, out: str, params_path: str) -> None:
    """Show every target and (target, source) pair of params.yaml with its numbers, samples and video."""
    catalog = load_catalog(params_path)
    missing = write_index(out, metrics_dir, catalog.targets, catalog.pairs())
    click.echo(f"report: {len(catalog.targets)} targets, {len(catalog.pairs())} pairs -> {out}"
               + (f" ({missing} evaluations not found)" if missing else ""))


if __name__ == "__main__":
    main()

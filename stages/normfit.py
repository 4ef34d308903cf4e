"""normfit@<target>-<source>: fit the global pose normalisation mapping the source into the target's space."""

from __future__ import annotations

import click

from dancepipe.cli import PARAMS_OPTION, progress, stage_command
from dancepipe.config import load_config
from dancepipe.transfer.normalize import run_normfit


@click.command()
@click.option("--target", "target", type=click.Path(dir_okay=False), required=True,
              help="target keypoint table (e.g. data/subjects/dancer/poses.parquet).")
@click.option("--source", "source", type=click.Path(dir_okay=False), required=True,
              help="source keypoint table (e.g. data/subjects/walker/poses.parquet).")
@click.option("--out", "out", type=click.Path(dir_okay=False), required=True,
              help="where to write the fitted statistics and mapping (JSON).")
@click.option("--plot", "plot", type=click.Path(dir_okay=False), default=None,
              help="where to write the check plot (PNG); omitted: no plot.")
@PARAMS_OPTION
@stage_command
def main(target: str, source: str, out: str, plot: str | None, params_path: str) -> None:
    """Fit both subjects' ankle ranges and heights, and the source→target mapping."""
    cfg = load_config("normfit", params_path)
    with progress(2, "normfit", unit="step") as advance:
        result = run_normfit(target, source, out, plot, cfg, progress=advance)
    m = result["mapping"]
    click.echo(
        f"normfit: {m['mode']} mapping, scale {m['scale_far']:.3f} (far) .. {m['scale_close']:.3f} (close); "
        f"usable frames target {result['target']['usable']}/{result['target']['frames']}, "
        f"source {result['source']['usable']}/{result['source']['frames']}"
    )
    for note in result["notes"]:
        click.echo(f"normfit: note: {note}")


if __name__ == "__main__":
    main()

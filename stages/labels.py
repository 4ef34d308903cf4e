"""labels_train@<target> and labels_transfer@<target>-<source>: draw stick-figure label images.

``--kind train`` draws the target's own poses, ``--kind transfer`` the source's poses
normalised into the target's space. A transfer first fits that normalisation (normfit: both
subjects' ankle ranges and heights, and the mapping between them) and writes it beside the
labels: the two always run together, and one stage per pair instead of two keeps a big
catalog's ``dvc repro`` fast (docs/dvc.md).
"""

from __future__ import annotations

from pathlib import Path

import click

from dancepipe.atomic import removed_on_failure
from dancepipe.cli import PARAMS_OPTION, progress, stage_command
from dancepipe.config import load_config
from dancepipe.transfer.labels import CoverageOf, load_labels_config, run_labels
from dancepipe.transfer.normalize import run_normfit


@click.command()
@click.option("--kind", type=click.Choice(["train", "transfer"]), required=True,
              help="train: target poses as they are; transfer: source poses normalised into target space.")
@click.option("--poses", type=click.Path(dir_okay=False), required=True,
              help="keypoint table to draw (target for train, source for transfer).")
@click.option("--frames", "frames_dir", type=click.Path(file_okay=False), required=True,
              help="target frames directory (its transform.json sets the label size and crop).")
@click.option("--target-poses", type=click.Path(dir_okay=False), default=None,
              help="with --kind transfer (required): the target's keypoint table, which the normalisation is "
                   "fitted to (e.g. data/subjects/dancer/poses.parquet).")
@click.option("--norm", type=click.Path(dir_okay=False), default=None,
              help="with --kind transfer (required): where to write the fitted normalisation (normfit stats, "
                   "JSON), which the labels are then drawn with.")
@click.option("--norm-plot", type=click.Path(dir_okay=False), default=None,
              help="with --kind transfer: where to write the normalisation's check plot (PNG); omitted: no plot.")
@click.option("--profile", type=click.Path(dir_okay=False), default=None,
              help="the target's profile (profile stage); required for --kind transfer, not accepted for train.")
@click.option("--target-labels", type=click.Path(file_okay=False), default=None,
              help="with --kind transfer: the target's training labels (data/labels/<target>/train); measures how "
                   "much of the dance her footage covers (coverage.json) and warns before rendering when too little.")
@click.option("--holdout-fraction", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="train.holdout_fraction, with --target-labels: the split that calibrates the coverage.")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="output directory (e.g. data/labels/dancer/train or data/labels/dancer/transfer/walker).")
@PARAMS_OPTION
@stage_command
def main(kind: str, poses: str, frames_dir: str, target_poses: str | None, norm: str | None, norm_plot: str | None,
         profile: str | None, target_labels: str | None, holdout_fraction: float | None, out: str,
         params_path: str) -> None:
    """Write one label PNG per pose-table row, an index table and a contact sheet (transfer: after the normfit)."""
    if kind == "transfer" and (target_poses is None or norm is None or profile is None):
        raise click.UsageError("--target-poses, --norm and --profile are required with --kind transfer")
    transfer_only = (target_poses, norm, norm_plot, profile, target_labels)
    if kind == "train" and any(v is not None for v in transfer_only):
        raise click.UsageError("--target-poses, --norm, --norm-plot, --profile and --target-labels are only used "
                               "with --kind transfer")
    if (target_labels is None) != (holdout_fraction is None):
        raise click.UsageError("--target-labels and --holdout-fraction go together")
    coverage_of = None
    if target_labels is not None and holdout_fraction is not None:
        # the layout data/labels/<target>/train and .../transfer/<dance> names both for the warning
        coverage_of = CoverageOf(target_labels, holdout_fraction, Path(target_labels).parent.name, Path(out).name)
    cfg = load_labels_config(kind, params_path)
    fit_lines: list[str] = []
    if kind == "transfer" and target_poses is not None and norm is not None:
        normfit_cfg = load_config("normfit", params_path)  # both sections checked before any work
        with progress(2, "normfit", unit="step") as advance:
            fitted = run_normfit(target_poses, poses, norm, norm_plot, normfit_cfg, progress=advance)
        m = fitted["mapping"]
        fit_lines.append(
            f"normfit: {m['mode']} mapping, scale {m['scale_far']:.3f} (far) .. {m['scale_close']:.3f} (close); "
            f"usable frames target {fitted['target']['usable']}/{fitted['target']['frames']}, "
            f"source {fitted['source']['usable']}/{fitted['source']['frames']}"
        )
        fit_lines += [f"normfit: note: {note}" for note in fitted["notes"]]
    # a failed stage leaves no output, the normalisation it fitted included
    with removed_on_failure(*((norm, norm_plot) if fit_lines else ())), progress(None, f"labels {kind}") as advance:
        r = run_labels(kind, poses, frames_dir, out, cfg, norm=norm, profile=profile, progress=advance,
                       coverage_of=coverage_of)
    for line in fit_lines:
        click.echo(line)
    click.echo(f"labels {kind}: {r['frames']} labels ({r['drawn']} with a person) at {r['width']}x{r['height']}")
    if r.get("mirrored_frames"):
        click.echo(f"facing: {r['mirrored_frames']} source frames faced away from the way the target faces; "
                   "their left and right keypoints were exchanged (labels.transfer.facing)")
    if r.get("headed_frames"):
        click.echo(f"head: {r['headed_frames']} source frames whose head the pose model lost, or whose face was "
                   "turned from the target's view, got the target's (labels.transfer.head)")
    if r.get("uncrossed_frames"):
        click.echo(f"legs: {r['uncrossed_frames']} source frames crossed their legs in the picture; the legs are "
                   "named by their side of the hips (labels.transfer.legs)")
    if r.get("bone_ratios"):
        click.echo("retargeted bones (target/source length): "
                   + ", ".join(f"{b} {v:.2f}" for b, v in r["bone_ratios"].items()))


if __name__ == "__main__":
    main()

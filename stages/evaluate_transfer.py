"""evaluate_transfer@<target>-<source>: pose distance, detection and flicker of one rendered dance."""

from __future__ import annotations

import click

from dancepipe.cli import PARAMS_OPTION, figure, progress, stage_command
from dancepipe.config import load_config
from dancepipe.output.evaluate import EvaluateConfig, run_transfer
from dancepipe.output.personless import EMPTY_RULES

_FILE = click.Path(dir_okay=False)
_DIR = click.Path(file_okay=False)


@click.command()
@click.option("--name", default="transfer", show_default=True, help="the pair's name, for the page title.")
@click.option("--labels", "labels_dir", type=_DIR, required=True,
              help="normalised source labels the video was made from (data/labels/<target>/transfer/<source>).")
@click.option("--video", type=_FILE, required=True, help="rendered transfer video (outputs/<target>/<source>.mp4).")
@click.option("--side-by-side", type=_FILE, default=None,
              help="render's side-by-side video; its frames are the page's samples (else label | generated).")
@click.option("--metrics-dir", type=_DIR, required=True,
              help="where transfer.json and transfer_per_frame.csv go (metrics/eval/<target>/<source>).")
@click.option("--report", "report_path", type=_FILE, required=True,
              help="HTML page to write (outputs/<target>/<source>.html).")
@click.option("--empty", "empty_rule", type=click.Choice(EMPTY_RULES), default="trim", show_default=True,
              help="render.empty, the rule the video was rendered with for person-less source frames; "
                   "it maps video frames back to labels.")
@PARAMS_OPTION
@stage_command
def main(name: str, labels_dir: str, video: str, side_by_side: str | None, metrics_dir: str, report_path: str,
         empty_rule: str, params_path: str) -> None:
    """Measure one transfer video: does the pose model find the target in the source's pose?"""
    cfg = load_config("evaluate", params_path)
    assert isinstance(cfg, EvaluateConfig)
    with progress(None, f"evaluate {name}") as advance:
        result = run_transfer(cfg, labels_dir=labels_dir, video=video, side_by_side=side_by_side,
                              metrics_dir=metrics_dir, report_path=report_path, empty_rule=empty_rule,
                              title=f"dancepipe: {name}", progress=advance)
    t = result.evaluation.summary
    f = figure
    click.echo(
        f"evaluate {name}: {t['frames']} frames: pose distance {f(t['pose_distance'])}, detected in "
        f"{f(t['detection_rate'], '.0%')} of {t['person_frames']} frames with a person, "
        f"{t['substituted_frames']} held/blank, warp error {f(t['warp_error'])}; wrote {', '.join(result.outputs)}"
    )
    if t["covered_frames"] is not None:
        click.echo(
            f"coverage {name}: {t['covered_frames']} generated frames ask for a pose the target's footage covers "
            f"(pose distance {f(t['pose_distance_covered'])}; the others {f(t['pose_distance_uncovered'])}); "
            f"{t['far_frames']} ask for one far from all she made"
        )


if __name__ == "__main__":
    main()

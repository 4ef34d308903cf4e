"""evaluate@<target>: self-reenactment metrics on the target's held-out frames and its report page."""

from __future__ import annotations

import click

from dancepipe.cli import PARAMS_OPTION, figure, progress, stage_command
from dancepipe.config import load_config
from dancepipe.output.evaluate import EvaluateConfig, run_holdout

_FILE = click.Path(dir_okay=False)
_DIR = click.Path(file_okay=False)


@click.command()
@click.option("--name", default="target", show_default=True, help="the target's name, for the page title.")
@click.option("--generator", "generator_path", type=_FILE, required=True,
              help="trained generator checkpoint; its split.holdout_frames are evaluated "
                   "(models/<target>/generator.pt).")
@click.option("--face", "face_path", type=_FILE, required=True, help="face GAN checkpoint (models/<target>/face.pt).")
@click.option("--frames", "frames_dir", type=_DIR, required=True, help="real target frames (data/frames/<target>).")
@click.option("--labels", "labels_dir", type=_DIR, required=True, help="target labels (data/labels/<target>/train).")
@click.option("--metrics-dir", type=_DIR, required=True,
              help="where eval.json and eval_per_frame.csv go (metrics/eval/<target>).")
@click.option("--report", "report_path", type=_FILE, required=True,
              help="HTML page to write (outputs/<target>/held-out.html).")
@click.option("--train-curves", type=_DIR, default=None,
              help="dvclive TSV directory with the training curves (dvclive/<target>/train/plots/metrics); optional.")
@PARAMS_OPTION
@stage_command
def main(name: str, generator_path: str, face_path: str, frames_dir: str, labels_dir: str, metrics_dir: str,
         report_path: str, train_curves: str | None, params_path: str) -> None:
    """Measure the generator on held-out target frames beside the nearest-neighbour baseline."""
    cfg = load_config("evaluate", params_path)
    assert isinstance(cfg, EvaluateConfig)
    with progress(None, f"evaluate {name}") as advance:
        result = run_holdout(
            cfg, generator_path=generator_path, face_path=face_path, frames_dir=frames_dir, labels_dir=labels_dir,
            metrics_dir=metrics_dir, report_path=report_path, train_curves=train_curves,
            title=f"dancepipe: {name}, held-out frames", progress=advance,
        )
    h = result.evaluation.summary
    f = figure
    click.echo(
        f"evaluate {name}: held-out {h['frames']} frames: box SSIM {f(h['ssim_box'])} "
        f"(baseline {f(h['baseline_ssim_box'])}), SSIM {f(h['ssim'])} (baseline {f(h['baseline_ssim'])}), "
        f"PSNR {f(h['psnr'], '.2f')} dB (baseline {f(h['baseline_psnr'], '.2f')}), face SSIM {f(h['ssim_face'])} "
        f"(baseline {f(h['baseline_ssim_face'])}), pose distance {f(h['pose_distance'])} "
        f"(baseline {f(h['baseline_pose_distance'])}), no person {f(h['no_person_rate'], '.0%')}, "
        f"warp error {f(h['warp_error'])}; {result.face_note}; wrote {', '.join(result.outputs)}"
    )


if __name__ == "__main__":
    main()

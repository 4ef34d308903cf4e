"""evaluate: self-reenactment metrics on held-out target frames, transfer metrics, HTML report."""

from __future__ import annotations

import click

from dancepipe.cli import PARAMS_OPTION, progress, stage_command
from dancepipe.config import load_config
from dancepipe.evaluate import EvaluateConfig, run_evaluate
from dancepipe.gaps import EMPTY_RULES

_FILE = click.Path(dir_okay=False)
_DIR = click.Path(file_okay=False)


@click.command()
@click.option("--generator", "generator_path", type=_FILE, required=True,
              help="trained generator checkpoint; its split.holdout_frames are evaluated (models/generator.pt).")
@click.option("--face", "face_path", type=_FILE, required=True, help="face GAN checkpoint (models/face.pt).")
@click.option("--frames", "frames_dir", type=_DIR, required=True, help="real target frames (data/frames/target).")
@click.option("--labels", "labels_dir", type=_DIR, required=True, help="target labels (data/labels/train).")
@click.option("--transfer-labels", type=_DIR, required=True,
              help="normalised source labels the transfer video was made from (data/labels/transfer).")
@click.option("--transfer-video", type=_FILE, required=True, help="rendered transfer video (outputs/transfer.mp4).")
@click.option("--metrics-dir", type=_DIR, required=True,
              help="where eval.json, transfer.json and the per-frame CSVs go (metrics).")
@click.option("--report", "report_path", type=_FILE, required=True, help="HTML report to write (outputs/report.html).")
@click.option("--train-curves", type=_DIR, default=None,
              help="dvclive TSV directory with the training curves (dvclive/train/plots/metrics); optional.")
@click.option("--empty", "empty_rule", type=click.Choice(EMPTY_RULES), default="trim", show_default=True,
              help="render.empty, the rule the transfer video was rendered with for person-less source frames; "
                   "it maps video frames back to labels.")
@PARAMS_OPTION
@stage_command
def main(generator_path: str, face_path: str, frames_dir: str, labels_dir: str, transfer_labels: str,
         transfer_video: str, metrics_dir: str, report_path: str, train_curves: str | None, empty_rule: str,
         params_path: str) -> None:
    """Measure the generator on held-out frames and the transfer video; write metrics and the report."""
    cfg = load_config("evaluate", params_path)
    assert isinstance(cfg, EvaluateConfig)
    with progress(None, "evaluate") as advance:
        result = run_evaluate(
            cfg, generator_path=generator_path, face_path=face_path, frames_dir=frames_dir, labels_dir=labels_dir,
            transfer_labels_dir=transfer_labels, transfer_video=transfer_video, metrics_dir=metrics_dir,
            report_path=report_path, train_curves=train_curves, empty_rule=empty_rule, progress=advance,
        )
    h, t = result.holdout.summary, result.transfer.summary

    def f(v: float | None, spec: str = ".3f") -> str:
        return "n/a" if v is None else format(v, spec)

    click.echo(
        f"evaluate: held-out {h['frames']} frames: SSIM {f(h['ssim'])} (baseline {f(h['baseline_ssim'])}), "
        f"PSNR {f(h['psnr'], '.2f')} dB (baseline {f(h['baseline_psnr'], '.2f')}), face SSIM {f(h['ssim_face'])} "
        f"(baseline {f(h['baseline_ssim_face'])}), pose distance {f(h['pose_distance'])} "
        f"(baseline {f(h['baseline_pose_distance'])}), no person {f(h['no_person_rate'], '.0%')}, "
        f"warp error {f(h['warp_error'])}; transfer {t['frames']} frames: pose distance {f(t['pose_distance'])}, "
        f"detected in {f(t['detection_rate'], '.0%')} of {t['person_frames']} frames with a person, "
        f"{t['substituted_frames']} held/blank, warp error {f(t['warp_error'])}; {result.face_note}; "
        f"wrote {', '.join(result.outputs)}"
    )


if __name__ == "__main__":
    main()

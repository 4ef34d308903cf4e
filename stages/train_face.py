"""train_face@<target>: train the face GAN against the frozen main generator (models/<target>/face.pt)."""

from __future__ import annotations

import click

from dancepipe.cli import PARAMS_OPTION, progress, stage_command
from dancepipe.config import load_config
from dancepipe.model.face_train import read_feature_net, train_face


@click.command()
@click.option("--generator", "generator_path", type=click.Path(dir_okay=False), required=True,
              help="main generator checkpoint (models/<target>/generator.pt); it stays frozen.")
@click.option("--frames", "frames_dir", type=click.Path(file_okay=False), required=True,
              help="target frames directory with index.parquet (data/frames/<target>).")
@click.option("--labels", "labels_dir", type=click.Path(file_okay=False), required=True,
              help="training labels directory with face boxes in index.parquet (data/labels/<target>/train).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), required=True,
              help="where to write the face model (models/<target>/face.pt).")
@click.option("--logdir", type=click.Path(file_okay=False), required=True,
              help="dvclive directory for losses, metrics.json and the face sample grid.")
@PARAMS_OPTION
@stage_command
def main(generator_path: str, frames_dir: str, labels_dir: str, out_path: str, logdir: str,
         params_path: str) -> None:
    """Train the residual face generator on face crops of the training split."""
    cfg = load_config("train_face", params_path)
    if not cfg.enabled:
        train_face(cfg, feature_net="none", generator_path=generator_path, frames_dir=frames_dir,
                   labels_dir=labels_dir, out_path=out_path, logdir=logdir)
        click.echo(f"train_face: disabled (train_face.enabled is false); wrote {out_path} without weights, "
                   f"rendering will use the main generator alone")
        return
    feature_net = read_feature_net(params_path)
    with progress(cfg.steps, "train_face", unit="step") as advance:
        result = train_face(cfg, feature_net=feature_net, generator_path=generator_path, frames_dir=frames_dir,
                            labels_dir=labels_dir, out_path=out_path, logdir=logdir, progress=advance)
    click.echo(
        f"train_face: {int(result['faces'])} training faces ({int(result['frames_without_face'])} frames "
        f"without a usable face skipped); face L1 {result['face_l1_main']:.4f} (main generator) -> "
        f"{result['face_l1_refined']:.4f} (refined); wrote {out_path}"
    )


if __name__ == "__main__":
    main()

"""render@<target>-<source>: the target performing the source's motion, as H.264 MP4 with the source's audio."""

from __future__ import annotations

import click

from dancepipe.cli import PARAMS_OPTION, progress, stage_command
from dancepipe.config import load_config
from dancepipe.output.render import RenderConfig, count_frames, run_render

_FILE = click.Path(dir_okay=False)
_DIR = click.Path(file_okay=False)


@click.command()
@click.option("--generator", "generator_path", type=_FILE, required=True,
              help="trained generator checkpoint (models/<target>/generator.pt).")
@click.option("--face", "face_path", type=_FILE, required=True,
              help="face GAN checkpoint (models/<target>/face.pt); a disabled one renders without face refinement.")
@click.option("--labels", "labels_dir", type=_DIR, required=True,
              help="normalised source labels directory (data/labels/<target>/transfer/<source>).")
@click.option("--source-video", type=click.Path(), required=True,
              help="the source's video, a file or a subject/ingest directory (data/subjects/<source>): "
                   "frame rate, audio track and the side-by-side's source panel.")
@click.option("--source-poses", type=_FILE, default=None,
              help="the source's pose table (data/subjects/<source>/poses.parquet): the side-by-side's source panel is "
                   "cropped around the source subject's box, scaled so the dancer is as tall as the stick "
                   "figure, and steadied over render.panel_window frames.")
@click.option("--out", type=_FILE, required=True, help="transfer video to write (outputs/<target>/<source>.mp4).")
@click.option("--side-by-side", "side_by_side_out", type=_FILE, default=None,
              help="side-by-side video to write: source | stick figure | generated (outputs/<target>/side_by_side/<source>.mp4); "
                   "needs --source-poses. Leave both out to write the transfer video alone.")
@PARAMS_OPTION
@stage_command
def main(generator_path: str, face_path: str, labels_dir: str, source_video: str, source_poses: str | None,
         out: str, side_by_side_out: str | None, params_path: str) -> None:
    """Render the transfer labels through the generator and encode the videos.

    Labels without a person are never generated: render.empty (hold, trim or blank)
    decides what those frames show.
    """
    if side_by_side_out is not None and source_poses is None:
        raise click.UsageError("--side-by-side needs --source-poses (the source's pose table)")
    cfg = load_config("render", params_path)
    assert isinstance(cfg, RenderConfig)
    with progress(count_frames(labels_dir, cfg.empty), "render") as advance:
        result = run_render(
            cfg, generator_path=generator_path, face_path=face_path, labels_dir=labels_dir,
            source_video=source_video, source_poses=source_poses, out=out,
            side_by_side_out=side_by_side_out, progress=advance,
        )
    t = result.timing
    click.echo(
        f"render: {result.frames} frames {result.width}x{result.height} at {result.fps:.3f} fps, "
        f"audio {'copied' if result.audio else 'none (source has no audio)'}"
        f"{f' from {result.audio_start:.3f} s' if result.audio and result.audio_start else ''}; "
        f"{result.gaps_summary()}; {result.face_note}; "
        f"{t.frames / max(t.total, 1e-9):.1f} frames/s, {t.outside_generator:.0%} of the time outside the generator; "
        f"wrote {', '.join(result.outputs)}"
    )


if __name__ == "__main__":
    main()

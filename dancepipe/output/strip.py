"""The README's picture: a few frames of each side-by-side video, tiled into one JPEG.

Each side-by-side frame already shows source | normalised stick figure | generated target,
so a row of them per dance shows what the pipeline does at a glance. The frames are
evenly spaced through each video, leaving out its first and last frames (the first is
generated from nothing and is the blurriest). ``make picture`` regenerates the strip from
``outputs/<target>/side_by_side/*.mp4`` after ``make demo``.

Layout: one row per video, in the order given, ``frames`` tiles per row, ``gap`` pixels
between tiles and rows and around the edge. Every tile is scaled to the same height
(``height``, or the smallest video's height), keeping its aspect ratio; a row narrower
than the widest is padded on the right with the background colour.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import click
import cv2
import numpy as np

from dancepipe.atomic import atomic_path
from dancepipe.errors import DancepipeError
from dancepipe.video.decode import iter_frames, probe

BACKGROUND = (24, 24, 24)  # RGB of the gaps


def pick_frames(count: int, frames: int) -> list[int]:
    """``frames`` indices evenly spaced through ``count`` frames, the first and last left out."""
    if frames < 1:
        raise DancepipeError(f"frames per video must be at least 1, got {frames}")
    if count < frames + 2:
        raise DancepipeError(f"a video of {count} frames is too short for {frames} evenly spaced frames")
    return [round((i + 1) * (count - 1) / (frames + 1)) for i in range(frames)]


def read_frames(video: str | os.PathLike[str], indices: Sequence[int]) -> list[np.ndarray]:
    """The decoded (H, W, 3) uint8 RGB frames of ``video`` at ``indices`` (ascending)."""
    wanted = set(indices)
    found: dict[int, np.ndarray] = {}
    for frame in iter_frames(video):
        if frame.index in wanted:
            found[frame.index] = frame.image
            if len(found) == len(wanted):
                break
    missing = sorted(wanted - found.keys())
    if missing:
        raise DancepipeError(f"{video}: frame {missing[0]} could not be decoded")
    return [found[i] for i in indices]


def tile(rows: Sequence[Sequence[np.ndarray]], *, height: int | None = None, gap: int = 4) -> np.ndarray:
    """Tile rows of RGB images into one (H, W, 3) uint8 image (the layout in the module docstring)."""
    if not rows or not all(rows):
        raise DancepipeError("nothing to tile: every row needs at least one image")
    height = height or min(img.shape[0] for row in rows for img in row)
    scaled = [[_to_height(img, height) for img in row] for row in rows]
    widths = [sum(img.shape[1] for img in row) + gap * (len(row) - 1) for row in scaled]
    canvas = np.empty((gap + len(rows) * (height + gap), max(widths) + 2 * gap, 3), np.uint8)
    canvas[:] = BACKGROUND
    for r, row in enumerate(scaled):
        y, x = gap + r * (height + gap), gap
        for img in row:
            canvas[y:y + height, x:x + img.shape[1]] = img
            x += img.shape[1] + gap
    return canvas


def _to_height(image: np.ndarray, height: int) -> np.ndarray:
    h, w = image.shape[:2]
    if h == height:
        return image
    width = max(1, round(w * height / h))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if height < h else cv2.INTER_CUBIC)


def make_strip(videos: Sequence[str | os.PathLike[str]], *, frames: int = 3, height: int | None = None,
               gap: int = 4) -> np.ndarray:
    """One row of ``frames`` evenly spaced frames per video, tiled (see :func:`tile`)."""
    if not videos:
        raise DancepipeError("no side-by-side videos to make a strip of")
    rows = [read_frames(v, pick_frames(probe(v).frame_count, frames)) for v in videos]
    return tile(rows, height=height, gap=gap)


def write_strip(videos: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], *, frames: int = 3,
                height: int | None = None, gap: int = 4, quality: int = 85) -> np.ndarray:
    """Write :func:`make_strip`'s image to ``out`` as a JPEG (atomically) and return it."""
    image = make_strip(videos, frames=frames, height=height, gap=gap)
    with atomic_path(out) as tmp:
        ok = cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise DancepipeError(f"{out}: could not write the JPEG")
    return image


def side_by_sides(outputs: str | os.PathLike[str], target: str | None = None) -> list[Path]:
    """The side-by-side videos under ``outputs`` (``<target>/side_by_side/*.mp4``), sorted by name."""
    pattern = f"{target or '*'}/side_by_side/*.mp4"
    videos = sorted(Path(outputs).glob(pattern))
    if not videos:
        raise DancepipeError(f"{outputs}: no {pattern} (run `make demo` first)")
    return videos


@click.command()
@click.option("--outputs", type=click.Path(exists=True, file_okay=False), default="outputs", show_default=True,
              help="the pipeline's outputs directory")
@click.option("--target", default=None, help="one target's videos only (default: every target's)")
@click.option("--out", type=click.Path(dir_okay=False), default="docs/images/demo-strip.jpg", show_default=True)
@click.option("--frames", type=click.IntRange(1, 12), default=3, show_default=True, help="frames per video")
@click.option("--height", type=click.IntRange(16, 2048), default=None, help="tile height in pixels")
@click.option("--quality", type=click.IntRange(1, 100), default=85, show_default=True, help="JPEG quality")
def main(outputs: str, target: str | None, out: str, frames: int, height: int | None, quality: int) -> None:
    """Tile frames of the side-by-side videos into the README's picture (what `make picture` runs)."""
    try:
        videos = side_by_sides(outputs, target)
        image = write_strip(videos, out, frames=frames, height=height, quality=quality)
    except DancepipeError as e:
        raise click.ClickException(str(e)) from e
    names = ", ".join(str(v) for v in videos)
    click.echo(f"{out}: {image.shape[1]}x{image.shape[0]}, {os.path.getsize(out) // 1024} KB, from {names}")


if __name__ == "__main__":
    main()

"""The README's picture: frames of real encoded videos, tiled, checked on geometry and pixels."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from dancepipe.errors import DancepipeError
from dancepipe.output import strip
from dancepipe.video.decode import iter_frames
from dancepipe.video.encode import mp4_writer

H, W, N = 48, 96, 12  # a side-by-side-like frame: wider than tall


def frame_image(i: int, height: int = H, width: int = W) -> np.ndarray:
    """Frame i: a flat grey level that names it, and a bright square that moves with it."""
    img = np.full((height, width, 3), 10 + 10 * i, np.uint8)
    x = 4 * i
    img[8:24, x:x + 16] = (250, 200, 40)
    return img


def encode(path: Path, count: int = N, height: int = H, width: int = W) -> Path:
    with mp4_writer(path, width=width, height=height, fps=10, crf=0, preset="ultrafast") as writer:
        for i in range(count):
            writer.write(frame_image(i, height, width))
    return path


def decoded(path: Path) -> list[np.ndarray]:
    return [f.image for f in iter_frames(path)]


def test_pick_frames_spaces_them_evenly_and_leaves_out_both_ends() -> None:
    assert strip.pick_frames(12, 3) == [3, 6, 8]  # 11/4 = 2.75 apart
    assert strip.pick_frames(101, 4) == [20, 40, 60, 80]
    assert strip.pick_frames(3, 1) == [1]
    with pytest.raises(DancepipeError, match="too short"):
        strip.pick_frames(4, 3)


def test_strip_tiles_are_the_decoded_frames(tmp_path: Path) -> None:
    a = encode(tmp_path / "walker.mp4")
    b = encode(tmp_path / "jumper.mp4", count=N + 9)
    gap = 4
    image = strip.make_strip([a, b], frames=3, gap=gap)
    # two rows of three W x H tiles, gap pixels between them and around the edge
    assert image.shape == (gap + 2 * (H + gap), gap + 3 * (W + gap), 3)
    assert image.dtype == np.uint8
    for row, (video, picks) in enumerate([(a, [3, 6, 8]), (b, [5, 10, 15])]):
        frames = decoded(video)
        y = gap + row * (H + gap)
        for col, index in enumerate(picks):
            x = gap + col * (W + gap)
            np.testing.assert_array_equal(image[y:y + H, x:x + W], frames[index])
    # the gaps are background
    assert (image[:gap] == strip.BACKGROUND).all()
    assert (image[gap + H:gap + H + gap] == strip.BACKGROUND).all()
    assert (image[:, gap + W:gap + W + gap] == strip.BACKGROUND).all()


def test_tiles_are_scaled_to_one_height_and_short_rows_padded() -> None:
    tall = np.full((80, 40, 3), 200, np.uint8)
    wide = np.full((40, 120, 3), 100, np.uint8)
    image = strip.tile([[tall, tall], [wide]], height=40, gap=2)
    # the tall tile becomes 20 x 40; row widths 2*20+2 = 42 and 120
    assert image.shape == (2 + 2 * 42, 2 + 120 + 2, 3)
    assert (image[2:42, 2:22] == 200).all() and (image[2:42, 24:44] == 200).all()
    assert (image[2:42, 44:] == strip.BACKGROUND).all()  # the short first row is padded
    np.testing.assert_array_equal(image[44:84, 2:122], wide)


def test_write_strip_writes_that_image_as_a_jpeg(tmp_path: Path) -> None:
    video = encode(tmp_path / "pose2sim.mp4")
    out = tmp_path / "images" / "strip.jpg"
    image = strip.write_strip([video], out, frames=2, quality=95)
    assert out.read_bytes()[:3] == b"\xff\xd8\xff"
    written = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    assert written.shape == image.shape == (4 + H + 4, 4 + 2 * (W + 4), 3)
    assert np.abs(written.astype(int) - image).mean() < 3  # JPEG is lossy, not different
    assert [p.name for p in out.parent.iterdir()] == ["strip.jpg"]  # no temporary left behind


def test_the_command_finds_every_targets_side_by_sides(tmp_path: Path) -> None:
    for target, source in [("dancer", "walker"), ("dancer", "jumper"), ("me", "walker")]:
        (tmp_path / "outputs" / target / "side_by_side").mkdir(parents=True, exist_ok=True)
        encode(tmp_path / "outputs" / target / "side_by_side" / f"{source}.mp4")
    (tmp_path / "outputs" / "dancer" / "walker.mp4").write_bytes(b"not a side-by-side")
    out = tmp_path / "strip.jpg"
    runner = CliRunner()
    result = runner.invoke(strip.main, ["--outputs", str(tmp_path / "outputs"), "--out", str(out), "--frames", "2"])
    assert result.exit_code == 0, result.output
    assert cv2.imread(str(out)).shape[:2] == (4 + 3 * (H + 4), 4 + 2 * (W + 4))
    result = runner.invoke(strip.main, ["--outputs", str(tmp_path / "outputs"), "--target", "me", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert cv2.imread(str(out)).shape[:2] == (4 + H + 4, 4 + 3 * (W + 4))
    result = runner.invoke(strip.main, ["--outputs", str(tmp_path / "outputs"), "--target", "nobody", "--out", str(out)])
    assert result.exit_code == 1
    assert "no nobody/side_by_side/*.mp4" in result.output

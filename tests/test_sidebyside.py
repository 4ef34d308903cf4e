"""The side-by-side's source panel: a steadied crop around the source subject, checked on pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dancepipe.errors import DancepipeError
from dancepipe.output.sidebyside import (
    crop_panel,
    keep_inside,
    label_scale,
    load_track,
    smooth_series,
    source_panels,
    subject_track,
)
from dancepipe.pose.keypoints import KEYPOINT_COLUMNS, SCHEMA, keypoints_to_columns, write_table
from tests.conftest import write_video


def pose_table(boxes: np.ndarray, found: np.ndarray | None = None, fps: float = 10.0,
               kps: np.ndarray | None = None) -> pd.DataFrame:
    """A pose table (the poses stage's schema) with the given (N, 4) subject boxes and (N, 17, 3) keypoints (or none)."""
    boxes = np.asarray(boxes, np.float32)
    n = len(boxes)
    found = np.ones(n, bool) if found is None else np.asarray(found, bool)
    boxes = np.where(found[:, None], boxes, np.nan)
    data = {"frame": np.arange(n, dtype=np.int64), "timestamp": np.arange(n) / fps, "person_found": found,
            "box_x0": boxes[:, 0], "box_y0": boxes[:, 1], "box_x1": boxes[:, 2], "box_y1": boxes[:, 3],
            "score": np.where(found, 0.9, np.nan).astype(np.float32)}
    if kps is None:
        data.update({c: np.full(n, np.nan, np.float32) for c in KEYPOINT_COLUMNS})
    else:
        data.update(keypoints_to_columns(np.where(found[:, None, None], kps, np.nan)))
    return pd.DataFrame(data, columns=SCHEMA.names)


def write_pose_table(path: Path, boxes: np.ndarray, found: np.ndarray | None = None,
                     kps: np.ndarray | None = None) -> Path:
    write_table(pose_table(boxes, found, kps=kps), path, {"video": "synthetic"})
    return path


def labels_index(kps: np.ndarray) -> pd.DataFrame:
    """The part of a labels index the panel reads: frame and keypoints (label pixels)."""
    return pd.DataFrame({"frame": np.arange(len(kps), dtype=np.int64), **keypoints_to_columns(kps)})


def figure_in(box: np.ndarray) -> np.ndarray:
    """(17, 3) keypoints spread over a box's width and its height from 10 % to 90 % (conf 0.9)."""
    x0, y0, x1, y1 = box
    u = np.linspace(0.0, 1.0, 17)
    return np.stack([x0 + (x1 - x0) * (u * 7 % 1), y0 + (y1 - y0) * (0.1 + 0.8 * u), np.full(17, 0.9)], axis=1)


def rectangle_clip(centres_x: list[float], size: tuple[int, int] = (180, 320), rect: tuple[int, int] = (24, 60),
                   cy: float = 90.0) -> tuple[list[np.ndarray], np.ndarray]:
    """Frames with one white rectangle (w, h) on black at each centre x; and its exact boxes."""
    h, w = size
    rw, rh = rect
    frames, boxes = [], []
    for cx in centres_x:
        img = np.zeros((h, w, 3), np.uint8)
        x0, y0 = int(round(cx - rw / 2)), int(round(cy - rh / 2))
        img[max(0, y0):y0 + rh, max(0, x0):x0 + rw] = 255
        frames.append(img)
        boxes.append((x0, y0, x0 + rw, y0 + rh))
    return frames, np.asarray(boxes, np.float64)


def bright_extent(panel: np.ndarray, threshold: int = 128) -> tuple[int, int, float, float]:
    """Height and width of the bright region of a panel (rows/columns with any bright pixel), and its centre."""
    mask = panel.mean(axis=2) > threshold
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return 0, 0, float("nan"), float("nan")
    return (int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1),
            float(cols[0] + cols[-1]) / 2, float(rows[0] + rows[-1]) / 2)


def test_track_interpolates_missing_detections_and_holds_the_ends():
    n = 10
    boxes = np.array([(10 * t, 0, 10 * t + 20, 40) for t in range(n)], np.float64)
    found = np.ones(n, bool)
    found[[0, 1, 4, 5, 9]] = False
    track = subject_track(pose_table(boxes, found), width=1, height=2, window=1)
    cx = np.array([track.box(t)[0] + track.box(t)[2] / 2 for t in range(n)])
    # found centres are 10t + 10; gaps 4-5 lie on the line, frames 0-1 take frame 2's box, frame 9 frame 8's
    np.testing.assert_allclose(cx, [30, 30, 30, 40, 50, 60, 70, 80, 90, 90], atol=1e-6)
    assert track.box(3)[3] == pytest.approx(40.0 * 1.2)  # no keypoints: the box padded by 10 %


def test_label_scale_is_the_ratio_of_the_two_figures_whatever_the_shift_and_missing_joints():
    rng = np.random.default_rng(1)
    n = 8
    src = np.stack([figure_in(np.array([100 + 30 * t, 50, 140 + 30 * t, 250], float)) for t in range(n)])
    lab = src.copy()
    lab[..., :2] = 0.35 * src[..., :2] + rng.uniform(-20, 20, (n, 1, 2))  # scale 0.35, a shift per frame
    lab[2, :14] = np.nan  # 3 joints left: not measured
    src[5, ::2] = np.nan  # 8 shared joints: still measured
    boxes = np.array([(100 + 30 * t, 40, 140 + 30 * t, 260) for t in range(n)], float)
    scale = label_scale(pose_table(boxes, kps=src), labels_index(lab))
    assert np.isnan(scale[2]) and np.isfinite(np.delete(scale, 2)).all()
    np.testing.assert_allclose(np.delete(scale, 2), 0.35, rtol=1e-5)
    # the crop makes the source as tall as the label: 48 label px / 0.35 source px per label px
    track = subject_track(pose_table(boxes, kps=src), width=32, height=48, labels=labels_index(lab), window=5)
    for t in range(n):
        x0, y0, w, h = track.box(t)
        assert h == pytest.approx(48 / 0.35, rel=1e-4) and w == pytest.approx(h * 32 / 48)
        assert x0 + w / 2 == pytest.approx(120 + 30 * t, abs=1e-6)  # box centre (moving steadily)


def test_a_misleading_frame_does_not_jerk_the_scale():
    n = 30
    boxes = np.array([(100, 50, 140, 250)] * n, float)
    src = np.stack([figure_in(b) for b in boxes])
    lab = src.copy()
    lab[..., :2] *= 0.5
    lab[12, 4:, :2] = lab[12, 4:, :2] * 3  # one bad frame: three times too big
    track = subject_track(pose_table(boxes, kps=src), width=32, height=48, labels=labels_index(lab), window=9)
    heights = np.array([track.box(t)[3] for t in range(n)])
    np.testing.assert_allclose(heights, 96.0, rtol=1e-6)


def test_crop_has_the_panel_aspect_and_covers_a_wide_subject_with_padding():
    boxes = np.array([(100, 50, 300, 100)] * 5, np.float64)  # 200 wide, 50 tall: wider than a 2:3 panel
    track = subject_track(pose_table(boxes), width=2, height=3, window=5)
    x0, y0, w, h = track.box(2)
    assert w / h == pytest.approx(2 / 3)
    assert w == pytest.approx(200 * 1.2) and (x0 + w / 2, y0 + h / 2) == pytest.approx((200.0, 75.0))


def test_smoothing_keeps_steady_motion_and_removes_jitter():
    rng = np.random.default_rng(0)
    t = np.arange(120, dtype=np.float64)
    line = 5.0 + 3.0 * t
    np.testing.assert_allclose(smooth_series(line, 15), line, atol=1e-9)  # no lag, also at the ends
    noisy = line + rng.normal(0, 4.0, len(t))
    residual = smooth_series(noisy, 15) - line
    assert residual.std() < 4.0 / 2.5
    assert np.abs(np.diff(smooth_series(noisy, 15))).max() < np.abs(np.diff(noisy)).max() / 2
    np.testing.assert_array_equal(smooth_series(noisy, 1), noisy)
    assert len(smooth_series(noisy[:4], 15)) == 4  # short series: window shrinks to fit


def test_crop_panel_scales_the_box_to_the_panel_and_is_black_outside_the_picture():
    image = np.zeros((100, 200, 3), np.uint8)
    image[20:80, 90:110] = 200  # a 20 x 60 subject
    panel = crop_panel(image, (70.0, 14.0, 60.0, 72.0), 40, 48)  # 60x72 box → 40x48: scale 2/3
    h, w, cx, cy = bright_extent(panel)
    assert (h, w) == (40, pytest.approx(13, abs=1)) and (cx, cy) == (pytest.approx(19.5, abs=1), pytest.approx(23.5, abs=1))
    grey = np.full((100, 200, 3), 50, np.uint8)
    half_out = crop_panel(grey, (-30.0, 0.0, 60.0, 72.0), 40, 48)  # its left half lies left of the picture
    assert (half_out[:, :20] == 0).all() and (half_out[:, 20:] == 50).all()
    assert (crop_panel(grey, (500.0, 0.0, 60.0, 72.0), 40, 48) == 0).all()


def test_crop_panel_scaled_up_more_than_twice_from_a_fractional_box_fills_the_panel():
    """The walker's box at x0 = 1413.36 into a 512x1024 panel (2.2x): it crashed make paper-check."""
    grey = np.full((994, 1768, 3), 50, np.uint8)
    panel = crop_panel(grey, (1413.36, 516.3, 234.07, 468.13), 512, 1024)
    assert panel.shape == (1024, 512, 3) and (panel[2:-2, 2:-2] == 50).all()  # edges: within a pixel


def test_source_panels_follow_the_subject_through_a_real_video(tmp_path):
    xs = [40.0 + 20 * t for t in range(12)]
    frames, boxes = rectangle_clip(xs)
    video = write_video(tmp_path / "walk.mp4", frames, fps=10)
    found = np.ones(12, bool)
    found[[3, 7]] = False  # missed detections: interpolated
    poses = write_pose_table(tmp_path / "poses.parquet", boxes, found)
    track = load_track(poses, width=64, height=96, window=5)
    wanted = [0, 3, 4, 7, 11]
    panels = list(source_panels(video, track, wanted, 64, 96))
    assert len(panels) == len(wanted)
    for panel in panels:
        h, w, cx, cy = bright_extent(panel)
        # 60-px subject in a 72 x 48 crop shown at 96 x 64: 80 px tall, 24 px wide → 32, centred
        assert h == pytest.approx(80, abs=2) and w == pytest.approx(32, abs=2)
        assert cx == pytest.approx(31.5, abs=2) and cy == pytest.approx(47.5, abs=2)
    with pytest.raises(DancepipeError, match="ends at frame 11, before label frame 12"):
        list(source_panels(video, track, [10, 12], 64, 96))


def test_source_panels_show_the_dancer_as_tall_as_the_stick_figure(tmp_path):
    xs = [60.0 + 15 * t for t in range(10)]
    frames, boxes = rectangle_clip(xs, rect=(30, 100))
    video = write_video(tmp_path / "walk.mp4", frames, fps=10)
    src = np.stack([figure_in(b) for b in boxes])  # keypoints inside the 100-px subject (80 px apart)
    lab = src.copy()
    lab[..., :2] = 0.4 * (src[..., :2] - src[:, :1, :2]) + np.array([20.0, 10.0])  # a 32-px stick figure
    poses = write_pose_table(tmp_path / "poses.parquet", boxes, kps=src)
    track = load_track(poses, width=64, height=96, labels=labels_index(lab), window=5)
    for t, panel in enumerate(source_panels(video, track, range(10), 64, 96)):
        h, w, cx, cy = bright_extent(panel)
        assert h == pytest.approx(40, abs=2) and w == pytest.approx(12, abs=2)  # 0.4 x (100 x 30)
        # the crop, 160 x 240 source px, is centred on the 180-px height and kept inside the 320-px width
        crop_x0 = min(max(xs[t] - 80, 0), 320 - 160)
        assert cx == pytest.approx((xs[t] - crop_x0) * 0.4 - 0.5, abs=1.5), t
        assert cy == pytest.approx((90 + 30) * 0.4 - 0.5, abs=1.5), t


def test_a_crop_past_the_picture_is_shifted_inside_and_a_larger_one_centred():
    assert keep_inside((-10.0, 5.0, 40.0, 30.0), 100, 50) == (0.0, 5.0, 40.0, 30.0)
    assert keep_inside((80.0, 30.0, 40.0, 30.0), 100, 50) == (60.0, 20.0, 40.0, 30.0)
    assert keep_inside((7.0, -3.0, 120.0, 30.0), 100, 50) == (-10.0, 0.0, 120.0, 30.0)


def test_source_panels_of_a_rotated_video_use_upright_coordinates(tmp_path):
    # stored 180 x 320 with a 90° display rotation: upright it is 320 x 180 (portrait)
    upright, boxes = rectangle_clip([90.0] * 6, size=(320, 180), cy=160.0)
    stored = [np.ascontiguousarray(np.rot90(f, k=-1)) for f in upright]
    video = write_video(tmp_path / "rot.mp4", stored, fps=10, rotation=90)
    poses = write_pose_table(tmp_path / "poses.parquet", boxes)
    track = load_track(poses, width=64, height=96, window=5)
    for panel in source_panels(video, track, range(6), 64, 96):
        h, w, _, _ = bright_extent(panel)
        assert h == pytest.approx(80, abs=2) and w == pytest.approx(32, abs=2)


def test_a_pose_table_without_any_subject_is_one_sentence(tmp_path):
    poses = write_pose_table(tmp_path / "poses.parquet", np.zeros((4, 4)), np.zeros(4, bool))
    with pytest.raises(DancepipeError, match="no subject box in any frame"):
        load_track(poses, width=8, height=8)

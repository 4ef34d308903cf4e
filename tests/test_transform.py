"""The crop/resize transform shared by frames and labels (dancepipe.video.crop)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dancepipe.errors import DancepipeError
from dancepipe.video.crop import CropTransform, fit_crop, full_frame_transform

SIZES = st.sampled_from([(64, 96), (128, 192), (192, 128), (256, 256)])


@st.composite
def scenes(draw):
    """A frame size, an output size, a padding and 1-6 subject boxes inside the frame."""
    sw = draw(st.integers(80, 2000))
    sh = draw(st.integers(80, 2000))
    n = draw(st.integers(1, 6))
    boxes = []
    for _ in range(n):
        x0 = draw(st.floats(0, sw - 10))
        y0 = draw(st.floats(0, sh - 10))
        x1 = draw(st.floats(x0 + 5, sw))
        y1 = draw(st.floats(y0 + 5, sh))
        boxes.append((x0, y0, x1, y1))
    width, height = draw(SIZES)
    padding = draw(st.floats(0, 0.5))
    return sw, sh, np.array(boxes), width, height, padding


@settings(max_examples=150, deadline=None)
@given(scenes())
def test_fit_crop_keeps_subject_inside_with_output_aspect(scene):
    sw, sh, boxes, width, height, padding = scene
    t = fit_crop(boxes, sw, sh, width, height, padding=padding, percentile=0)
    assert t.crop_w / t.crop_h == pytest.approx(width / height, rel=1e-9)
    corners = np.concatenate([boxes[:, :2], boxes[:, 2:]])
    uv = t.apply_points(corners)
    eps = 1e-6 * max(width, height)
    assert np.all(uv[:, 0] >= -eps) and np.all(uv[:, 0] <= width + eps)
    assert np.all(uv[:, 1] >= -eps) and np.all(uv[:, 1] <= height + eps)
    # Where the crop fits in the frame it stays inside it (no needless black border).
    if t.crop_w <= sw:
        assert -1e-6 <= t.x0 and t.x0 + t.crop_w <= sw + 1e-6
    if t.crop_h <= sh:
        assert -1e-6 <= t.y0 and t.y0 + t.crop_h <= sh + 1e-6


@settings(max_examples=100, deadline=None)
@given(scenes(), st.lists(st.tuples(st.floats(-500, 2500), st.floats(-500, 2500)), min_size=1, max_size=20))
def test_point_mapping_round_trips(scene, points):
    sw, sh, boxes, width, height, padding = scene
    t = fit_crop(boxes, sw, sh, width, height, padding=padding)
    xy = np.array(points)
    np.testing.assert_allclose(t.invert_points(t.apply_points(xy)), xy, atol=1e-6)
    # The affine matrix agrees with apply_points.
    homog = np.c_[xy, np.ones(len(xy))]
    np.testing.assert_allclose(homog @ t.matrix().T, t.apply_points(xy), atol=1e-6)


def test_nan_points_stay_nan_and_missing_boxes_are_ignored():
    boxes = np.array([[100, 100, 200, 300], [np.nan] * 4, [110, 90, 210, 310]], dtype=float)
    t = fit_crop(boxes, 640, 480, 64, 96, padding=0.1)
    out = t.apply_points(np.array([[np.nan, np.nan], [150.0, 200.0]]))
    assert np.isnan(out[0]).all() and np.isfinite(out[1]).all()
    with pytest.raises(DancepipeError, match="not found in any frame"):
        fit_crop(np.full((4, 4), np.nan), 640, 480, 64, 96)


def test_single_outlier_box_does_not_blow_up_the_crop():
    rng = np.random.default_rng(0)
    boxes = np.tile([300.0, 100.0, 400.0, 380.0], (100, 1)) + rng.normal(0, 2, (100, 4))
    clean = fit_crop(boxes, 1280, 720, 64, 96)
    boxes[37] = [0, 0, 1280, 720]  # one false detection covering the whole frame
    robust = fit_crop(boxes, 1280, 720, 64, 96)
    assert robust.crop_h == pytest.approx(clean.crop_h, rel=0.05)


def test_apply_image_maps_a_marker_to_its_point_and_pads_black():
    # A portrait crop of a landscape frame, taller than the frame: black bands top and bottom.
    img = np.full((100, 200, 3), 200, np.uint8)
    img[40:60, 90:110] = (255, 0, 0)
    t = CropTransform(x0=50.0, y0=-50.0, crop_w=100.0, crop_h=200.0, width=64, height=128,
                      src_width=200, src_height=100)
    out = t.apply_image(img)
    assert out.shape == (128, 64, 3)
    u, v = t.apply_points(np.array([100.0, 50.0]))
    assert tuple(out[int(v), int(u)]) == (255, 0, 0)
    top = int(t.apply_points(np.array([0.0, 0.0]))[1])
    bottom = int(np.ceil(t.apply_points(np.array([0.0, 100.0]))[1]))
    assert out[: top - 1].max() == 0 and out[bottom + 1:].max() == 0
    assert out[top + 2: bottom - 2, :, 0].min() >= 150  # the grey frame (and red marker), not black


def test_full_frame_letterboxes_whole_frame_centred():
    t = full_frame_transform(1920, 1080, 128, 192)
    corners = t.apply_points(np.array([[0.0, 0.0], [1920.0, 1080.0]]))
    np.testing.assert_allclose(corners[:, 0], [0, 128], atol=1e-6)
    assert corners[0, 1] == pytest.approx(192 - corners[1, 1])  # equal bands above and below
    out = t.apply_image(np.full((1080, 1920, 3), 255, np.uint8))
    assert out[0].max() == 0 and out[-1].max() == 0 and out[96].min() == 255


def test_apply_image_rejects_wrong_frame_size_and_json_round_trip(tmp_path):
    t = fit_crop(np.array([[10, 10, 50, 90]], float), 100, 100, 64, 96)
    with pytest.raises(DancepipeError, match="fitted for 100x100"):
        t.apply_image(np.zeros((50, 100, 3), np.uint8))
    t.save(tmp_path / "t.json")
    assert CropTransform.load(tmp_path / "t.json") == t
    with pytest.raises(DancepipeError, match="does not exist"):
        CropTransform.load(tmp_path / "missing.json")

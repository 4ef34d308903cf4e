"""The stick-figure rasteriser."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dancepipe.pose.keypoints import KP
from dancepipe.pose.skeleton import FACE_POINTS, LIMBS, DrawStyle, clip_segment, draw_skeleton
from tests.fixtures.labels import figure

STYLE = DrawStyle(line_px=5, radius_px=3, face_line_px=2, face_radius_px=2)


def _only(points: dict[str, tuple[float, float]]) -> np.ndarray:
    kps = np.full((17, 3), np.nan)
    for name, (x, y) in points.items():
        kps[KP[name]] = (x, y, 0.9)
    return kps


def _colour_count(img: np.ndarray, colour: tuple[int, int, int]) -> int:
    return int(np.all(img == np.array(colour, np.uint8), axis=2).sum())


def _standing(height: int = 200, width: int = 160) -> np.ndarray:
    return figure([width / 2], [0.92 * height], [0.8 * height])[0]


def test_pixels_lie_along_the_limb_segment():
    a, b = np.array([20.0, 30.0]), np.array([70.0, 80.0])
    img = draw_skeleton(_only({"left_shoulder": a, "left_elbow": b}), 100, 100, STYLE)
    ys, xs = np.nonzero(img.any(axis=2))
    p = np.stack([xs, ys], 1).astype(float)
    t = np.clip(((p - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
    dist = np.linalg.norm(p - (a + t[:, None] * (b - a)), axis=1)
    assert dist.max() <= STYLE.line_px / 2 + STYLE.radius_px + 1.5
    for s in np.linspace(0.15, 0.85, 15):  # and the whole segment is covered, in the limb's colour
        x, y = np.round(a + s * (b - a)).astype(int)
        assert tuple(img[y, x]) == LIMBS["left_upper_arm"][2]


def test_missing_joint_draws_none_of_its_limbs():
    full = _standing()
    img = draw_skeleton(full, 160, 200, STYLE)
    for limb in ("left_upper_arm", "left_forearm", "right_upper_arm", "right_forearm"):
        assert _colour_count(img, LIMBS[limb][2]) > 20
    kps = full.copy()
    kps[KP["left_elbow"]] = np.nan
    img = draw_skeleton(kps, 160, 200, STYLE)
    assert _colour_count(img, LIMBS["left_upper_arm"][2]) == 0
    assert _colour_count(img, LIMBS["left_forearm"][2]) == 0
    assert _colour_count(img, LIMBS["right_forearm"][2]) > 20
    # a confidence under min_conf counts as missing too
    kps = full.copy()
    kps[KP["right_wrist"], 2] = 0.2
    img = draw_skeleton(kps, 160, 200, DrawStyle(5, 3, 2, 2, min_conf=0.5))
    assert _colour_count(img, LIMBS["right_forearm"][2]) == 0
    assert _colour_count(img, LIMBS["right_upper_arm"][2]) > 20


def test_no_person_is_a_black_image():
    img = draw_skeleton(np.full((17, 3), np.nan), 64, 96, STYLE)
    assert img.shape == (96, 64, 3) and img.dtype == np.uint8 and not img.any()


def test_points_outside_are_clipped_not_wrapped():
    # a limb entering from far left is drawn from the border; nothing appears on the right
    img = draw_skeleton(_only({"left_hip": (-1e5, 50.0), "left_knee": (40.0, 50.0)}), 100, 100, STYLE)
    cols = np.nonzero(img.any(axis=2).any(axis=0))[0]
    assert cols.min() == 0 and cols.max() <= 40 + STYLE.radius_px + 1
    # coordinates that would wrap to small numbers in 32-bit fixed point draw nothing
    for big in (2.0**32 + 30, 2.0**28 + 30, 1e300, np.inf):
        img = draw_skeleton(_only({"left_hip": (big, 50.0), "left_knee": (big + 30, 60.0)}), 100, 100, STYLE)
        assert not img.any(), big


def test_left_and_right_arms_differ_and_limb_colours_are_unique():
    kps = _standing()
    img = draw_skeleton(kps, 160, 200, STYLE)
    mid = {side: np.round((kps[KP[f"{side}_shoulder"], :2] + kps[KP[f"{side}_elbow"], :2]) / 2).astype(int)
           for side in ("left", "right")}
    left, right = (tuple(img[m[1], m[0]]) for m in (mid["left"], mid["right"]))
    assert left == LIMBS["left_upper_arm"][2] and right == LIMBS["right_upper_arm"][2] and left != right
    colours = [c for _, _, c in LIMBS.values()]
    assert len(set(colours)) == len(colours)


def test_face_points_are_drawn_in_their_own_colours():
    img = draw_skeleton(_standing(), 160, 200, STYLE)
    for joint, colour in FACE_POINTS.items():
        assert _colour_count(img, colour) > 0, joint


def test_thickness_scales_with_resolution():
    def thickness(h: int) -> tuple[int, float]:
        style = DrawStyle.for_height(h, line_width=0.02, joint_radius=0.012)
        kps = _only({"left_hip": (0.1 * h, 0.5 * h), "left_knee": (0.9 * h, 0.5 * h)})
        column = draw_skeleton(kps, h, h, style)[:, h // 2].max(axis=1)
        return style.line_px, column.sum() / 255.0  # anti-aliased profile across the line, in pixels

    (n100, t100), (n400, t400) = thickness(100), thickness(400)
    assert (n100, n400) == (2, 8)
    # OpenCV's anti-aliased edge adds about a pixel and a half whatever the thickness
    assert 0 <= t100 - n100 <= 2 and 0 <= t400 - n400 <= 2
    assert t400 - t100 == pytest.approx(6, abs=0.5)


@pytest.mark.parametrize("p, q, expect", [
    ((-10.0, 5.0), (20.0, 5.0), ((0.0, 5.0), (10.0, 5.0))),
    ((5.0, -10.0), (5.0, -1.0), None),
    ((2.0, 2.0), (8.0, 8.0), ((2.0, 2.0), (8.0, 8.0))),
])
def test_clip_segment(p, q, expect):
    got = clip_segment(p, q, 0, 0, 10, 10)
    if expect is None:
        assert got is None
    else:
        np.testing.assert_allclose(np.array(got), np.array(expect))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e9, 1e9, allow_nan=False), min_size=4, max_size=4))
def test_clipped_segment_stays_inside(c):
    got = clip_segment((c[0], c[1]), (c[2], c[3]), -3, -3, 50, 40)
    if got is not None:
        pts = np.array(got)
        assert (pts[:, 0] >= -3 - 1e-3).all() and (pts[:, 0] <= 50 + 1e-3).all()
        assert (pts[:, 1] >= -3 - 1e-3).all() and (pts[:, 1] <= 40 + 1e-3).all()

"""Gap interpolation and temporal smoothing of keypoint tracks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dancepipe.pose.smoothing import SMOOTHERS, interpolate_gaps, smooth


def _track(n: int = 40) -> np.ndarray:
    t = np.arange(n, dtype=np.float64)
    kps = np.empty((n, 17, 3))
    kps[..., 0] = 100 + 2.0 * t[:, None] + np.arange(17)[None, :]
    kps[..., 1] = 300 - 1.5 * t[:, None]
    kps[..., 2] = np.linspace(0.5, 0.9, n)[:, None]
    return kps


def test_short_interior_gap_is_filled_linearly_conf_too():
    truth = _track()
    kps = truth.copy()
    kps[10:13, 4] = np.nan  # 3-frame gap in one joint
    out = interpolate_gaps(kps, gap_max=3)
    np.testing.assert_allclose(out[10:13, 4], truth[10:13, 4])
    assert np.isnan(kps[10, 4, 0]), "input must not be modified"


def test_long_and_edge_gaps_stay_missing():
    kps = _track()
    kps[10:16, 4] = np.nan  # 6 frames > gap_max
    kps[:2, 7] = np.nan  # leading gap
    kps[-1, 9] = np.nan  # trailing gap
    out = interpolate_gaps(kps, gap_max=5)
    assert np.isnan(out[10:16, 4]).all() and np.isnan(out[:2, 7]).all() and np.isnan(out[-1, 9]).all()
    assert np.isfinite(out[16:, 4]).all()


@pytest.mark.parametrize("method", ["savgol", "median"])
def test_smoothing_removes_jitter_and_keeps_a_linear_track(method):
    truth = _track(60)
    noisy = truth.copy()
    noisy[..., :2] += np.random.default_rng(0).normal(0, 3.0, size=noisy[..., :2].shape)
    out = smooth(noisy, method, window=7, polyorder=2)
    err_before = np.abs(noisy[5:-5, :, :2] - truth[5:-5, :, :2]).mean()
    err_after = np.abs(out[5:-5, :, :2] - truth[5:-5, :, :2]).mean()
    assert err_after < 0.75 * err_before
    np.testing.assert_array_equal(out[..., 2], noisy[..., 2])  # confidences untouched
    if method == "savgol":  # a degree-2 filter reproduces a straight line exactly
        np.testing.assert_allclose(smooth(truth, method, 7, 2)[..., :2], truth[..., :2], atol=1e-9)


def test_smoothing_never_mixes_values_across_a_gap():
    kps = _track(30)
    kps[:15, 3, :2] += 1000.0  # a jump hidden behind a gap
    kps[15:17, 3] = np.nan
    out = smooth(kps, "savgol", window=5, polyorder=2)
    np.testing.assert_allclose(out[:15, 3, :2], kps[:15, 3, :2], atol=1e-6)
    assert np.isnan(out[15:17, 3]).all()


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(ValueError, match="savgol, median, none"):
        smooth(_track(), "gauss", 5)
    assert set(SMOOTHERS) == {"savgol", "median", "none"}


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 25), st.just(17), st.just(3)),
              elements=st.one_of(st.floats(-1e4, 1e4), st.just(np.nan))),
       st.sampled_from(["savgol", "median", "none"]), st.sampled_from([3, 5, 7]), st.integers(0, 6))
def test_nan_pattern_only_shrinks_and_shape_is_kept(kps, method, window, gap_max):
    filled = interpolate_gaps(kps, gap_max)
    out = smooth(filled, method, window, polyorder=min(2, window - 1))
    assert out.shape == kps.shape
    assert not (np.isnan(filled) & ~np.isnan(kps)).any()  # nothing that was known is lost
    np.testing.assert_array_equal(np.isnan(out), np.isnan(filled))

"""Global pose normalisation: fitting, the mapping's properties, the normfit the transfer labels stage runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dancepipe.errors import DancepipeError
from dancepipe.pose.keypoints import KP
from dancepipe.transfer.normalize import (
    NormfitConfig,
    NormMapping,
    apply_mapping,
    fit_mapping,
    fit_subject,
    load_mapping,
)
from tests.fixtures.labels import depth_walk, figure, write_pose_table

CFG = NormfitConfig()


def _fit(source: np.ndarray, target: np.ndarray) -> NormMapping:
    return fit_mapping(fit_subject(source, CFG), fit_subject(target, CFG))


def test_subject_onto_itself_is_identity():
    kps = depth_walk(120, far=400, close=900, h_far=300, h_close=650)
    mapped = apply_mapping(kps, _fit(kps, kps))
    assert np.nanmax(np.abs(mapped[..., :2] - kps[..., :2])) < 1.0
    np.testing.assert_array_equal(mapped[..., 2], kps[..., 2])


@pytest.mark.parametrize("k, d, p", [(1.7, (-120.0, 45.0), (300.0, 800.0)), (0.6, (30.0, -200.0), (0.0, 0.0))])
def test_scaled_and_shifted_target_recovers_k_and_d(k, d, p):
    src = depth_walk(150, far=300, close=700, h_far=200, h_close=420, x=600, seed=3)
    p, d = np.array(p), np.array(d)
    tgt = src.copy()
    tgt[..., :2] = k * (src[..., :2] - p) + p + d
    m = _fit(src, tgt)
    assert m.mode == "interpolate"
    assert m.scale_far == pytest.approx(k, rel=0.01) and m.scale_close == pytest.approx(k, rel=0.01)
    # the mapping is then x -> k (x - p) + p + d: evaluate it at two points to read off k and d
    probe = np.full((1, 17, 3), np.nan)
    probe[0, 15] = probe[0, 16] = (p[0], p[1], 1.0)  # ankles at p
    probe[0, 0] = (p[0] + 10.0, p[1] - 100.0, 1.0)
    out = apply_mapping(probe, m)
    np.testing.assert_allclose(out[0, 15, :2], p + d, atol=1.0)
    np.testing.assert_allclose((out[0, 0, :2] - out[0, 15, :2]) / np.array([10.0, -100.0]), [k, k], rtol=0.01)
    np.testing.assert_allclose(apply_mapping(src, m)[..., :2], tgt[..., :2], atol=1.0)


def test_degenerate_target_range_falls_back_without_dividing_by_zero():
    tgt = depth_walk(50, far=1500, close=1500.5, h_far=900, h_close=900)
    src = depth_walk(50, far=400, close=800, h_far=300, h_close=500)
    st_t = fit_subject(tgt, CFG)
    assert st_t.degenerate and st_t.ankle_far == st_t.ankle_close
    m = fit_mapping(fit_subject(src, CFG), st_t)
    out = apply_mapping(src, m)
    assert np.all(np.isfinite(out))
    # every frame lands on the target's (single) depth; at the ends of the source's range
    # it has the target's size (in between, the paper's linear scale is an approximation)
    assert np.ptp(out[:, 15, 1]) < 5
    heights = out[:, 15, 1] - out[:, 0, 1]
    ends = np.argsort(src[:, 15, 1])[[0, 1, -2, -1]]
    np.testing.assert_allclose(heights[ends], 900, rtol=0.02)
    np.testing.assert_allclose(heights, 900, rtol=0.1)


def test_degenerate_range_is_recorded_in_stats_json(tmp_path):
    from dancepipe.transfer.normalize import run_normfit

    t = write_pose_table(tmp_path / "t.parquet", depth_walk(30, 1500, 1500.5, 900, 900), 1080, 1920)
    s = write_pose_table(tmp_path / "s.parquet", depth_walk(30, 400, 800, 300, 500), 1768, 994)
    run_normfit(t, s, tmp_path / "stats.json", None, CFG)
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["target"]["degenerate"] and not stats["source"]["degenerate"]
    assert stats["target"]["ankle_far"] == stats["target"]["ankle_close"] == stats["target"]["ankle_median"]
    assert any(n.startswith("target: ankle depth (y) range is degenerate") for n in stats["notes"])


def test_degenerate_source_uses_constant_scale_and_translation():
    src = depth_walk(50, far=600, close=600.2, h_far=250, h_close=250)
    tgt = depth_walk(50, far=1000, close=1400, h_far=500, h_close=700)
    m = _fit(src, tgt)
    assert m.mode == "constant"
    s = fit_subject(tgt, CFG).height_median / fit_subject(src, CFG).height_median
    assert m.scale_far == m.scale_close == pytest.approx(s)
    out = apply_mapping(src, m)
    assert np.all(np.isfinite(out))


def test_source_crossing_a_wide_stage_stays_in_the_targets_horizontal_range():
    src = depth_walk(80, far=500, close=700, h_far=300, h_close=400, x=900)
    src[..., 0] += np.linspace(-700, 700, 80)[:, None]  # walks across the whole frame
    tgt = depth_walk(80, far=1400, close=1800, h_far=900, h_close=1200, x=540)
    m = _fit(src, tgt)
    assert m.horizontal_mode == "interpolate"
    hips = [KP["left_hip"], KP["right_hip"]]  # the horizontal anchor
    out_x = apply_mapping(src, m)[:, hips, 0].mean(axis=1)
    tgt_x = tgt[:, hips, 0].mean(axis=1)
    assert tgt_x.min() - 10 < out_x.min() and out_x.max() < tgt_x.max() + 10
    assert np.all(np.diff(out_x) > 0)  # still walking the same way


def test_a_leaning_source_keeps_its_hips_where_the_target_stood():
    """With a target that never moves sideways, every frame is pinned at its median: the
    mid-hip, so a lean (the upper body over one foot) stays in the picture."""
    t = np.linspace(0, 2 * np.pi, 80, endpoint=False)
    ay = 1400 + 400 * (0.5 - 0.5 * np.cos(t))
    tgt = figure(np.full(80, 540.0), ay, 900 + (ay - 1400) / 400 * 300)  # walks in depth at x 540, never sideways
    src = depth_walk(80, far=500, close=700, h_far=300, h_close=400, x=900)
    src[..., 0] += np.linspace(-200, 200, 80)[:, None]
    lean = src.copy()
    upper = [KP[n] for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
                             "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist")]
    hips = [KP["left_hip"], KP["right_hip"]]
    lean[:, upper, 0] += 150.0  # upper body leant 150 px to the right of the feet
    lean[:, hips, 0] += 100.0  # hips 100 px right of the feet
    m = _fit(lean, tgt)
    assert m.target_left == m.target_right == 540.0
    out = apply_mapping(lean, m)
    # the hips land on the target's (x 540); the feet keep their offset from the hips, scaled
    np.testing.assert_allclose(out[:, hips, 0].mean(axis=1), 540.0, atol=1e-6)
    ankles = [KP["left_ankle"], KP["right_ankle"]]
    scale = m.scale(lean[:, ankles, 1].mean(axis=1))
    offset_in = lean[:, hips, 0].mean(axis=1) - lean[:, ankles, 0].mean(axis=1)  # about 100 px, plus jitter
    offset_out = out[:, hips, 0].mean(axis=1) - out[:, ankles, 0].mean(axis=1)
    np.testing.assert_allclose(offset_out, scale * offset_in, rtol=1e-9)
    assert np.all(offset_out > 0.9 * 100 * scale)


def test_too_few_usable_frames_says_how_many():
    kps = depth_walk(30, far=400, close=900, h_far=300, h_close=650)
    kps[4:, 15] = np.nan  # left ankle lost in all but four frames
    with pytest.raises(DancepipeError, match=r"only 4 of 30 frames.*min_frames = 10"):
        fit_subject(kps, CFG)


# --------------------------------------------------------------------------- properties

MAPPINGS = st.builds(
    lambda sf, span, tf, tspan, a, b, xspan, txspan: NormMapping(
        mode="interpolate", source_far=sf, source_close=sf + span, target_far=tf, target_close=tf + tspan,
        scale_far=a, scale_close=b, horizontal_mode="interpolate", source_left=500.0,
        source_right=500.0 + xspan, target_left=300.0, target_right=300.0 + txspan,
        source_ankle_median=sf + span / 2, source_x_median=500 + xspan / 2,
    ),
    st.floats(0, 2000), st.floats(1, 1000), st.floats(0, 2000), st.floats(0, 1000),
    st.floats(0.05, 20), st.floats(0.05, 20), st.floats(1, 1000), st.floats(0, 1000),
)
KEYPOINTS = arrays(np.float64, st.tuples(st.integers(1, 12), st.just(17), st.just(3)),
                   elements=st.one_of(st.floats(-5000, 5000), st.just(np.nan)))


@settings(max_examples=60, deadline=None)
@given(MAPPINGS, st.lists(st.floats(-3000, 5000), min_size=2, max_size=30))
def test_mapping_is_monotone_in_ankle_position_and_scale_positive(m, fs):
    f = np.sort(np.array(fs))
    assert np.all(np.diff(m.ankle_map(f)) >= -1e-6)
    assert np.all(np.diff(m.anchor_x_map(f)) >= -1e-6)
    assert np.all(m.scale(f) > 0)


@settings(max_examples=60, deadline=None)
@given(MAPPINGS, KEYPOINTS)
def test_nan_stays_nan_and_finite_stays_finite(m, kps):
    out = apply_mapping(kps, m)
    assert out.shape == kps.shape
    np.testing.assert_array_equal(np.isnan(out), np.isnan(kps))


@settings(max_examples=40, deadline=None)
@given(MAPPINGS, KEYPOINTS, st.randoms(use_true_random=False))
def test_mapping_does_not_depend_on_row_order(m, kps, rnd):
    perm = list(range(len(kps)))
    rnd.shuffle(perm)
    np.testing.assert_allclose(apply_mapping(kps[perm], m), apply_mapping(kps, m)[perm], equal_nan=True)


@settings(max_examples=15, deadline=None)
@given(st.randoms(use_true_random=False))
def test_fit_does_not_depend_on_row_order(rnd):
    kps = depth_walk(40, far=400, close=900, h_far=300, h_close=650)
    perm = list(range(len(kps)))
    rnd.shuffle(perm)
    assert fit_subject(kps[perm], CFG) == fit_subject(kps, CFG)


# --------------------------------------------------------------------------- stage

@pytest.fixture
def tables(tmp_path: Path) -> dict[str, Path]:
    return {
        "target": write_pose_table(tmp_path / "t.parquet", depth_walk(60, 1400, 1800, 900, 1200, x=540), 1080, 1920),
        "source": write_pose_table(tmp_path / "s.parquet", depth_walk(60, 500, 800, 300, 420, x=900), 1768, 994),
    }


def test_normfit_writes_stats_and_plot(tmp_path, tables):
    from dancepipe.transfer.normalize import run_normfit

    out, plot = tmp_path / "norm" / "stats.json", tmp_path / "norm" / "normfit.png"
    result = run_normfit(tables["target"], tables["source"], out, plot, CFG)
    assert result["mapping"]["mode"] == "interpolate"
    stats = json.loads(out.read_text())
    assert stats["target"]["usable"] == 60 and not stats["source"]["degenerate"]
    assert load_mapping(out).scale_far == pytest.approx(stats["mapping"]["scale_far"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the plot: 15 x 4.5 inches at 80 dpi; three panels, the first two with both subjects' colours
    # (matplotlib's tab:blue target, tab:orange source), the mapping panel with its red scale curve
    import cv2

    img = cv2.cvtColor(cv2.imread(str(plot)), cv2.COLOR_BGR2RGB).astype(int)
    assert img.shape == (360, 1200, 3)
    assert (img.min(axis=2) < 200).mean() > 0.02  # not a blank page

    def pixels(panel: int, rgb: tuple[int, int, int]) -> int:
        return int((np.abs(img[:, 400 * panel:400 * (panel + 1)] - rgb).max(axis=2) <= 30).sum())

    for panel in (0, 1):
        assert pixels(panel, (31, 119, 180)) > 100 and pixels(panel, (255, 127, 14)) > 100, panel
    assert pixels(2, (214, 39, 40)) > 100 and pixels(2, (0, 0, 0)) > 100
    assert sorted(p.name for p in out.parent.iterdir()) == ["normfit.png", "stats.json"]


def test_normfit_bad_input_is_one_sentence_and_writes_nothing(tmp_path, tables, repo_root):
    """The transfer labels stage fits the normalisation first: a source it cannot fit stops it there."""
    from stages.labels import main

    empty = depth_walk(20, 400, 900, 300, 650)
    empty[:, :5] = np.nan  # no head anywhere
    bad = write_pose_table(tmp_path / "nohead.parquet", empty, 1000, 1000)
    out, labels = tmp_path / "norm" / "stats.json", tmp_path / "labels"

    def transfer(target: Path, source: Path):
        return CliRunner().invoke(main, ["--kind", "transfer", "--poses", str(source), "--target-poses", str(target),
                                         "--norm", str(out), "--frames", str(tmp_path / "frames"),
                                         "--profile", str(tmp_path / "profile.json"), "--out", str(labels),
                                         "--params", str(repo_root / "params.yaml")])

    res = transfer(tables["target"], bad)
    assert res.exit_code == 1
    assert "nohead.parquet: only 0 of 20 frames have a head and both ankles visible" in res.output
    assert res.output.count("\n") == 1 and not out.exists() and not labels.exists()

    res = transfer(tmp_path / "missing.parquet", bad)
    assert res.exit_code == 1 and "missing.parquet: table does not exist" in res.output

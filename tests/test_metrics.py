"""Quality measures on cases with known answers."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dancepipe.output import metrics as M


def _texture(h: int = 64, w: int = 80, seed: int = 0) -> np.ndarray:
    """A smooth random RGB texture (Farnebäck needs gradients everywhere)."""
    rng = np.random.default_rng(seed)
    noise = rng.random((h // 4, w // 4, 3)).astype(np.float32)
    img = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    img = cv2.GaussianBlur(img, (0, 0), 1.5)
    img = (img - img.min()) / (img.max() - img.min())
    return (img * 255).astype(np.uint8)


def _pose(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    kps = np.zeros((17, 3), np.float32)
    kps[:, 0] = rng.uniform(10, 90, 17)
    kps[:, 1] = np.linspace(5, 150, 17)
    kps[:, 2] = 0.9
    return kps


def test_identical_images_have_ssim_one_and_capped_psnr():
    img = _texture()
    assert M.ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    assert M.psnr(img, img) == M.PSNR_CAP
    assert math.isfinite(M.psnr(img, img))


def test_psnr_matches_the_formula_and_ssim_drops_with_noise():
    img = _texture()
    noisy = np.clip(img.astype(np.int16) + 4, 0, 255).astype(np.uint8)
    mse = np.mean((img.astype(float) - noisy.astype(float)) ** 2)
    assert M.psnr(img, noisy) == pytest.approx(10 * math.log10(255**2 / mse))
    rng = np.random.default_rng(1)
    heavy = np.clip(img + rng.normal(0, 40, img.shape), 0, 255).astype(np.uint8)
    assert M.ssim(img, noisy) > M.ssim(img, heavy)
    assert M.ssim(img, heavy) < 0.8
    assert M.psnr(img, heavy) < M.psnr(img, noisy)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_ssim_is_symmetric_and_bounded(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    s = M.ssim(a, b)
    assert -1.0 <= s <= 1.0
    assert s == pytest.approx(M.ssim(b, a))
    assert 0 <= M.psnr(a, b) <= M.PSNR_CAP


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    channels = img.ndim == 3
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if channels else img,
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    out = cv2.imdecode(buf, cv2.IMREAD_COLOR if channels else cv2.IMREAD_GRAYSCALE)
    return cv2.cvtColor(out, cv2.COLOR_BGR2RGB) if channels else out


DEGRADATIONS = {
    "jpeg q15": lambda x: _jpeg(x, 15),
    "blur": lambda x: cv2.GaussianBlur(x, (0, 0), 2.0),
    "noise": lambda x: np.clip(x + np.random.default_rng(0).normal(0, 20, x.shape), 0, 255).astype(np.uint8),
    "shift 2 px": lambda x: np.roll(x, 2, axis=1),
    "darker": lambda x: (x * 0.8).astype(np.uint8),
}


@pytest.mark.parametrize("image", ["astronaut", "coffee", "camera"])
@pytest.mark.parametrize("degrade", list(DEGRADATIONS))
def test_ssim_and_psnr_agree_with_scikit_image(image, degrade):
    """SSIM and PSNR against scikit-image's on photographs (odd-sized crops), 8-bit range 255.

    Settings of :func:`dancepipe.output.metrics.ssim` (Wang et al.): Gaussian window σ = 1.5
    truncated to 11×11 (skimage's truncate 3.5 gives the same radius 5), K1 = 0.01,
    K2 = 0.03, population (not sample) covariance, reflected borders, mean over
    channels. One difference is by design: skimage's returned mean leaves out a
    5-pixel border, dancepipe's averages every pixel (a face box crop is small, so its
    border matters). So dancepipe's value is compared with the mean of skimage's full
    SSIM map (``full=True``), to 1e-9 (float64 rounding; they agree to ~1e-14); the
    border-cropped scalar differs by up to a few hundredths. PSNR is the same formula
    (identical images are capped at 100 dB here, infinite in skimage; not used here).
    """
    from skimage import data
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    ref = getattr(data, image)()[101:290, 150:333]
    test = DEGRADATIONS[degrade](ref)
    color = ref.ndim == 3
    _, full = structural_similarity(ref, test, data_range=255, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, K1=0.01, K2=0.03, full=True,
                                    channel_axis=-1 if color else None)
    assert M.ssim(ref, test) == pytest.approx(float(full.mean()), abs=1e-9)
    assert M.ssim(test, ref) == pytest.approx(float(full.mean()), abs=1e-9)
    assert M.psnr(ref, test) == pytest.approx(peak_signal_noise_ratio(ref, test, data_range=255), rel=1e-12)


def test_mismatched_shapes_are_rejected():
    with pytest.raises(ValueError, match="differ in shape"):
        M.ssim(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8))


def test_shifted_copy_with_the_correct_flow_has_zero_warping_error():
    big = _texture(80, 100)
    dx, dy = 3, 2
    prev = big[8:72, 8:88]
    cur = big[8 - dy:72 - dy, 8 - dx:88 - dx]  # content moved right by dx, down by dy
    flow = np.zeros(prev.shape[:2] + (2,), np.float32)
    flow[..., 0], flow[..., 1] = -dx, -dy  # cur(p) = prev(p - d)
    assert M.warp_error(prev, cur, flow) == pytest.approx(0.0, abs=1e-6)
    # without motion compensation the same pair is clearly inconsistent
    assert M.warp_error(prev, cur, np.zeros_like(flow)) > 0.02


def test_farneback_recovers_a_shift_and_temporal_error_is_small():
    big = _texture(80, 100, seed=3)
    prev = big[8:72, 8:88]
    cur = big[6:70, 5:85]  # moved by (+3, +2)
    flow = M.farneback_flow(cur, prev)
    inner = flow[12:-12, 12:-12].reshape(-1, 2)
    assert np.median(inner[:, 0]) == pytest.approx(-3, abs=0.3)
    assert np.median(inner[:, 1]) == pytest.approx(-2, abs=0.3)
    err = M.temporal_error(prev, cur, (prev, cur))
    flicker = np.clip(cur.astype(np.int16) + 30, 0, 255).astype(np.uint8)
    assert err < 0.02
    assert M.temporal_error(prev, flicker, (prev, cur)) > err + 0.05


def test_warp_marks_samples_outside_the_picture():
    img = _texture(10, 10)
    flow = np.zeros((10, 10, 2), np.float32)
    flow[..., 0] = 4
    _, inside = M.warp(img, flow)
    assert inside[:, :6].all() and not inside[:, 6:].any()


def test_pose_distance_zero_for_same_keypoints_and_scales_with_offset():
    kps = _pose()
    assert M.pose_distance(kps, kps) == 0.0
    moved = kps.copy()
    moved[:, 0] += 14.5
    assert M.pose_distance(moved, kps) == pytest.approx(14.5 / M.body_height(kps))
    assert math.isnan(M.pose_distance(None, kps))


def test_pose_distance_of_a_part_compares_only_its_joints_over_the_whole_body_height():
    kps = _pose()
    h = M.body_height(kps)
    moved = kps.copy()
    moved[[13, 14, 15, 16], 0] += 12.0  # knees and ankles 12 px to the right
    moved[9, 1] += 8.0                  # the left wrist 8 px down
    moved[10, :2] = np.nan              # the right wrist not found
    assert M.JOINT_GROUPS["legs"] == (13, 14, 15, 16) and M.JOINT_GROUPS["arms"] == (7, 8, 9, 10)
    assert M.pose_distance(moved, kps, M.JOINT_GROUPS["legs"]) == pytest.approx(12.0 / h)
    assert M.pose_distance(moved, kps, M.JOINT_GROUPS["arms"]) == pytest.approx(8.0 / 3 / h)  # elbows 0, wrist 8
    assert M.pose_distance(moved, kps, M.JOINT_GROUPS["head"]) == 0.0
    assert M.pose_distance(moved, kps) == pytest.approx((4 * 12.0 + 8.0) / 16 / h)
    moved[[13, 14, 15, 16], :2] = np.nan
    assert math.isnan(M.pose_distance(moved, kps, M.JOINT_GROUPS["legs"]))  # no leg joint seen in both
    # every joint belongs to exactly one part
    assert sorted(j for joints in M.JOINT_GROUPS.values() for j in joints) == list(range(17))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.25, 4.0))
def test_pose_distance_is_scale_invariant_and_ignores_missing_points(seed, scale):
    kps = _pose(seed)
    rng = np.random.default_rng(seed)
    pred = kps.copy()
    pred[:, :2] += rng.normal(0, 3, (17, 2))
    pred[rng.random(17) < 0.3, :2] = np.nan
    d = M.pose_distance(pred, kps)
    scaled_pred, scaled_ref = pred.copy(), kps.copy()
    scaled_pred[:, :2] *= scale
    scaled_ref[:, :2] *= scale
    if np.isnan(d):
        assert np.isnan(M.pose_distance(scaled_pred, scaled_ref))
    else:
        assert M.pose_distance(scaled_pred, scaled_ref) == pytest.approx(d, rel=1e-6)


def test_subject_box_pads_and_clips():
    kps = np.full((17, 3), np.nan, np.float32)
    kps[0] = (50, 20, 1)
    kps[15] = (60, 120, 1)
    assert M.subject_box(kps, 200, 200, pad=0.1) == (40, 10, 70, 130)
    assert M.subject_box(kps, 64, 125, pad=0.1) == (40, 10, 64, 125)
    kps[15] = np.nan
    assert M.subject_box(kps, 200, 200) is None


def test_nanmean_ignores_missing_and_returns_none_when_empty():
    assert M.nanmean([1.0, float("nan"), 3.0]) == 2.0
    assert M.nanmean([float("nan")]) is None


def test_valid_points_works_on_one_pose_and_on_a_stack():
    kps = _pose()
    kps[3, 0] = np.nan
    stack = np.stack([kps, _pose(1)])
    assert M.valid_points(kps).tolist() == [j != 3 for j in range(17)]
    assert M.valid_points(stack).shape == (2, 17) and M.valid_points(stack)[0, 3] == 0 and M.valid_points(stack)[1].all()


def test_face_region_clips_the_square_to_the_picture():
    assert M.face_region((4, 6, 16), 64, 96) == (4, 6, 20, 22)
    assert M.face_region((-5, 88, 16), 64, 96) == (0, 88, 11, 96)
    assert M.face_region((63, 10, 16), 64, 96) is None  # 1 px left inside
    assert M.face_region(None, 64, 96) is None


def test_region_scores_look_only_inside_the_clipped_box():
    rng = np.random.default_rng(0)
    h, w = 40, 30
    real = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    gen = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)  # unrelated outside the box
    box = M.face_region((-5, 20, 16), w, h)  # → x 0..11, y 20..36
    assert box == (0, 20, 11, 36)
    real[20:36, 0:11] = 100
    gen[20:36, 0:11] = 110
    s, p = M.region_scores(gen, real, box)
    # constant patches: SSIM = (2·μx·μy + C1) / (μx² + μy² + C1) (no variance), PSNR from MSE = 10²
    c1 = (0.01 * 255) ** 2
    assert s == pytest.approx((2 * 100 * 110 + c1) / (100**2 + 110**2 + c1), rel=1e-9)
    assert p == pytest.approx(10 * math.log10(255**2 / 100.0))
    assert all(math.isnan(v) for v in M.region_scores(gen, real, None))


def _occlusion_case() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A 4-px-wide square moving 3 px right over a static background, flows written by hand.

    Frame t-1 has the square in columns 5..8, frame t in columns 8..11 (rows 3..6). The
    backward flow of t is (-3, 0) on the square and 0 elsewhere; the forward flow of t-1 is
    (+3, 0) on the square and 0 elsewhere. Columns 5..7 of the square's rows in frame t are
    background uncovered by the move: their backward flow (0) lands on the square in t-1,
    whose forward flow (+3) does not bring them back, so they are occluded. Every other
    pixel is consistent. Returns (prev, cur, backward flow, forward flow).
    """
    h, w = 10, 20
    background = _texture(h, w, seed=5)
    prev, cur = background.copy(), background.copy()
    prev[3:7, 5:9] = (250, 20, 20)
    cur[3:7, 8:12] = (250, 20, 20)
    back = np.zeros((h, w, 2), np.float32)
    back[3:7, 8:12, 0] = -3
    fwd = np.zeros((h, w, 2), np.float32)
    fwd[3:7, 5:9, 0] = 3
    return prev, cur, back, fwd


def test_consistency_mask_marks_exactly_the_disoccluded_pixels():
    prev, cur, back, fwd = _occlusion_case()
    expected = np.ones(back.shape[:2], bool)
    expected[3:7, 5:8] = False
    np.testing.assert_array_equal(M.consistency_mask(back, fwd), expected)
    # the warp error ignores those pixels: the moving square is explained exactly by the flow
    assert M.warp_error(prev, cur, back, M.consistency_mask(back, fwd)) == pytest.approx(0.0, abs=1e-6)
    # without the mask the uncovered background (warped from the square's old place) counts
    occluded = np.abs(cur[3:7, 5:8].astype(float) - prev[3:7, 5:8].astype(float)).mean(axis=-1).sum() / 255
    assert M.warp_error(prev, cur, back) == pytest.approx(occluded / cur[..., 0].size, rel=1e-5)


def test_consistency_mask_tolerances_follow_the_formula():
    # |b + f|² ≤ tol·(|b|² + |f|²) + tol_px, worked by hand with the defaults (0.01, 0.5)
    def one(b: float, f: float) -> bool:
        back = np.full((4, 4, 2), 0.0, np.float32)
        fwd = np.full((4, 4, 2), 0.0, np.float32)
        back[..., 0], fwd[..., 0] = b, f  # uniform flows: f sampled at p + b is f
        mask = M.consistency_mask(back, fwd)
        assert mask.all() or not mask.any()
        return bool(mask.all())

    assert one(0.0, 0.7)  # 0.49 ≤ 0.01 · 0.49 + 0.5
    assert not one(0.0, 0.75)  # 0.5625 > 0.0056 + 0.5
    assert one(-20.0, 18.0)  # 4 ≤ 0.01 · (400 + 324) + 0.5 = 7.74
    assert not one(-20.0, 16.0)  # 16 > 0.01 · (400 + 256) + 0.5 = 7.06
    assert one(-20.0, 20.0)

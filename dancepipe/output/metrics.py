"""Image, pose and temporal quality measures used by the evaluate stage.

All functions are pure (numpy/OpenCV in, numbers out) so they can be checked on known
cases. Conventions:

* images are (H, W, 3) uint8 RGB;
* keypoints are (17, 3) arrays of x, y, confidence in the image's pixels, NaN when
  missing (COCO-17 order, :data:`dancepipe.pose.keypoints.COCO_NAMES`);
* optical flow is (H, W, 2) float32 of (dx, dy) with the *backward* convention used by
  :func:`warp`: ``image_a(p) ≈ image_b(p + flow(p))``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# PSNR of identical images is infinite; per-frame values are capped here so that
# means and JSON stay finite. 100 dB is above any PSNR a real reconstruction reaches
# at 8 bits (one grey level of error everywhere is 48 dB).
PSNR_CAP = 100.0

_SSIM_C1 = (0.01 * 255) ** 2
_SSIM_C2 = (0.03 * 255) ** 2


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim not in (2, 3) or a.size == 0:
        raise ValueError(f"expected a non-empty (H, W[, C]) image, got {a.shape}")


def psnr(a: np.ndarray, b: np.ndarray, cap: float = PSNR_CAP) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 images, at most ``cap`` (identical → cap)."""
    _check_pair(a, b)
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    if mse == 0.0:
        return float(cap)
    return float(min(cap, 10.0 * math.log10(255.0**2 / mse)))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity (Wang et al. 2004) of two uint8 images, mean over channels.

    Gaussian window of σ = 1.5 (11×11), constants K1 = 0.01, K2 = 0.03, borders reflected.
    Identical images give exactly 1; the value lies in [-1, 1].
    """
    _check_pair(a, b)
    x = a.astype(np.float64)
    y = b.astype(np.float64)
    if x.ndim == 2:
        x, y = x[..., None], y[..., None]

    def blur(img: np.ndarray) -> np.ndarray:
        out = cv2.GaussianBlur(img, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)
        return out.reshape(img.shape)

    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    num = (2 * mx * my + _SSIM_C1) * (2 * sxy + _SSIM_C2)
    den = (mx * mx + my * my + _SSIM_C1) * (sxx + syy + _SSIM_C2)
    return float(np.clip(np.mean(num / den), -1.0, 1.0))


def valid_points(kps: np.ndarray) -> np.ndarray:
    """(..., 17) bool: keypoints with finite x and y, for one (17, 3) pose or a stack (N, 17, 3)."""
    k = np.asarray(kps, dtype=np.float64)
    return np.isfinite(k[..., 0]) & np.isfinite(k[..., 1])


def body_height(kps: np.ndarray) -> float:
    """Vertical extent of the visible keypoints (pixels); NaN with fewer than two points.

    Used to make pose distances independent of the subject's size in the picture.
    """
    k = np.asarray(kps, dtype=np.float64)
    ok = valid_points(k)
    if ok.sum() < 2:
        return float("nan")
    ys = k[ok, 1]
    return float(max(ys.max() - ys.min(), 1.0))


def subject_box(kps: np.ndarray, width: int, height: int, pad: float = 0.15) -> tuple[int, int, int, int] | None:
    """Box (x0, y0, x1, y1) around the visible keypoints, padded by ``pad`` of the body height.

    Clipped to the image; None when fewer than two keypoints are visible or the box
    is empty after clipping.
    """
    k = np.asarray(kps, dtype=np.float64)
    ok = valid_points(k)
    if ok.sum() < 2:
        return None
    xs, ys = k[ok, 0], k[ok, 1]
    margin = pad * body_height(k)
    return clip_box(xs.min() - margin, ys.min() - margin, xs.max() + margin, ys.max() + margin, width, height)


def clip_box(x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> tuple[int, int, int, int] | None:
    """Box (x0, y0, x1, y1) rounded outwards to whole pixels and clipped to a ``width`` × ``height`` image.

    None when less than 2 pixels remain on a side (nothing meaningful to compare).
    """
    bx0 = int(np.floor(max(0.0, x0)))
    by0 = int(np.floor(max(0.0, y0)))
    bx1 = int(np.ceil(min(float(width), x1)))
    by1 = int(np.ceil(min(float(height), y1)))
    if bx1 - bx0 < 2 or by1 - by0 < 2:
        return None
    return bx0, by0, bx1, by1


def face_region(box: tuple[int, int, int] | None, width: int, height: int) -> tuple[int, int, int, int] | None:
    """A recorded face square (x0, y0, size), as the labels index stores it, → clipped (x0, y0, x1, y1).

    The labels stage keeps its boxes inside the picture, but a box may come from
    elsewhere (or from an older index), so the part outside the image is cut off
    rather than trusted. None for no box (``face_ok`` false) or when under 2 pixels remain.
    """
    if box is None:
        return None
    x0, y0, size = box
    return clip_box(x0, y0, x0 + size, y0 + size, width, height)


def region_scores(a: np.ndarray, b: np.ndarray, box: tuple[int, int, int, int] | None) -> tuple[float, float]:
    """(SSIM, PSNR) of ``a`` and ``b`` inside ``box`` (x0, y0, x1, y1); (NaN, NaN) when ``box`` is None.

    The crop is scored on its own (SSIM's window reflects at the crop's border), which
    is what "SSIM on the body/face box" means in the paper's tables.
    """
    if box is None:
        return float("nan"), float("nan")
    x0, y0, x1, y1 = box
    return ssim(a[y0:y1, x0:x1], b[y0:y1, x0:x1]), psnr(a[y0:y1, x0:x1], b[y0:y1, x0:x1])


def pose_distance(pred: np.ndarray | None, ref: np.ndarray, joints: tuple[int, ...] | None = None) -> float:
    """Mean distance between keypoints visible in both, divided by the body height of ``ref``.

    With ``joints`` (COCO indices) only those keypoints are compared, still over the
    whole body's height (:data:`JOINT_GROUPS` splits the body this way). NaN when
    ``pred`` is None (no person found), when no keypoint is visible in both, or when
    ``ref`` has fewer than two visible keypoints.
    """
    if pred is None:
        return float("nan")
    p = np.asarray(pred, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    both = valid_points(p) & valid_points(r)
    if joints is not None:
        both &= np.isin(np.arange(len(both)), joints)
    h = body_height(r)
    if not both.any() or not np.isfinite(h):
        return float("nan")
    d = np.linalg.norm(p[both, :2] - r[both, :2], axis=1)
    return float(d.mean() / h)


# The body's parts for :func:`pose_distance` by part (COCO indices): which limbs carry an error.
JOINT_GROUPS: dict[str, tuple[int, ...]] = {
    "head": (0, 1, 2, 3, 4),       # nose, eyes, ears
    "torso": (5, 6, 11, 12),       # shoulders, hips
    "arms": (7, 8, 9, 10),         # elbows, wrists
    "legs": (13, 14, 15, 16),      # knees, ankles
}


def farneback_flow(image: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Dense flow with ``image(p) ≈ other(p + flow(p))`` (Farnebäck, OpenCV), (H, W, 2) float32."""
    g0 = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    g1 = cv2.cvtColor(other, cv2.COLOR_RGB2GRAY) if other.ndim == 3 else other
    return cv2.calcOpticalFlowFarneback(
        g0, g1, None, pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0
    )


def warp(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``image`` at p + flow(p) (bilinear). Returns the warped image and a (H, W)
    bool mask of pixels whose source position lies inside the image."""
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mx = gx + flow[..., 0].astype(np.float32)
    my = gy + flow[..., 1].astype(np.float32)
    warped = cv2.remap(image, mx, my, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    return warped, inside


def consistency_mask(flow_back: np.ndarray, flow_fwd: np.ndarray, tol: float = 0.01, tol_px: float = 0.5) -> np.ndarray:
    """Pixels whose backward flow is undone by the forward flow (not occluded).

    ``flow_back`` maps frame t to t-1, ``flow_fwd`` maps t-1 to t. A pixel is kept when
    |b + f(p + b)|² ≤ tol·(|b|² + |f(p + b)|²) + tol_px (Sundaram et al. 2010).
    """
    f_at, _ = warp(flow_fwd, flow_back)
    s = flow_back + f_at
    lhs = (s**2).sum(axis=-1)
    rhs = tol * ((flow_back**2).sum(axis=-1) + (f_at**2).sum(axis=-1)) + tol_px
    return lhs <= rhs


def warp_error(prev: np.ndarray, cur: np.ndarray, flow: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Temporal warping error: mean |cur − warp(prev, flow)| over valid pixels, in [0, 1].

    ``flow`` maps ``cur`` to ``prev`` (``cur(p) ≈ prev(p + flow(p))``). Pixels whose source
    falls outside the image, or outside ``mask`` when given, are ignored. NaN when no
    pixel is valid. A perfectly consistent video gives 0.
    """
    _check_pair(prev, cur)
    warped, inside = warp(prev, flow)
    valid = inside if mask is None else inside & mask
    if not valid.any():
        return float("nan")
    diff = np.abs(cur.astype(np.float32) - warped.astype(np.float32)) / 255.0
    if diff.ndim == 3:
        diff = diff.mean(axis=-1)
    return float(diff[valid].mean())


def temporal_error(prev: np.ndarray, cur: np.ndarray, flow_from: tuple[np.ndarray, np.ndarray]) -> float:
    """Warping error between consecutive outputs ``prev`` → ``cur`` with flow estimated on
    the pair ``flow_from`` = (frame t−1, frame t) (the real frames, or the outputs themselves),
    occluded pixels excluded by a forward-backward check."""
    a, b = flow_from
    back = farneback_flow(b, a)
    fwd = farneback_flow(a, b)
    return warp_error(prev, cur, back, consistency_mask(back, fwd))


def nanmean(values: list[float] | np.ndarray) -> float | None:
    """Mean of the finite values, None when there is none (JSON ``null``)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None

"""Global pose normalisation (the normfit stage and the mapping it fits).

Following "Everybody Dance Now" (section 3.1), each subject's ankle height in the
image stands in for its distance from the camera: a larger ankle y is closer. Per
subject we find the far and close ends of that range (robust percentiles, never single
frames) and the median body height (head to ankles) of the frames near each end. A
source frame whose ankles are at ``f`` is then moved and scaled into the target's
space, interpolating linearly between the far and close ends::

    a = (f - s_far) / (s_close - s_far)
    b = t_far + a * (t_close - t_far) - f              # vertical translation
    s = sigma_far + a * (sigma_close - sigma_far)      # sigma = target height / source height

Every keypoint is scaled by ``s`` about the frame's anchor (mid-hip x, ankle y). Horizontally the
paper keeps the source's x, but our target frames are cropped to where the target
was filmed, so the body's x (the mid-hip, :func:`hip_x`) is mapped the same way as the
depth: the source's left..right range (same percentiles) onto the target's, linearly. A
source who crosses a wide stage then dances where the target was seen, not outside the
crop, and a source who lunges or leans keeps its hips where the target's were.
Outside the
fitted range the translation keeps extrapolating linearly (a subject mapped onto
itself is the identity everywhere) while the scale is held at the end value, so it
stays positive. A subject that hardly moves in depth (close ≈ far) cannot define the
interpolation; it falls back to a constant scale and a translation at the medians, and
``stats.json`` says so.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from dancepipe.atomic import atomic_path, atomic_write_text
from dancepipe.config import StageConfig
from dancepipe.errors import DancepipeError
from dancepipe.jsonfiles import read_json_file
from dancepipe.pose.keypoints import FACE_POINTS, KP, read_keypoints

FORMAT = "dancepipe.norm/1"
ANKLES: tuple[int, int] = (KP["left_ankle"], KP["right_ankle"])
HIPS: tuple[int, int] = (KP["left_hip"], KP["right_hip"])


class NormfitConfig(StageConfig):
    """``normfit`` section: how the far/close ends of each subject's range are found."""

    far_percentile: float = Field(5.0, ge=0, le=49)
    close_percentile: float = Field(95.0, ge=51, le=100)
    band: float = Field(0.15, gt=0, le=0.5)
    min_frames: int = Field(10, ge=1)
    min_range: float = Field(0.05, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> NormfitConfig:
        if self.far_percentile >= self.close_percentile:
            raise ValueError("far_percentile must be below close_percentile")
        return self


# --------------------------------------------------------------------------- per-frame measures


def _visible(kps: np.ndarray) -> np.ndarray:
    return np.isfinite(kps[..., 0]) & np.isfinite(kps[..., 1])


def ankle_positions(kps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 17, 3) keypoints → per-frame ankle (x, y): mean of the visible ankles, NaN if none."""
    kps = np.asarray(kps, dtype=np.float64)
    vis = _visible(kps)[:, list(ANKLES)]
    ank = kps[:, list(ANKLES), :2]
    return (_nanmean_rows(np.where(vis, ank[..., 0], np.nan)),
            _nanmean_rows(np.where(vis, ank[..., 1], np.nan)))


def hip_x(kps: np.ndarray) -> np.ndarray:
    """(N, 17, 3) keypoints → per-frame horizontal anchor: mean x of the visible hips, else of the ankles, else NaN.

    The hips, not the ankles: a lunge or a lean moves the feet apart or the body over them,
    and pinning the mid-ankle then pushed the upper body out of the target's crop.
    """
    kps = np.asarray(kps, dtype=np.float64)
    vis = _visible(kps)[:, list(HIPS)]
    hips = _nanmean_rows(np.where(vis, kps[:, list(HIPS), 0], np.nan))
    return np.where(np.isfinite(hips), hips, ankle_positions(kps)[0])


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    """Mean over axis 1 ignoring NaN, NaN where a row has none (without warnings)."""
    ok = np.isfinite(values)
    count = ok.sum(axis=1)
    total = np.where(ok, values, 0.0).sum(axis=1)
    out = np.full(len(values), np.nan)
    np.divide(total, count, out=out, where=count > 0)
    return out


def frame_measures(kps: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame ankle x/y, head y, height and the usable mask (head + both ankles visible).

    Head y is the mean of the visible face points (nose, eyes, ears); height is ankle y
    minus head y and must be positive for the frame to count.
    """
    kps = np.asarray(kps, dtype=np.float64)
    vis = _visible(kps)
    ank_y = ankle_positions(kps)[1]
    head_y = _nanmean_rows(np.where(vis[:, list(FACE_POINTS)], kps[:, list(FACE_POINTS), 1], np.nan))
    height = ank_y - head_y
    both_ankles = vis[:, ANKLES[0]] & vis[:, ANKLES[1]]
    usable = both_ankles & np.isfinite(head_y) & (np.nan_to_num(height, nan=-1.0) > 0)
    return {"body_x": hip_x(kps), "ankle_y": ank_y, "head_y": head_y, "height": height, "usable": usable}


# --------------------------------------------------------------------------- per-subject fit


@dataclasses.dataclass(frozen=True)
class SubjectStats:
    """Robust depth statistics of one subject (all in that subject's original pixels)."""

    frames: int
    usable: int
    ankle_far: float
    ankle_close: float
    ankle_median: float
    body_x_median: float
    body_x_left: float
    body_x_right: float
    horizontal_degenerate: bool
    height_far: float
    height_close: float
    height_median: float
    far_count: int
    close_count: int
    degenerate: bool
    band_ankle_far: float
    band_ankle_close: float
    band_height_far: float
    band_height_close: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def fit_subject(kps: np.ndarray, cfg: NormfitConfig, name: str = "subject") -> SubjectStats:
    """Fit one subject's far/close ankle positions and the body heights near each end.

    The ends are the ``far_percentile``/``close_percentile`` of the usable frames' ankle
    y. Near each end, the frames within ``band`` of the range give a median ankle y and
    a median height; the heights at the ends are read off the line through those two
    medians (in a pinhole view of a flat floor, image height is linear in ankle y), so
    the band's offset from the end does not bias them.
    When the range is narrower than ``min_range`` of the median height the subject is
    *degenerate*: both ends collapse onto the medians. The horizontal range (left/right
    ends of the mid-hip x, same percentiles) is fitted and checked the same way. Row order
    never matters.
    """
    m = frame_measures(kps)
    usable = m["usable"]
    n_usable = int(usable.sum())
    if n_usable < cfg.min_frames:
        raise DancepipeError(
            f"{name}: only {n_usable} of {len(usable)} frames have a head and both ankles visible, "
            f"normfit needs at least normfit.min_frames = {cfg.min_frames}"
        )
    ay, ax, h = m["ankle_y"][usable], m["body_x"][usable], m["height"][usable]
    far = float(np.percentile(ay, cfg.far_percentile))
    close = float(np.percentile(ay, cfg.close_percentile))
    med_y, med_h, med_x = float(np.median(ay)), float(np.median(h)), float(np.median(ax))
    left = float(np.percentile(ax, cfg.far_percentile))
    right = float(np.percentile(ax, cfg.close_percentile))
    x_degenerate = right - left <= cfg.min_range * med_h or right - left <= 1e-6
    horizontal = {
        "body_x_median": med_x, "body_x_left": med_x if x_degenerate else left,
        "body_x_right": med_x if x_degenerate else right, "horizontal_degenerate": x_degenerate,
    }
    rng = close - far
    if rng <= cfg.min_range * med_h or rng <= 1e-6:
        return SubjectStats(
            frames=len(usable), usable=n_usable, ankle_far=med_y, ankle_close=med_y, ankle_median=med_y,
            **horizontal, height_far=med_h, height_close=med_h, height_median=med_h,
            far_count=n_usable, close_count=n_usable, degenerate=True,
            band_ankle_far=med_y, band_ankle_close=med_y, band_height_far=med_h, band_height_close=med_h,
        )
    near_far = ay <= far + cfg.band * rng
    near_close = ay >= close - cfg.band * rng
    # Band medians describe the band's own median depth, not the end itself: place the
    # two (ankle, height) medians on a line and read the heights off at the ends.
    a_f, h_f = float(np.median(ay[near_far])), float(np.median(h[near_far]))
    a_c, h_c = float(np.median(ay[near_close])), float(np.median(h[near_close]))
    h_far, h_close = h_f, h_c
    if a_c - a_f > 1e-6:
        slope = (h_c - h_f) / (a_c - a_f)
        h_far, h_close = h_f + slope * (far - a_f), h_c + slope * (close - a_c)
        if h_far <= 0 or h_close <= 0:
            h_far, h_close = h_f, h_c
    return SubjectStats(
        frames=len(usable), usable=n_usable, ankle_far=far, ankle_close=close, ankle_median=med_y,
        **horizontal, height_far=h_far, height_close=h_close,
        height_median=med_h, far_count=int(near_far.sum()), close_count=int(near_close.sum()),
        degenerate=False, band_ankle_far=a_f, band_ankle_close=a_c, band_height_far=h_f, band_height_close=h_c,
    )


# --------------------------------------------------------------------------- the mapping


@dataclasses.dataclass(frozen=True)
class NormMapping:
    """Source → target mapping. ``mode`` is ``interpolate`` (the paper's formula) or
    ``constant`` (source depth range degenerate: one scale, translation at the medians);
    ``horizontal_mode`` is the same choice for the ankle x range."""

    mode: str
    source_far: float
    source_close: float
    target_far: float
    target_close: float
    scale_far: float
    scale_close: float
    horizontal_mode: str
    source_left: float
    source_right: float
    target_left: float
    target_right: float
    source_ankle_median: float
    source_x_median: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NormMapping:
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})

    def ankle_map(self, f: np.ndarray) -> np.ndarray:
        """Where a source ankle y ``f`` lands in target pixels (f + b)."""
        f = np.asarray(f, dtype=np.float64)
        if self.mode == "constant":
            return f + (self.target_far - self.source_far)
        a = (f - self.source_far) / (self.source_close - self.source_far)
        return self.target_far + a * (self.target_close - self.target_far)

    def scale(self, f: np.ndarray) -> np.ndarray:
        """Scale ``s`` for source ankle y ``f``, held at the end values outside the range."""
        f = np.asarray(f, dtype=np.float64)
        if self.mode == "constant":
            return np.full_like(f, self.scale_far)
        a = np.clip((f - self.source_far) / (self.source_close - self.source_far), 0.0, 1.0)
        return self.scale_far + a * (self.scale_close - self.scale_far)

    def anchor_x_map(self, ax: np.ndarray) -> np.ndarray:
        """Where a source mid-hip x lands: its left..right range onto the target's."""
        ax = np.asarray(ax, dtype=np.float64)
        if self.horizontal_mode == "constant":
            return ax + (self.target_left - self.source_left)
        a = (ax - self.source_left) / (self.source_right - self.source_left)
        return self.target_left + a * (self.target_right - self.target_left)


def fit_mapping(source: SubjectStats, target: SubjectStats) -> NormMapping:
    """Combine both subjects' statistics into the mapping (see the module docstring)."""
    if source.horizontal_degenerate:
        horizontal: dict[str, Any] = {
            "horizontal_mode": "constant", "source_left": source.body_x_median,
            "source_right": source.body_x_median, "target_left": target.body_x_median,
            "target_right": target.body_x_median,
        }
    else:
        horizontal = {
            "horizontal_mode": "interpolate", "source_left": source.body_x_left,
            "source_right": source.body_x_right, "target_left": target.body_x_left,
            "target_right": target.body_x_right,
        }
    common = {**horizontal, "source_ankle_median": source.ankle_median, "source_x_median": source.body_x_median}
    if source.degenerate:
        sigma = target.height_median / source.height_median
        return NormMapping(
            mode="constant", source_far=source.ankle_median, source_close=source.ankle_median,
            target_far=target.ankle_median, target_close=target.ankle_median,
            scale_far=sigma, scale_close=sigma, **common,
        )
    return NormMapping(
        mode="interpolate", source_far=source.ankle_far, source_close=source.ankle_close,
        target_far=target.ankle_far, target_close=target.ankle_close,
        scale_far=target.height_far / source.height_far, scale_close=target.height_close / source.height_close,
        **common,
    )


def apply_mapping(
    kps: np.ndarray, mapping: NormMapping, ankle_y: np.ndarray | None = None, body_x: np.ndarray | None = None,
) -> np.ndarray:
    """Map (N, 17, 3) source keypoints into target pixels; confidences and NaN pass through.

    ``ankle_y``/``body_x`` (N,) are each frame's anchor: the mean y of the visible ankles
    and the mean x of the visible hips (:func:`hip_x`); by default they are measured
    per row and a row without them uses the source's medians. Each frame is scaled by
    ``s(f)`` about its anchor, and the anchor is moved to ``ankle_map(f)``,
    ``anchor_x_map(x)``. Pure and row-wise, so row order never changes a row's result.
    """
    kps = np.asarray(kps, dtype=np.float64)
    if kps.ndim != 3 or kps.shape[1:] != (17, 3):
        raise ValueError(f"expected keypoints of shape (N, 17, 3), got {kps.shape}")
    if ankle_y is None:
        ankle_y = ankle_positions(kps)[1]
    if body_x is None:
        body_x = hip_x(kps)
    f = np.asarray(ankle_y, dtype=np.float64)
    f = np.where(np.isfinite(f), f, mapping.source_ankle_median)
    ax = np.asarray(body_x, dtype=np.float64)
    ax = np.where(np.isfinite(ax), ax, mapping.source_x_median)
    s = mapping.scale(f)[:, None]
    out = kps.copy()
    out[..., 0] = mapping.anchor_x_map(ax)[:, None] + s * (kps[..., 0] - ax[:, None])
    out[..., 1] = mapping.ankle_map(f)[:, None] + s * (kps[..., 1] - f[:, None])
    return out


# --------------------------------------------------------------------------- stage entry point


def read_stats(path: str | Path) -> dict[str, Any]:
    """A normfit ``stats.json`` as a dict (format checked), with a one-sentence error."""
    return read_json_file(path, "normalisation stats", FORMAT, "normfit", plural=True)


def load_mapping(path: str | Path) -> NormMapping:
    """Read the mapping from a normfit ``stats.json``, with a one-sentence error."""
    data = read_stats(path)
    try:
        return NormMapping.from_dict(data["mapping"])
    except (KeyError, TypeError) as e:
        raise DancepipeError(f"{path}: normalisation stats lack the mapping field {e}") from e


def plot_fit(
    path: Path, measures: dict[str, dict[str, np.ndarray]], stats: dict[str, SubjectStats], mapping: NormMapping
) -> None:
    """Write the human-readable check plot: ankle-y histograms, heights vs ankle y with
    the fitted far/close lines, and the source → target ankle mapping."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"target": "tab:blue", "source": "tab:orange"}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for name, m in measures.items():
        st, c, u = stats[name], colours[name], m["usable"]
        axes[0].hist(m["ankle_y"][u], bins=30, alpha=0.5, color=c, label=f"{name} ({st.usable} usable)")
        for v in (st.ankle_far, st.ankle_close):
            axes[0].axvline(v, color=c, linestyle="--")
        axes[1].scatter(m["ankle_y"][u], m["height"][u], s=6, alpha=0.5, color=c, label=name)
        tag = " (degenerate)" if st.degenerate else ""
        axes[1].plot([st.ankle_far, st.ankle_close], [st.height_far, st.height_close], "o-", color=c,
                     label=f"{name} far/close fit{tag}")
    axes[0].set(title="ankle y (larger = closer)", xlabel="ankle y [px]", ylabel="frames")
    axes[1].set(title="body height vs ankle y", xlabel="ankle y [px]", ylabel="head to ankle [px]")
    su = measures["source"]["usable"]
    fs = measures["source"]["ankle_y"][su]
    lo, hi = (float(fs.min()), float(fs.max())) if len(fs) else (0.0, 1.0)
    grid = np.linspace(lo, hi, 50)
    axes[2].plot(grid, mapping.ankle_map(grid), color="k", label="mapped ankle y")
    ax2 = axes[2].twinx()
    ax2.plot(grid, mapping.scale(grid), color="tab:red", label="scale")
    axes[2].set(title=f"source → target ({mapping.mode})", xlabel="source ankle y [px]", ylabel="target ankle y [px]")
    ax2.set_ylabel("scale", color="tab:red")
    for a in axes[:2]:
        a.legend(fontsize=8)
    axes[2].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)


def run_normfit(
    target: str | Path, source: str | Path, out: str | Path, plot: str | Path | None, cfg: NormfitConfig,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Fit both subjects and the mapping; write ``out`` (stats.json) and the plot."""
    kps = {"target": read_keypoints(target), "source": read_keypoints(source)}
    paths = {"target": target, "source": source}
    measures = {k: frame_measures(v) for k, v in kps.items()}
    stats = {k: fit_subject(v, cfg, name=str(paths[k])) for k, v in kps.items()}
    if progress:
        progress(1)
    mapping = fit_mapping(stats["source"], stats["target"])
    for key in ("scale_far", "scale_close"):
        v = getattr(mapping, key)
        if not (math.isfinite(v) and v > 0):
            raise DancepipeError(f"{source}: fitted {key} = {v} is not a positive number")
    result: dict[str, Any] = {
        "format": FORMAT,
        "params": cfg.model_dump(),
        "inputs": {"target": str(target), "source": str(source)},
        "target": stats["target"].to_dict(),
        "source": stats["source"].to_dict(),
        "mapping": mapping.to_dict(),
        "notes": [
            f"{k}: ankle {what} range is degenerate; using the median for both ends"
            for k in ("target", "source")
            for what, flag in (("depth (y)", stats[k].degenerate), ("horizontal (x)", stats[k].horizontal_degenerate))
            if flag
        ],
    }
    # plot first: if it fails, no stats.json claims a finished fit
    if plot is not None:
        plot_fit(Path(plot), measures, stats, mapping)
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    if progress:
        progress(1)
    return result

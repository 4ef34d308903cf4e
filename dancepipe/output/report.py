"""The HTML report: one page per target and per pair, and an index over them all.

``outputs/report.html`` (:func:`write_index`) shows every target's held-out sample
frames and every (target, source) dance as a playable video, each beside its numbers,
and links each page:
``outputs/<target>/held-out.html`` and ``outputs/<target>/<source>.html``.

Pictures are inline (CSS, images as base64 PNG, posters as base64 JPEG); the videos are
not: a ``<video>`` refers to the rendered MP4 by a path relative to the page (the render
stage writes it beside the pages, under ``outputs/``), so a page plays its video when
opened from disk (``file://``) or served with the folder. Figures are drawn with
matplotlib's Agg backend (no display needed). Page sections: key metrics (held-out
frames as a generator | nearest-neighbour baseline table), the dance's video, sample
frames (label | generated | baseline | real for the held-out frames; frames of the
side-by-side video for the transfer), per-frame series (generator and baseline on the
same axes), and the training curves read from dvclive's TSV files
(``dvclive/<target>/train/plots/metrics/*.tsv``) when they exist — a note says so when not.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import math
import os
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from dancepipe.advice.coverage import FAR_DISTANCE, FAR_SHARE, MIN_COVERED_SHARE, PART_SHARE
from dancepipe.atomic import atomic_path
from dancepipe.errors import DancepipeError
from dancepipe.video.decode import iter_frames, probe


@dataclasses.dataclass
class Evaluation:
    """Summary numbers, per-frame table and sample images of one evaluation (what the report shows).

    ``samples`` holds (frame, panels): label | generated | baseline | real for the
    held-out frames, label | generated for the transfer. ``notes`` are sentences the
    report shows with the section. Evaluate fills it; the report only reads it.
    """

    summary: dict[str, Any]
    per_frame: pd.DataFrame
    samples: list[tuple[int, list[np.ndarray]]]
    notes: list[str] = dataclasses.field(default_factory=list)


# What each metric means, shown next to its value (and in the docs). A ``baseline_``
# key means the same as its unprefixed one, measured on the baseline's frames.
METRIC_HELP: dict[str, str] = {
    "frames": "frames evaluated",
    "face_frames": "held-out frames with a recorded face box (the face metrics cover these)",
    "ssim": "structural similarity to the real frame, whole frame (1 = identical)",
    "psnr": "peak signal-to-noise ratio to the real frame, dB (higher is better, capped at 100)",
    "ssim_box": "SSIM inside the subject's box",
    "psnr_box": "PSNR inside the subject's box, dB",
    "ssim_face": "SSIM inside the face box",
    "psnr_face": "PSNR inside the face box, dB",
    "pose_distance": "mean keypoint distance of the detected pose to the conditioning pose, / body height",
    "no_person_rate": "share of frames where the pose model did not find the subject",
    "detection_rate": "share of the video frames whose label has a person where the pose model found the subject",
    "warp_error": "temporal warping error between consecutive outputs (0..1, lower = steadier)",
    "warp_error_real": "the same warping error on the real frames (the floor for this flow)",
    "baseline_frames": "held-out frames for which the baseline found a training frame",
    "baseline_match_distance": "mean retrieval distance of the chosen training pose (hip-centred, / body height)",
    "person_frames": "video frames whose label shows a person",
    "person_less_frames": "source labels with no person (never generated)",
    "substituted_frames": "video frames showing a held or blank picture instead of a generated one",
    "trimmed_frames": "person-less source frames dropped from the ends (render.empty = trim)",
    "empty_label_frames_generated": "video frames generated from a label with no person (must be 0)",
}
BASELINE_PREFIX = "baseline_"


def metric_help(key: str) -> str:
    """The meaning of a metric key; ``baseline_x`` falls back to the meaning of ``x``."""
    if key in METRIC_HELP:
        return METRIC_HELP[key]
    if key.startswith(BASELINE_PREFIX) and key[len(BASELINE_PREFIX):] in METRIC_HELP:
        return METRIC_HELP[key[len(BASELINE_PREFIX):]]
    return ""


def png_base64(image: np.ndarray) -> str:
    """(H, W, 3) uint8 RGB → base64 PNG string."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("PNG encoding failed")
    return base64.b64encode(buf.tobytes()).decode("ascii")


def _figure_base64(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(b64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def jpeg_base64(image: np.ndarray, quality: int = 85) -> str:
    """(H, W, 3) uint8 RGB → base64 JPEG string (posters: photographs, where PNG is large)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return base64.b64encode(buf.tobytes()).decode("ascii")


@dataclasses.dataclass(frozen=True)
class VideoLink:
    """A video a page plays: the file (read for its size and poster) and its address from the page."""

    path: Path
    href: str

    @classmethod
    def beside(cls, video: str | Path, page: str | Path) -> VideoLink:
        """``video`` as linked from ``page``: a relative address, so it works from disk and from a server."""
        rel = os.path.relpath(Path(video).resolve(), Path(page).resolve().parent)
        return cls(Path(video), urllib.parse.quote(Path(rel).as_posix()))


def poster_frame(video: str | Path) -> np.ndarray:
    """The middle frame of ``video`` as (H, W, 3) uint8 RGB: the picture a page shows before it plays."""
    middle = probe(video).frame_count // 2
    last = None
    for frame in iter_frames(video):
        last = frame.image
        if frame.index >= middle:
            break
    if last is None:
        raise DancepipeError(f"{video}: no frame could be decoded for the report's poster")
    return last


def video_html(video: VideoLink, label: str) -> str:
    """A ``<video>`` of ``video`` with its middle frame as the poster; a video under 480 px wide is shown twice
    its size."""
    info = probe(video.path)
    width = info.width * 2 if info.width < 480 else info.width
    poster = jpeg_base64(poster_frame(video.path))
    return (f"<video controls loop playsinline preload='metadata' width='{width}' "
            f"aria-label='{html.escape(label)}' poster='data:image/jpeg;base64,{poster}' "
            f"src='{html.escape(video.href)}'>{html.escape(label)}</video>")


def _strip(panels: Sequence[np.ndarray], scale: int = 2) -> np.ndarray:
    h = max(p.shape[0] for p in panels)
    fitted = [p if p.shape[0] == h else cv2.resize(p, (int(p.shape[1] * h / p.shape[0]), h)) for p in panels]
    strip = np.concatenate(fitted, axis=1)
    if scale != 1 and strip.shape[0] < 256:
        strip = cv2.resize(strip, (strip.shape[1] * scale, strip.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
    return strip


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def metrics_table(summary: dict[str, Any]) -> str:
    """An HTML table of one metrics dict with the meaning of each key."""
    rows = "".join(
        f"<tr><td><code>{html.escape(k)}</code></td><td>{_fmt(v)}</td><td>{html.escape(metric_help(k))}</td></tr>"
        for k, v in summary.items()
    )
    return f"<table><tr><th>metric</th><th>value</th><th>meaning</th></tr>{rows}</table>"


def comparison_table(summary: dict[str, Any], prefix: str = BASELINE_PREFIX) -> str:
    """Generator | baseline table of one metrics dict: ``x`` and ``<prefix>x`` side by side.

    Keys that only one side has (``warp_error_real``, ``baseline_frames``, ...) get a
    dash in the other column.
    """
    rows = []
    for k, v in summary.items():
        if k.startswith(prefix):
            if k[len(prefix):] in summary:
                continue  # shown in its generator row
            name, gen, base = k, "—", _fmt(v)
        else:
            name, gen, base = k, _fmt(v), _fmt(summary[prefix + k]) if prefix + k in summary else "—"
        rows.append(f"<tr><td><code>{html.escape(name)}</code></td><td>{gen}</td><td>{base}</td>"
                    f"<td>{html.escape(metric_help(name))}</td></tr>")
    return ("<table><tr><th>metric</th><th>generator</th><th>nearest-neighbour baseline</th><th>meaning</th></tr>"
            f"{''.join(rows)}</table>")


def training_curves(directory: str | Path | None) -> tuple[str | None, str]:
    """Plot every dvclive ``*.tsv`` series under ``directory`` (x = step); (base64 PNG, note)."""
    if directory is None:
        return None, "No training log directory was given."
    d = Path(directory)
    files = sorted(d.rglob("*.tsv")) if d.is_dir() else []
    if not files:
        return None, f"No training curves found under {d} (the train stage logs them with dvclive)."
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: list[tuple[str, pd.DataFrame]] = []
    for f in files:
        try:
            df = pd.read_csv(f, sep="\t")
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
            continue
        if "step" in df.columns and len(df.columns) >= 2 and len(df):
            series.append((str(f.relative_to(d).with_suffix("")), df))
    if not series:
        return None, f"The files under {d} hold no readable step series."
    cols = min(3, len(series))
    rows = math.ceil(len(series) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    for ax, (name, df) in zip(axes.flat, series, strict=False):
        ycol = [c for c in df.columns if c not in ("step", "timestamp")][-1]
        ax.plot(df["step"], df[ycol], lw=1)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(series):]:
        ax.axis("off")
    fig.tight_layout()
    return _figure_base64(fig), f"{len(series)} series from {d}."


def per_frame_figure(df: pd.DataFrame, columns: Sequence[str], title: str,
                     compare_prefix: str | None = None) -> str | None:
    """Small multiples of per-frame series (x = frame); None when there is nothing to draw.

    With ``compare_prefix``, the column ``<prefix>c`` is drawn on the same axes as ``c``
    (the baseline beside the generator).
    """
    cols = [c for c in columns if c in df.columns and df[c].notna().any()]
    if not cols or len(df) == 0:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(cols), figsize=(3.2 * len(cols), 2.4), squeeze=False)
    for ax, c in zip(axes.flat, cols, strict=True):
        other = None if compare_prefix is None else compare_prefix + c
        ax.plot(df["frame"], df[c].astype(float), ".-", lw=1, ms=3, label="generator")
        if other is not None and other in df.columns and df[other].notna().any():
            ax.plot(df["frame"], df[other].astype(float), ".-", lw=1, ms=3, label="baseline")
            ax.legend(fontsize=7)
        ax.set_title(c, fontsize=9)
        ax.set_xlabel("frame", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _figure_base64(fig)


def _notes(notes: Sequence[str]) -> str:
    return "".join(f"<p class='note'>{html.escape(n)}</p>" for n in notes if n)


def _baseline_frames(df: pd.DataFrame) -> dict[int, int | None]:
    """Held-out frame → the training frame the baseline showed (None: no match)."""
    if "baseline_frame" not in df.columns:
        return {}
    return {int(f): (None if pd.isna(b) else int(b)) for f, b in zip(df["frame"], df["baseline_frame"], strict=True)}


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;font-size:.9em}
th{background:#f4f4f4}img{max-width:100%;image-rendering:pixelated;margin:.3em 0}
.sample{display:inline-block;margin:0 1em 1em 0;font-size:.85em;color:#555}.note{color:#666;font-size:.9em}
h3{font-size:1.05em;margin:1.2em 0 .3em}video{max-width:100%;height:auto;background:#000;margin:.3em 0}
.card{display:flex;flex-wrap:wrap;gap:1.2em;align-items:flex-start}.card table{margin-top:.3em}
.samples{flex:1 1 520px;display:flex;flex-wrap:wrap;gap:.4em 1em}.samples .sample{margin:0;width:calc(50% - .6em)}
.samples .sample img{width:100%}
.advice{background:#fff4d6;border-left:4px solid #e0a100;padding:.4em .8em;font-size:.9em}
.coverage{width:220px;height:12px;display:flex;border:1px solid #bbb;margin:.3em 0}
.coverage span{display:block;height:100%}.cov-in{background:#4caf50}.cov-mid{background:#ffc107}.cov-far{background:#e53935}
"""

# The held-out page's sample frames lie between these marks; the index copies them from there.
SAMPLES_BEGIN, SAMPLES_END = "<!-- held-out samples -->", "<!-- /held-out samples -->"


def render_html(
    *,
    holdout: Evaluation | None = None,
    transfer: Evaluation | None = None,
    train_curves: str | Path | None = None,
    notes: Sequence[str] = (),
    title: str = "dancepipe report",
    video: VideoLink | None = None,
) -> str:
    """One report page as a string: the held-out section, the transfer section (with the dance's
    ``video`` when given), or both."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    if notes:
        parts.append("<ul class='note'>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes if n) + "</ul>")
    if holdout is not None:
        parts.append("<h2>Self-reenactment on held-out target frames</h2>")
        parts.append("<p class='note'>The target's own labels for frames never used in training, generated "
                     "sequentially and compared with the real frames, beside the paper's nearest-neighbour "
                     "baseline: the real training frame with the closest pose.</p>")
        parts.append(_notes(holdout.notes))
        parts.append(comparison_table(holdout.summary))
    if transfer is not None:
        parts.append("<h2>Transfer video</h2>")
        parts.append(_notes(transfer.notes))
        parts.append("<div class='card'>" + (video_html(video, "the dance") if video is not None else "")
                     + metrics_table(transfer.summary) + "</div>")
    parts.append("<h2>Sample frames</h2>")
    if holdout is not None:
        parts.append("<p class='note'>Held out: label | generated | baseline | real.</p>")
        chosen = _baseline_frames(holdout.per_frame)
        parts.append(SAMPLES_BEGIN)
        for frame, panels in holdout.samples:
            base = chosen.get(frame)
            caption = f"frame {frame}, baseline: " + (f"training frame {base}" if base is not None else "no match")
            parts.append(f"<div class='sample'>{_img(png_base64(_strip(panels)), f'holdout frame {frame}')}"
                         f"<br>{html.escape(caption)}</div>")
        parts.append(SAMPLES_END)
    if transfer is not None and transfer.samples:
        what = ("source | stick figure | generated (the side-by-side video)" if len(transfer.samples[0][1]) == 1
                else "normalised source label | generated")
        parts.append(f"<p class='note'>Transfer: {what}.</p>")
        for frame, panels in transfer.samples:
            strip = png_base64(_strip(panels, 1 if len(panels) == 1 else 2))
            parts.append(f"<div class='sample'>{_img(strip, f'transfer frame {frame}')}<br>frame {frame}</div>")
    parts.append("<h2>Per-frame series</h2>")
    series = []
    if holdout is not None:
        series.append((holdout.per_frame, ("ssim", "psnr", "ssim_face", "pose_distance", "warp_error"),
                       "held-out frames", BASELINE_PREFIX))
    if transfer is not None:
        series.append((transfer.per_frame, ("pose_distance", "person_found", "warp_error"), "transfer", None))
    for df, cols, name, prefix in series:
        fig = per_frame_figure(df, cols, name, compare_prefix=prefix)
        parts.append(_img(fig, name) if fig else f"<p class='note'>No per-frame data for {name}.</p>")
    if holdout is not None:
        parts.append("<h2>Training curves</h2>")
        curves, note = training_curves(train_curves)
        if curves:
            parts.append(_img(curves, "training curves"))
        parts.append(f"<p class='note'>{html.escape(note)}</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(
    path: str | Path,
    *,
    holdout: Evaluation | None = None,
    transfer: Evaluation | None = None,
    train_curves: str | Path | None = None,
    notes: Sequence[str] = (),
    title: str = "dancepipe report",
    video: str | Path | None = None,
) -> None:
    """Write one report page atomically; ``video`` (the dance's file) is played from its path relative to the page."""
    text = render_html(holdout=holdout, transfer=transfer, train_curves=train_curves, notes=notes, title=title,
                       video=None if video is None else VideoLink.beside(video, path))
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


# Where the evaluate and render stages write each target's and pair's files, relative to the
# index (outputs/report.html): the paths dvc.yaml gives their commands (tests/test_report.py
# checks that the two agree).
def target_page(target: str) -> str:
    """The held-out page of ``target``, relative to the index."""
    return f"{target}/held-out.html"


@dataclasses.dataclass(frozen=True)
class PairPaths:
    """The files of one (target, source) dance, relative to the index."""

    page: str
    video: str
    side_by_side: str

    @classmethod
    def of(cls, target: str, source: str) -> PairPaths:
        return cls(f"{target}/{source}.html", f"{target}/{source}.mp4", f"{target}/side_by_side/{source}.mp4")


def page_samples(page: str | Path) -> str | None:
    """The sample frames of a held-out page (the HTML between its sample marks); None without any."""
    path = Path(page)
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    start, end = text.find(SAMPLES_BEGIN), text.find(SAMPLES_END)
    if start < 0 or end < start:
        return None
    return text[start + len(SAMPLES_BEGIN):end].strip() or None


@dataclasses.dataclass(frozen=True)
class TargetEntry:
    """One target on the index: its held-out summary and sample frames (None: not evaluated yet), and
    what her footage offers (the footage stage's figures; None: not measured yet)."""

    name: str
    summary: dict[str, Any] | None
    samples: str | None
    footage: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class PairEntry:
    """One dance on the index: its transfer summary and side-by-side video (None: not there yet)."""

    target: str
    source: str
    summary: dict[str, Any] | None
    video: VideoLink | None


# The numbers beside each target's samples: (key, heading); the baseline's is ``baseline_<key>``.
HOLDOUT_ROWS = (("ssim_box", "box SSIM"), ("ssim_face", "face SSIM"), ("pose_distance", "pose distance"),
                ("warp_error", "warp error"))
# The numbers beside each dance: (key, heading).
TRANSFER_ROWS = (("frames", "frames"), ("pose_distance", "pose distance"), ("detection_rate", "detected"),
                 ("warp_error", "warp error"), ("substituted_frames", "held/blank"),
                 ("covered_frames", "covered frames"), ("pose_distance_covered", "pose distance, covered"))


def _row(key: str, heading: str, *values: str) -> str:
    cells = "".join(f"<td>{v}</td>" for v in values)
    return f"<tr><td title='{html.escape(metric_help(key))}'>{html.escape(heading)}</td>{cells}</tr>"


def _holdout_numbers(summary: dict[str, Any]) -> str:
    rows = [_row(k, h, _fmt(summary.get(k)), _fmt(summary.get(BASELINE_PREFIX + k))) for k, h in HOLDOUT_ROWS]
    rows.append(_row("warp_error_real", "warp error, real frames", _fmt(summary.get("warp_error_real")), "—"))
    return ("<table><tr><th>held out</th><th>generator</th><th>baseline</th></tr>" + "".join(rows) + "</table>")


def _transfer_numbers(summary: dict[str, Any]) -> str:
    rows = "".join(_row(k, h, _fmt(summary.get(k))) for k, h in TRANSFER_ROWS)
    return f"<table><tr><th>dance</th><th>value</th></tr>{rows}{coverage_row(summary)}</table>"


def footage_html(footage: dict[str, Any] | None) -> str:
    """A target's footage figures and advice (:mod:`dancepipe.advice.footage`), for the index."""
    if footage is None:
        return "<p class='note'>Footage not measured yet (the footage stage).</p>"
    body = "—" if footage.get("body_px") is None else f"{footage['body_px']:.0f} px ({footage['fill']:.0%} of the picture)"
    cells = (f"{footage['seconds']:.0f} s", f"{footage['full_body_share']:.0%} of the frames", body,
             str(footage["distinct_poses"]))
    heads = ("footage", "whole body", "body height", "distinct poses")
    table = ("<table class='footage'><tr>" + "".join(f"<th>{h}</th>" for h in heads) + "</tr><tr>"
             + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr></table>")
    advice = footage.get("advice")
    said = (f"<p class='advice'>Footage advice: {html.escape(advice)}</p>" if advice
            else "<p class='note'>Footage: nothing thin (docs/footage.md).</p>")
    return table + said


def coverage_row(summary: dict[str, Any]) -> str:
    """The dance's coverage by the target's footage as a bar (covered | between | far), flagged as the
    labels stage warns (:mod:`dancepipe.advice.coverage`): past ``FAR_SHARE`` far with the parts that
    will smear, under ``MIN_COVERED_SHARE`` covered as footage that repeats itself."""
    n, covered, far = summary.get("coverage_frames"), summary.get("covered_frames"), summary.get("far_frames")
    if not n or covered is None or far is None:
        return ""
    shares = (covered / n, max(n - covered - far, 0) / n, far / n)
    bar = "".join(f"<span class='{c}' style='width:{100 * v:.1f}%'></span>"
                  for c, v in zip(("cov-in", "cov-mid", "cov-far"), shares, strict=True))
    title = (f"{covered} of {n} frames covered by the target's footage, {far} far from every pose she made "
             f"(further than {FAR_DISTANCE:g} of the body height)")
    text = f"{shares[0]:.0%} covered, {shares[2]:.0%} far"
    if shares[2] <= FAR_SHARE and shares[0] < MIN_COVERED_SHARE:
        text = f"&#9888; {text}: the target's footage repeats itself, all of it will blur"
    elif shares[2] > FAR_SHARE:
        parts = [p for p, v in sorted((summary.get("far_parts") or {}).items(), key=lambda kv: -kv[1])
                 if v >= PART_SHARE]
        text = f"&#9888; {text}" + (f": {html.escape(', '.join(parts))} will smear" if parts else "")
    return (f"<tr><td title='{html.escape(title)}'>coverage</td>"
            f"<td><div class='coverage' title='{html.escape(title)}'>{bar}</div>{text}</td></tr>")


def index_html(targets: Sequence[TargetEntry], pairs: Sequence[PairEntry]) -> str:
    """The index page: each target's held-out samples and each dance's video, each beside its numbers,
    with links to every page."""
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>dancepipe</title>",
             f"<style>{_CSS}</style></head><body><h1>dancepipe: every target and dance</h1>",
             "<h2>Targets: self-reenactment on held-out frames</h2>",
             "<p class='note'>Frames the generator never trained on: label | generated | nearest-neighbour "
             "baseline | real. Each target's page adds every metric, per-frame series and the training curves.</p>"]
    for t in targets:
        name = html.escape(t.name)
        parts.append(f"<h3 id='target-{name}'><a href='{html.escape(target_page(t.name))}'>{name}</a></h3>")
        parts.append(footage_html(t.footage))
        if t.summary is None:
            parts.append("<p class='note'>Not evaluated yet.</p>")
            continue
        samples = t.samples or "<p class='note'>The held-out page has no sample frames.</p>"
        parts.append(f"<div class='card'><div class='samples'>{samples}</div>{_holdout_numbers(t.summary)}</div>")
    parts += ["<h2>Dances: each source's motion on each target</h2>",
              "<p class='note'>The side-by-side video: source | stick figure | generated. Each dance's page adds "
              "every metric, frames and per-frame series.</p>"]
    for p in pairs:
        paths = PairPaths.of(p.target, p.source)
        label = f"{p.source} danced by {p.target}"
        parts.append(f"<h3 id='dance-{html.escape(p.target)}-{html.escape(p.source)}'>"
                     f"<a href='{html.escape(paths.page)}'>{html.escape(p.source)}</a> danced by "
                     f"{html.escape(p.target)} <small>(<a href='{html.escape(paths.video)}'>generated video only</a>)"
                     "</small></h3>")
        video = video_html(p.video, label) if p.video is not None else "<p class='note'>Not rendered yet.</p>"
        numbers = ("<p class='note'>Not evaluated yet.</p>" if p.summary is None else _transfer_numbers(p.summary))
        parts.append(f"<div class='card'>{video}{numbers}</div>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_index(out: str | Path, metrics_root: str | Path, targets: Sequence[str],
                pairs: Sequence[tuple[str, str]]) -> int:
    """Write the index page ``out``; returns how many evaluations are missing.

    It reads ``metrics_root/<target>/eval.json`` and ``metrics_root/<target>/<source>/transfer.json``,
    and beside ``out`` the held-out pages (for their samples) and the side-by-side videos (for
    their size and poster), where the evaluate and render stages write them.
    """
    root, here = Path(metrics_root), Path(out).parent

    def summary(path: Path) -> dict[str, Any] | None:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    rows_t = [TargetEntry(t, summary(root / t / "eval.json"), page_samples(here / target_page(t)),
                          summary(root / t / "footage.json")) for t in targets]
    rows_p = []
    for t, s in pairs:
        video = here / PairPaths.of(t, s).side_by_side
        rows_p.append(PairEntry(t, s, summary(root / t / s / "transfer.json"),
                                VideoLink.beside(video, out) if video.is_file() else None))
    with atomic_path(out) as tmp:
        tmp.write_text(index_html(rows_t, rows_p), encoding="utf-8")
    return sum(r.summary is None for r in rows_t) + sum(r.summary is None for r in rows_p)

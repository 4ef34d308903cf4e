"""The HTML report: one self-contained page per target and per pair, and an index.

``outputs/report.html`` (:func:`index_html`) lists every target's held-out metrics and
every (target, source) pair's transfer metrics, linking to each page:
``outputs/<target>/held-out.html`` and ``outputs/<target>/<source>.html``.

Everything is inline (CSS and images as base64 PNG), so the file can be opened
offline, attached to an issue or archived next to the metrics. Figures are drawn with
matplotlib's Agg backend (no display needed). Sections: key metrics (held-out frames
as a generator | nearest-neighbour baseline table), sample frames (label | generated |
baseline | real for the held-out frames; label | generated for the transfer),
per-frame series (generator and baseline on the same axes), and the training curves
read from dvclive's TSV files (``dvclive/<target>/train/plots/metrics/*.tsv``) when they exist —
a note says so when not.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from dancepipe.atomic import atomic_path


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
"""


def render_html(
    *,
    holdout: Evaluation | None = None,
    transfer: Evaluation | None = None,
    train_curves: str | Path | None = None,
    notes: Sequence[str] = (),
    title: str = "dancepipe report",
) -> str:
    """One report page as a string: the held-out section, the transfer section, or both."""
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
        parts.append(metrics_table(transfer.summary))
    parts.append("<h2>Sample frames</h2>")
    if holdout is not None:
        parts.append("<p class='note'>Held out: label | generated | baseline | real.</p>")
        chosen = _baseline_frames(holdout.per_frame)
        for frame, panels in holdout.samples:
            base = chosen.get(frame)
            caption = f"frame {frame}, baseline: " + (f"training frame {base}" if base is not None else "no match")
            parts.append(f"<div class='sample'>{_img(png_base64(_strip(panels)), f'holdout frame {frame}')}"
                         f"<br>{html.escape(caption)}</div>")
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
) -> None:
    """Write one report page atomically."""
    text = render_html(holdout=holdout, transfer=transfer, train_curves=train_curves, notes=notes, title=title)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


# Columns of the index page's tables: (summary key, heading).
HOLDOUT_COLUMNS = (("ssim_box", "box SSIM"), ("baseline_ssim_box", "baseline"), ("ssim_face", "face SSIM"),
                   ("baseline_ssim_face", "baseline"), ("pose_distance", "pose distance"),
                   ("warp_error", "warp error"), ("warp_error_real", "real"))
TRANSFER_COLUMNS = (("frames", "frames"), ("pose_distance", "pose distance"), ("detection_rate", "detected"),
                    ("warp_error", "warp error"), ("substituted_frames", "held/blank"),
                    ("covered_frames", "covered frames"), ("pose_distance_covered", "pose distance, covered"))


def index_html(targets: Sequence[tuple[str, dict[str, Any] | None, str]],
               pairs: Sequence[tuple[str, str, dict[str, Any] | None, str, str]]) -> str:
    """The index page: one row per target (held-out metrics) and per pair (transfer metrics), with links.

    ``targets`` holds (target, eval summary or None, page link); ``pairs`` holds
    (target, source, transfer summary or None, page link, video link).
    """
    def cells(summary: dict[str, Any] | None, columns: Sequence[tuple[str, str]]) -> str:
        return "".join(f"<td>{_fmt(summary.get(k)) if summary else '—'}</td>" for k, _ in columns)

    def head(first: Sequence[str], columns: Sequence[tuple[str, str]]) -> str:
        return "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in [*first, *(h for _, h in columns)]) + "</tr>"

    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>dancepipe</title>",
             f"<style>{_CSS}</style></head><body><h1>dancepipe: every target and dance</h1>",
             "<h2>Targets (self-reenactment on held-out frames)</h2>",
             "<p class='note'>Generator beside the nearest-neighbour baseline; each page shows sample "
             "frames, per-frame series and the training curves.</p><table>",
             head(["target"], HOLDOUT_COLUMNS)]
    for name, summary, page in targets:
        parts.append(f"<tr><td><a href='{html.escape(page)}'>{html.escape(name)}</a></td>"
                     f"{cells(summary, HOLDOUT_COLUMNS)}</tr>")
    parts += ["</table>", "<h2>Dances (transfer)</h2>",
              "<p class='note'>Each page shows frames of the side-by-side video (source | stick figure | "
              "generated) and the per-frame series.</p><table>", head(["target", "source", "video"], TRANSFER_COLUMNS)]
    for target, source, summary, page, video in pairs:
        parts.append(f"<tr><td>{html.escape(target)}</td><td><a href='{html.escape(page)}'>{html.escape(source)}</a>"
                     f"</td><td><a href='{html.escape(video)}'>mp4</a></td>{cells(summary, TRANSFER_COLUMNS)}</tr>")
    parts.append("</table></body></html>\n")
    return "\n".join(parts)


def write_index(out: str | Path, metrics_root: str | Path, targets: Sequence[str],
                pairs: Sequence[tuple[str, str]]) -> int:
    """Write the index page ``out`` from ``metrics_root/<target>/eval.json`` and
    ``metrics_root/<target>/<source>/transfer.json``; returns how many of those are missing.

    Links are relative to ``out``: ``<target>/held-out.html``, ``<target>/<source>.html``
    and ``<target>/<source>.mp4``, where the evaluate and render stages write them.
    """
    root = Path(metrics_root)

    def summary(path: Path) -> dict[str, Any] | None:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    rows_t = [(t, summary(root / t / "eval.json"), f"{t}/held-out.html") for t in targets]
    rows_p = [(t, s, summary(root / t / s / "transfer.json"), f"{t}/{s}.html", f"{t}/{s}.mp4") for t, s in pairs]
    with atomic_path(out) as tmp:
        tmp.write_text(index_html(rows_t, rows_p), encoding="utf-8")
    return sum(r[1] is None for r in rows_t) + sum(r[2] is None for r in rows_p)

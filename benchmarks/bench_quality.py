"""Demo quality against its bars, read from the outputs of a finished ``make demo``.

Nothing is computed here that evaluate did not already write: the benchmark reads, for
every target of params.yaml, ``metrics/eval/<target>/eval.json`` (self-reenactment on
the held-out tail of the target, the generator beside the nearest-neighbour baseline)
and every ``metrics/eval/<target>/<source>/transfer.json`` (each rendered dance,
re-detected), and ``metrics/demo_time.json`` (the wall time ``make demo`` recorded), and prints each figure beside its goal with the margin. The anchor
of the held-out bars is the baseline measured in the same run: the training frame
whose pose is closest to each held-out pose.

Bars (issue 10):

* held-out: generator box SSIM >= baseline box SSIM + 0.05; face SSIM >= the
  baseline's; pose distance <= 0.03 of the body height; no person 0 %; warp error
  <= 1.2 x the real frames' warp error;
* transfer: a person found in >= 98 % of the frames whose label has one; pose distance
  <= 0.06 of the body height; no frame generated from an empty label;
* ``make demo`` <= 15 min.

Beside the bars it prints, per dance, how many of its generated frames ask for a pose the
target's footage covers and the pose distance on those and on the rest
(:mod:`dancepipe.advice.coverage`): the part of the error that is extrapolation;
and its pose distance by part of the body (head, torso, arms, legs).

Run: ``python -m benchmarks.bench_quality [--metrics metrics]``. Exit status 1 when a
bar is missed, so a script can tell; the figures are the point.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SystemExit(f"{path} does not exist: run `make demo` first")
    return json.loads(path.read_text(encoding="utf-8"))


def _num(d: dict[str, Any], key: str) -> float | None:
    v = d.get(key)
    return None if v is None else float(v)


def bars(held: dict[str, Any], transfers: dict[str, dict[str, Any]], demo_seconds: float | None,
         target: str = "") -> list[tuple]:
    """(what, value, goal text, ok) for every bar; ``ok`` is None when the figure is missing."""

    def row(what: str, value: float | None, goal: float | None, kind: str, fmt: str = "{:.3f}") -> tuple:
        if value is None or goal is None:
            return what, value, f"{kind} {'?' if goal is None else fmt.format(goal)}", None
        ok = value >= goal if kind == ">=" else value <= goal
        return what, value, f"{kind} {fmt.format(goal)}", ok

    out = []
    h = f"{target} held-out" if target else "held-out"
    base_box = _num(held, "baseline_ssim_box")
    out.append(row(f"{h} box SSIM (baseline + 0.05)", _num(held, "ssim_box"),
                   None if base_box is None else base_box + 0.05, ">="))
    out.append(row(f"{h} face SSIM (baseline)", _num(held, "ssim_face"), _num(held, "baseline_ssim_face"), ">="))
    out.append(row(f"{h} pose distance", _num(held, "pose_distance"), 0.03, "<="))
    out.append(row(f"{h} no-person rate", _num(held, "no_person_rate"), 0.0, "<="))
    real = _num(held, "warp_error_real")
    out.append(row(f"{h} warp error (1.2 x real)", _num(held, "warp_error"),
                   None if real is None else 1.2 * real, "<=", "{:.4f}"))
    for name, t in transfers.items():
        out.append(row(f"transfer {name}: detection rate", _num(t, "detection_rate"), 0.98, ">="))
        out.append(row(f"transfer {name}: pose distance", _num(t, "pose_distance"), 0.06, "<="))
        out.append(row(f"transfer {name}: frames from empty labels", _num(t, "empty_label_frames_generated"), 0,
                       "<=", "{:.0f}"))
    if demo_seconds is not None or not target:
        out.append(row("make demo minutes", None if demo_seconds is None else demo_seconds / 60, 15.0, "<=", "{:.1f}"))
    return out


def coverage_line(source: str, t: dict[str, Any]) -> str:
    """How much of a dance the target's footage covers, and the pose distance on either side (not a bar)."""
    if t.get("covered_frames") is None:
        return f"  {source}: coverage not measured (rerun labels_transfer and evaluate_transfer)"
    from dancepipe.cli import figure

    generated = int(t.get("frames", 0)) - int(t.get("substituted_frames", 0))
    return (f"  {source:14s} {t['covered_frames']} of {generated} generated frames ask for a pose the target covers: "
            f"pose distance {figure(_num(t, 'pose_distance_covered'))} on them, "
            f"{figure(_num(t, 'pose_distance_uncovered'))} on the rest; "
            f"{t.get('far_frames', 'n/a')} far from every pose she made")


def parts_line(t: dict[str, Any]) -> str | None:
    """A dance's pose distance by part of the body (metrics.JOINT_GROUPS); None when it has none."""
    from dancepipe.cli import figure
    from dancepipe.output.metrics import JOINT_GROUPS

    parts = [(p, _num(t, f"pose_distance_{p}")) for p in JOINT_GROUPS]
    if all(v is None for _, v in parts):
        return None
    return f"  {'':14s} pose distance by part: " + ", ".join(f"{p} {figure(v)}" for p, v in parts)


def main(argv: list[str] | None = None) -> int:
    from dancepipe.catalog import load_catalog

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--metrics", default="metrics/eval",
                    help="the evaluations' metrics root (default: metrics/eval)")
    ap.add_argument("--params", default="params.yaml", help="params file naming the targets and sources")
    ap.add_argument("--demo-time", default="metrics/demo_time.json", help="make demo's wall time (JSON)")
    args = ap.parse_args(argv)
    catalog = load_catalog(args.params)
    root = Path(args.metrics)
    timing = Path(args.demo_time)
    demo_seconds = _load(timing)["seconds"] if timing.is_file() else None

    print("baseline = for each held-out frame, the training frame with the closest pose")
    rows = []
    for i, target in enumerate(catalog.targets):
        held = _load(root / target / "eval.json")
        print(f"{target}:")
        for key in ("ssim", "ssim_box", "ssim_face", "psnr", "psnr_box", "psnr_face", "pose_distance", "warp_error"):
            g, b = _num(held, key), _num(held, f"baseline_{key}")
            if g is not None and b is not None:
                print(f"  {key:14s} generator {g:8.4f}   baseline {b:8.4f}   margin {g - b:+.4f}")
        transfers = {s: _load(root / target / s / "transfer.json") for s in catalog.sources}
        for s, t in transfers.items():
            print(coverage_line(s, t))
            if (line := parts_line(t)) is not None:
                print(line)
        rows += bars(held, transfers, demo_seconds if i == len(catalog.targets) - 1 else None, target)
    print()
    width = max(len(r[0]) for r in rows)
    missed = 0
    for what, value, goal, ok in rows:
        shown = "missing" if value is None else f"{value:.4f}"
        verdict = "?" if ok is None else ("ok" if ok else "MISSED")
        missed += ok is False
        print(f"{what:{width}s}  {shown:>9s}  goal {goal:10s}  {verdict}")
    print(f"\n{len(rows) - missed} of {len(rows)} bars met" + (f", {missed} missed" if missed else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())

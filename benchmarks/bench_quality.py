"""Demo quality against its bars, read from the outputs of a finished ``make demo``.

Nothing is computed here that evaluate did not already write: the benchmark reads
``metrics/eval.json`` (self-reenactment on the held-out tail of the target, the
generator beside the nearest-neighbour baseline), ``metrics/transfer.json`` (the
rendered transfer, re-detected) and ``metrics/demo_time.json`` (the wall time ``make
demo`` recorded), and prints each figure beside its goal with the margin. The anchor
of the held-out bars is the baseline measured in the same run: the training frame
whose pose is closest to each held-out pose.

Bars (issue 10):

* held-out: generator box SSIM >= baseline box SSIM + 0.05; face SSIM >= the
  baseline's; pose distance <= 0.03 of the body height; no person 0 %; warp error
  <= 1.2 x the real frames' warp error;
* transfer: a person found in >= 98 % of the frames whose label has one; pose distance
  <= 0.06 of the body height; no frame generated from an empty label;
* ``make demo`` <= 15 min.

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


def bars(held: dict[str, Any], transfers: dict[str, dict[str, Any]], demo_seconds: float | None) -> list[tuple]:
    """(what, value, goal text, ok) for every bar; ``ok`` is None when the figure is missing."""

    def row(what: str, value: float | None, goal: float | None, kind: str, fmt: str = "{:.3f}") -> tuple:
        if value is None or goal is None:
            return what, value, f"{kind} {'?' if goal is None else fmt.format(goal)}", None
        ok = value >= goal if kind == ">=" else value <= goal
        return what, value, f"{kind} {fmt.format(goal)}", ok

    out = []
    base_box = _num(held, "baseline_ssim_box")
    out.append(row("held-out box SSIM (baseline + 0.05)", _num(held, "ssim_box"),
                   None if base_box is None else base_box + 0.05, ">="))
    out.append(row("held-out face SSIM (baseline)", _num(held, "ssim_face"), _num(held, "baseline_ssim_face"), ">="))
    out.append(row("held-out pose distance", _num(held, "pose_distance"), 0.03, "<="))
    out.append(row("held-out no-person rate", _num(held, "no_person_rate"), 0.0, "<="))
    real = _num(held, "warp_error_real")
    out.append(row("held-out warp error (1.2 x real)", _num(held, "warp_error"),
                   None if real is None else 1.2 * real, "<=", "{:.4f}"))
    for name, t in transfers.items():
        out.append(row(f"transfer {name}: detection rate", _num(t, "detection_rate"), 0.98, ">="))
        out.append(row(f"transfer {name}: pose distance", _num(t, "pose_distance"), 0.06, "<="))
        out.append(row(f"transfer {name}: frames from empty labels", _num(t, "empty_label_frames_generated"), 0,
                       "<=", "{:.0f}"))
    out.append(row("make demo minutes", None if demo_seconds is None else demo_seconds / 60, 15.0, "<=", "{:.1f}"))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--metrics", default="metrics", help="evaluate's metrics directory (default: metrics)")
    args = ap.parse_args(argv)
    mdir = Path(args.metrics)
    held = _load(mdir / "eval.json")
    transfers = {p.stem.removeprefix("transfer").strip("_-") or "source": _load(p)
                 for p in sorted(mdir.glob("transfer*.json"))}
    timing = mdir / "demo_time.json"
    demo_seconds = _load(timing)["seconds"] if timing.is_file() else None

    print("baseline = for each held-out frame, the training frame with the closest pose")
    for key in ("ssim", "ssim_box", "ssim_face", "psnr", "psnr_box", "psnr_face", "pose_distance", "warp_error"):
        g, b = _num(held, key), _num(held, f"baseline_{key}")
        if g is not None and b is not None:
            print(f"  {key:14s} generator {g:8.4f}   baseline {b:8.4f}   margin {g - b:+.4f}")
    print()
    rows = bars(held, transfers, demo_seconds)
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

"""bench_footage: what each target's footage offers, how much of each dance it covers, and what that costs.

Read from a workspace where ``dvc repro`` has run (every target of params.yaml), this prints:

* per target, the footage figures and advice of ``metrics/eval/<t>/footage.json``;
* per (target, dance), the coverage the labels stage measured (``coverage.json``): covered
  frames, the share far from every training pose, the body parts far, the warning; and,
  where the dance was rendered and evaluated, its measured pose distance beside the goal
  (0.06), so the warnings can be checked against the quality they predict;
* the relation the thresholds come from (docs/footage.md): the rendered frames of every
  pair pooled and binned by their label's distance to the nearest training pose, with the
  median pose distance of each bin (where it crosses the goal is ``FAR_DISTANCE``);
* speed: the labels stage on each dance with and without the coverage (the anchor, in
  the same run), and the footage stage against the profile stage; ratios printed.

``--make-clip PATH`` writes the study's short, repetitive target instead: ``--seconds``
(6) of the demo dancer from ``--start`` (20 s), played forwards, backwards and forwards
again (18 s of one movement, like a gym exercise filmed for a minute's third), H.264. Add
it to params.yaml as a video, a subject and a target (docs/footage.md) and run
``dvc repro`` to measure it.

Run: ``python -m benchmarks.bench_footage [--root .]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

GOAL = 0.06  # the transfer pose-distance goal (docs/results.md)
BINS = (0.0, 0.05, 0.075, 0.10, 0.125, 0.15, 0.2, np.inf)


def make_clip(src: Path, dest: Path, start: float, seconds: float) -> Path:
    """The study clip: ``seconds`` of ``src`` from ``start``, forwards, backwards, forwards (no audio)."""
    from dancepipe.video.decode import iter_frames, probe
    from dancepipe.video.encode import mp4_writer

    info = probe(src)
    frames = [f.image for f in iter_frames(src) if start <= f.timestamp < start + seconds]
    if not frames:
        raise SystemExit(f"{src}: no frames between {start} and {start + seconds} s")
    order = frames + frames[-2:0:-1] + frames
    h, w = frames[0].shape[:2]
    with mp4_writer(dest, width=w, height=h, fps=info.fps) as writer:
        for image in order:
            writer.write(image)
    print(f"wrote {dest}: {len(order)} frames ({len(order) / info.fps:.1f} s) from {seconds:g} s of {src}")
    return dest


def _json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def footage_section(root: Path, targets: list[str]) -> None:
    print("\n## Footage per target")
    print(f"{'target':<10} {'seconds':>7} {'whole body':>10} {'body px':>7} {'fill':>5} {'distinct poses':>14}  advice")
    for t in targets:
        f = _json(root / "metrics/eval" / t / "footage.json")
        if f is None:
            print(f"{t:<10} (no footage.json: run dvc repro footage@{t})")
            continue
        body = "-" if f["body_px"] is None else f"{f['body_px']:.0f}"
        fill = "-" if f["fill"] is None else f"{f['fill']:.0%}"
        print(f"{t:<10} {f['seconds']:7.0f} {f['full_body_share']:10.0%} {body:>7} {fill:>5} "
              f"{f['distinct_poses']:14d}  {f['advice'] or 'none'}")


def coverage_section(root: Path, targets: list[str], sources: list[str]) -> pd.DataFrame:
    """Print each pair's coverage and measured quality; return the pooled per-frame table."""
    from dancepipe.advice.coverage import read_coverage

    print("\n## Coverage per dance, before rendering, and the quality measured after")
    print(f"{'pair':<18} {'covered':>9} {'far':>5} {'far parts':<44} {'warned':>6} {'pose dist':>9} "
          f"{'goal met':>8}  agree")
    pooled = []
    for t in targets:
        for s in sources:
            labels = root / "data/labels" / t / "transfer" / s
            cov = read_coverage(labels) if labels.is_dir() else None
            if cov is None:
                print(f"{t}-{s:<12} (no coverage.json: run dvc repro labels_transfer@{t}-{s})")
                continue
            summ = cov.summary()
            warned = cov.warning(s, t) is not None
            parts = ", ".join(f"{p} {v:.0%}" for p, v in summ["far_parts"].items() if v >= 0.05) or "-"
            tj = _json(root / "metrics/eval" / t / s / "transfer.json")
            dist = None if tj is None else tj.get("pose_distance")
            met = None if dist is None else dist <= GOAL
            agree = "-" if met is None else ("yes" if warned == (not met) else "NO")
            print(f"{t + '-' + s:<18} {summ['covered_frames']:4d}/{summ['coverage_frames']:<4d} "
                  f"{summ['far_share']:5.0%} {parts:<44} {'yes' if warned else 'no':>6} "
                  f"{'-' if dist is None else f'{dist:.3f}':>9} {'-' if met is None else ('yes' if met else 'no'):>8}"
                  f"  {agree}")
            csv = root / "metrics/eval" / t / s / "transfer_per_frame.csv"
            if csv.is_file():
                df = pd.read_csv(csv)
                df = df[df["generated"] == 1][["nearest_training_pose", "pose_distance"]].dropna()
                df["pair"] = f"{t}-{s}"
                pooled.append(df)
    return pd.concat(pooled, ignore_index=True) if pooled else pd.DataFrame()


def relation_section(pooled: pd.DataFrame) -> None:
    from dancepipe.advice.coverage import FAR_DISTANCE

    print("\n## Pose distance by the label's distance to the nearest training pose (all rendered pairs pooled)")
    if pooled.empty:
        print("(no evaluated pairs: run dvc repro first)")
        return
    cut = pd.cut(pooled["nearest_training_pose"], BINS, right=False)
    table = pooled.groupby(cut, observed=True)["pose_distance"].agg(["count", "median", "mean"])
    print(f"{'nearest distance':<16} {'frames':>6} {'median pose dist':>16} {'mean':>6}  over the goal")
    for interval, row in table.iterrows():
        print(f"{str(interval):<16} {int(row['count']):6d} {row['median']:16.3f} {row['mean']:6.3f}  "
              f"{'yes' if row['median'] > GOAL else 'no'}")
    far = pooled["nearest_training_pose"] > FAR_DISTANCE
    print(f"FAR_DISTANCE = {FAR_DISTANCE:g}: median pose distance {pooled.loc[~far, 'pose_distance'].median():.3f} "
          f"on the {int((~far).sum())} frames within it, {pooled.loc[far, 'pose_distance'].median():.3f} on the "
          f"{int(far.sum())} beyond it (goal {GOAL})")


def speed_section(root: Path, targets: list[str], sources: list[str], repeats: int) -> None:
    from dancepipe.advice.footage import run_footage
    from dancepipe.config import load_params
    from dancepipe.transfer.labels import CoverageOf, load_labels_config, run_labels
    from dancepipe.transfer.profile import run_profile

    print(f"\n## Speed (median of {repeats}; the anchor runs in the same process)")
    params = load_params(root / "params.yaml")
    cfg = load_labels_config("transfer", root / "params.yaml")
    holdout = float(params["train"]["holdout_fraction"])
    t, s = targets[0], sources[0]
    args = dict(kind="transfer", poses=root / "data/subjects" / s / "poses.parquet", frames_dir=root / "data/frames" / t,
                cfg=cfg, norm=root / "data/norm" / t / f"{s}.json", profile=root / "data/profiles" / f"{t}.json")
    cov = CoverageOf(root / "data/labels" / t / "train", holdout, t, s)
    subject = root / "data/subjects" / t
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)

        def timed(fn) -> float:
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            return float(np.median(times))

        plain = timed(lambda: run_labels(out=out / "plain", **args))
        with_cov = timed(lambda: run_labels(out=out / "cov", coverage_of=cov, **args))
        profile = timed(lambda: run_profile(subject / "poses.parquet", out / "profile.json"))
        footage = timed(lambda: run_footage(subject, out / "footage.json",
                                            min_joints=cfg.draw.min_joints, train_height=int(params["frames"]["height"])))
    print(f"labels_transfer {t}-{s}: {plain:.2f} s without coverage (anchor), {with_cov:.2f} s with "
          f"(x{with_cov / plain:.2f})")
    print(f"footage {t}: {footage:.2f} s; profile {t} (anchor, the other per-target pose stage): {profile:.2f} s "
          f"(x{footage / profile:.1f})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path("."), help="the workspace (params.yaml, data/, metrics/).")
    ap.add_argument("--repeats", type=int, default=3, help="runs per timed figure (median).")
    ap.add_argument("--skip-speed", action="store_true", help="print the figures only.")
    ap.add_argument("--make-clip", type=Path, default=None, help="write the study's repetitive target clip here.")
    ap.add_argument("--source-video", type=Path, default=Path("data/videos/dancer"),
                    help="the clip to cut it from (the ingested demo dancer).")
    ap.add_argument("--start", type=float, default=20.0, help="where the slice starts (s).")
    ap.add_argument("--seconds", type=float, default=6.0, help="the slice's length (s).")
    a = ap.parse_args(argv)
    if a.make_clip is not None:
        from dancepipe.video.decode import resolve_video

        make_clip(resolve_video(a.source_video), a.make_clip, a.start, a.seconds)
        return 0
    from dancepipe.config import load_params

    params = load_params(a.root / "params.yaml")
    targets, sources = list(params["targets"]), list(params["sources"])
    footage_section(a.root, targets)
    relation_section(coverage_section(a.root, targets, sources))
    if not a.skip_speed:
        speed_section(a.root, targets, sources, a.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""labels_train throughput: labels per second, single process vs the stage's parallel path.

Runs the real ``run_labels("train", ...)`` (draw, PNG encode, index, contact sheet) on a
synthetic target of N frames at the demo label size (params.yaml ``frames``) and at
512x512, once with ``labels.draw.workers = 1`` (the anchor) and once with the stage's
worker count, and prints labels/s and the speed-up ratio.

    python -m benchmarks.bench_labels [--frames 200] [--workers 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from dancepipe.config import load_params
from dancepipe.transfer.labels import DrawConfig, LabelsConfig, run_labels
from tests.fixtures.labels import depth_walk, write_frames_dir, write_pose_table


def _rate(poses: Path, frames: Path, out: Path, workers: int, repeat: int) -> float:
    cfg = LabelsConfig(draw=DrawConfig(workers=workers))
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = run_labels("train", poses, frames, out, cfg)
        best = min(best, time.perf_counter() - t0)
    return r["frames"] / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200, help="synthetic target frames")
    ap.add_argument("--workers", type=int, default=None, help="parallel workers (default: params.yaml labels.draw.workers)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per setting; the best is reported")
    args = ap.parse_args()
    params = load_params("params.yaml")
    workers = args.workers or params["labels"]["draw"]["workers"]
    demo = (params["frames"]["width"], params["frames"]["height"])
    kps = depth_walk(args.frames, far=1300, close=1800, h_far=800, h_close=1150, x=540)
    print(f"labels_train, {args.frames} frames, best of {args.repeat}; serial = 1 worker, parallel = {workers} workers")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        poses = write_pose_table(root / "target.parquet", kps, 1080, 1920)
        for w, h in (demo, (512, 512)):
            frames = write_frames_dir(root / f"frames_{w}x{h}", kps, 1080, 1920, width=w, height=h)
            serial = _rate(poses, frames, root / "out", 1, args.repeat)
            parallel = _rate(poses, frames, root / "out", workers, args.repeat)
            print(f"{w}x{h}: serial {serial:8.1f} labels/s | parallel {parallel:8.1f} labels/s | "
                  f"ratio {parallel / serial:.2f}x")


if __name__ == "__main__":
    main()

"""Render speed and where the time goes, against the generator alone as the anchor.

For each size (the demo training size from params.yaml ``frames`` and 512×512) the
benchmark builds the generator the ``train`` params describe (untrained weights cost
the same as trained ones) and a fresh face refiner, writes synthetic stick-figure
labels and a source pose table, and measures in the same run:

* **anchor**: the generator alone — the same sequential recurrence on label tensors
  already in memory, nothing else;
* **render**: :func:`dancepipe.output.render.render_transfer` end to end — label PNG reading
  (prefetch thread), generator, face refinement, H.264 encoding of the transfer and
  the side-by-side videos (encoder thread) with the demo source's audio remuxed.

Anchor and render runs alternate ``--repeats`` times and medians are reported, since
the machine may be shared. It prints frames/s of both, their ratio, and the share of
render wall time *not* explained by the generator (1 − anchor time / render time; goal
≤ 25 %), plus the in-render breakdown as shares of render wall time: generator, face,
main thread waiting for inputs, main thread waiting for the encoder queue, and the
encoder thread's busy time (overlapped with the rest).
Run: ``python -m benchmarks.bench_render [--device cuda]``.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from pathlib import Path

import click
import numpy as np
import torch

from dancepipe.assets import fetch_asset
from dancepipe.config import load_config
from dancepipe.hardware.devices import resolve_device
from dancepipe.model.face_networks import FaceGenerator, FaceRefiner
from dancepipe.model.networks import GeneratorArch, build_generator, init_weights
from dancepipe.output.render import generate_sequence, render_transfer
from dancepipe.video.images import read_rgb


def _write_inputs(root: Path, n: int, width: int, height: int, source: Path) -> tuple[Path, Path]:
    """Labels (PNG + index with face boxes) for ``n`` frames and a pose table for ``source``.

    The pose table gives the side-by-side a subject box in every source frame (a box
    drifting across the picture), so the source panel is cropped as in a real render.
    """
    import cv2
    import pandas as pd

    from dancepipe.video.decode import probe

    labels = root / "labels"
    labels.mkdir()
    face = max(16, int(round(height / 6 / 8)) * 8)
    rows = []
    for i in range(n):
        img = np.zeros((height, width, 3), np.uint8)
        cx = int(width * (0.5 + 0.15 * np.sin(i / 5)))
        pts = [(cx, int(height * y)) for y in (0.1, 0.3, 0.55, 0.9)]
        for a, b in zip(pts, pts[1:], strict=False):
            cv2.line(img, a, b, (255, 80, 40), max(2, height // 50))
        cv2.line(img, (cx - width // 5, int(height * 0.35)), (cx + width // 5, int(height * 0.35)), (40, 200, 255), 3)
        cv2.imwrite(str(labels / f"{i:06d}.png"), img)
        x0 = int(np.clip(cx - face // 2, 0, width - face))
        y0 = int(np.clip(int(height * 0.1) - face // 2, 0, height - face))
        rows.append({"frame": i, "file": f"{i:06d}.png", "timestamp": i / 30, "person_found": True,
                     "face_x0": x0, "face_y0": y0, "face_size": face, "face_ok": True})
    pd.DataFrame(rows).to_parquet(labels / "index.parquet", index=False)
    info = probe(source)
    m = max(n, info.frame_count)
    t = np.arange(m)
    cx = info.width * (0.3 + 0.4 * t / max(m - 1, 1))
    bh = 0.4 * info.height
    poses = pd.DataFrame({"frame": t, "person_found": True, "box_x0": cx - bh / 4, "box_y0": 0.3 * info.height,
                          "box_x1": cx + bh / 4, "box_y1": 0.3 * info.height + bh})
    poses.to_parquet(root / "poses.parquet", index=False)
    return labels, root / "poses.parquet"


def _build(params: str, device: torch.device, face_size: int) -> tuple[torch.nn.Module, FaceRefiner]:
    train = load_config("train", params)
    arch = GeneratorArch(ngf=train.ngf, n_downsample=train.n_downsample, n_blocks=train.n_blocks,
                         local_enhancer=train.local_enhancer)
    torch.manual_seed(0)
    g = build_generator(arch)
    init_weights(g)
    face_cfg = load_config("train_face", params)
    face = FaceRefiner(FaceGenerator(ngf=face_cfg.ngf, n_blocks=face_cfg.n_blocks), face_size, device)
    return g.to(device).eval(), face


def _anchor(g: torch.nn.Module, images: list[np.ndarray], device: torch.device) -> float:
    """Seconds for the generator alone: the same recurrence on tensors already on ``device``."""
    with torch.inference_mode():
        tensors = [torch.from_numpy(im).permute(2, 0, 1)[None].float().div(127.5).sub(1).to(device) for im in images]
        prev = None
        t0 = time.perf_counter()
        for x in tensors:
            prev = g(x, torch.zeros_like(x) if prev is None else prev)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0


def bench_size(width: int, height: int, n: int, params: str, device: torch.device, source: Path,
               repeats: int) -> dict:
    """Alternate anchor and render runs ``repeats`` times; report medians (the machine is shared)."""
    with tempfile.TemporaryDirectory(prefix="bench-render-") as tmp:
        root = Path(tmp)
        labels, poses = _write_inputs(root, n, width, height, source)
        import pandas as pd

        face_size = int(pd.read_parquet(labels / "index.parquet")["face_size"].iloc[0])
        g, face = _build(params, device, face_size)
        images = [read_rgb(labels / f"{i:06d}.png") for i in range(n)]
        for _ in generate_sequence(g, images[:2], device=device):  # warm-up
            pass
        anchors, runs = [], []
        for _ in range(repeats):
            anchors.append(_anchor(g, images, device))
            runs.append(render_transfer(
                g, labels_dir=labels, source_video=source, out=root / "t.mp4", side_by_side_out=root / "s.mp4",
                source_poses=poses, face=face, device=device, crf=18, preset="medium",
            ).timing)
    anchor = statistics.median(anchors)
    t = sorted(runs, key=lambda r: r.total)[len(runs) // 2]
    return {"size": f"{width}x{height}", "frames": n, "anchor_fps": n / anchor, "render_fps": n / t.total,
            "ratio": anchor / t.total, "outside": 1 - anchor / t.total, "gen": t.generator / t.total,
            "face": t.face / t.total, "wait_in": t.wait_input / t.total, "wait_enc": t.wait_encode / t.total,
            "encode_busy": t.encode_thread / t.total}


@click.command()
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--params", default="params.yaml", show_default=True, help="params file for the model sizes.")
@click.option("--frames-demo", default=200, show_default=True,
              help="frames rendered at the demo size (about a demo clip, so setup costs are amortised as in a real render).")
@click.option("--frames-512", default=24, show_default=True, help="frames rendered at 512x512.")
@click.option("--threads", default=1, show_default=True, help="torch CPU threads (1 is fastest on a shared 2-core box).")
@click.option("--repeats", default=3, show_default=True, help="alternating anchor/render runs; medians reported.")
def main(device: str, params: str, frames_demo: int, frames_512: int, threads: int, repeats: int) -> None:
    """Print render frames/s vs the generator alone, and the share of time outside the generator."""
    logging.getLogger("dancepipe").setLevel(logging.ERROR)  # the synthetic labels do not match the clip length
    torch.set_num_threads(threads)
    dev = resolve_device(device)
    fr = load_config("frames", params)
    source = fetch_asset("sports2d")
    click.echo(f"device {dev}, torch threads {threads}, source audio from {source.name}")
    click.echo(f"{'size':>9} {'frames':>6} {'anchor f/s':>10} {'render f/s':>10} {'ratio':>6} "
               f"{'outside G':>9} {'in G':>6} {'face':>6} {'wait in':>7} {'wait enc':>8} {'enc busy':>8}")
    for (w, h), n in (((fr.width, fr.height), frames_demo), ((512, 512), frames_512)):
        r = bench_size(w, h, n, params, dev, source, repeats)
        click.echo(f"{r['size']:>9} {r['frames']:>6} {r['anchor_fps']:>10.1f} {r['render_fps']:>10.1f} "
                   f"{r['ratio']:>6.2f} {r['outside']:>9.0%} {r['gen']:>6.0%} {r['face']:>6.0%} "
                   f"{r['wait_in']:>7.0%} {r['wait_enc']:>8.0%} {r['encode_busy']:>8.0%}")
    click.echo("ratio = render f/s / anchor f/s; outside G = 1 - ratio (goal <= 25%); "
               "enc busy = encoder thread busy time / render wall time (overlapped).")


if __name__ == "__main__":
    main()

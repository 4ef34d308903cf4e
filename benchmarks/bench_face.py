"""Face refinement cost per rendered frame, relative to the main generator's forward pass.

Rendering runs the main generator once per frame (batch 1, conditioned on the previous
output) and then the face step: crop the label and the generated frame, run the face
generator, paste the refined crop back. This benchmark times both on the same device
in the same run with the architectures from params.yaml (``train``, ``train_face``,
``frames`` size and ``labels.draw.face_box_fraction``) and prints the ratio
``face step / main forward``. ``--scale paper`` uses the paper's 512x1024 frames and
pix2pixHD widths instead.

    python -m benchmarks.bench_face                    # CPU, the demo defaults
    python -m benchmarks.bench_face --device cuda      # on a GPU
    python -m benchmarks.bench_face --scale paper --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from dancepipe.config import load_params
from dancepipe.model.face_networks import FaceGenerator, FaceRefiner
from dancepipe.model.networks import GeneratorArch, build_generator, init_weights
from dancepipe.transfer.facebox import face_box_size


def _time_pair(a: Callable[[], object], b: Callable[[], object], repeats: int,
               device: torch.device) -> tuple[float, float]:
    """Median seconds per call of ``a`` and ``b``, interleaved (a, b, a, b, ...) so load
    from other processes hits both alike; two warm-up rounds first."""
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(repeats + 2):
        for fn, out in ((a, times[0]), (b, times[1])):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= 2:
                out.append(time.perf_counter() - t)
    return statistics.median(times[0]), statistics.median(times[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--scale", choices=["demo", "paper"], default="demo",
                    help="demo: params.yaml sizes; paper: 512x1024 frames, pix2pixHD widths")
    ap.add_argument("--repeats", type=int, default=20, help="timed calls per measurement (median)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    p = load_params(args.params)
    if args.scale == "demo":
        tr, fc = p["train"], p["train_face"]
        width, height = p["frames"]["width"], p["frames"]["height"]
        g_arch = GeneratorArch(ngf=tr["ngf"], n_downsample=tr["n_downsample"], n_blocks=tr["n_blocks"],
                               local_enhancer=tr["local_enhancer"])
        f_arch = dict(ngf=fc["ngf"], n_downsample=fc.get("n_downsample", 2), n_blocks=fc["n_blocks"])
    else:
        width, height = 512, 1024
        g_arch = GeneratorArch(ngf=64, n_downsample=4, n_blocks=9)
        f_arch = dict(ngf=32, n_downsample=2, n_blocks=4)
    size = face_box_size(height, p["labels"]["draw"]["face_box_fraction"])

    torch.manual_seed(0)
    gen = build_generator(g_arch)
    init_weights(gen)
    gen = gen.to(device).eval()
    face = FaceGenerator(**f_arch)
    with torch.no_grad():  # a trained-looking head, so the paste really changes pixels
        face.out[1].weight.normal_(0, 0.02)
    refiner = FaceRefiner(face, crop_size=size, device=device)

    label = torch.rand(1, 3, height, width, device=device) * 2 - 1
    prev = torch.zeros_like(label)
    box = [((width - size) // 2, height // 10, size)]
    with torch.inference_mode():
        image = gen(label, prev)
        t_main, t_face = _time_pair(lambda: gen(label, prev), lambda: refiner.refine(label, image, box),
                                    args.repeats, device)

    n_main = sum(q.numel() for q in gen.parameters())
    n_face = sum(q.numel() for q in face.parameters())
    print(f"device {device}, {args.threads} CPU threads, scale {args.scale}: frames {width}x{height}, "
          f"face crop {size}x{size}")
    print(f"main generator forward  {t_main * 1e3:9.2f} ms/frame  ({n_main / 1e6:.2f} M params)")
    print(f"face refinement         {t_face * 1e3:9.2f} ms/frame  ({n_face / 1e6:.3f} M params)")
    print(f"ratio face / main       {t_face / t_main:9.3f}")


if __name__ == "__main__":
    main()

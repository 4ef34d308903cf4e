"""Training throughput: our loop vs a plain fp32 reference loop, in the same run.

Both loops train the same architecture with the same losses on the same batches:

* **ours** — :class:`dancepipe.model.train.Trainer` fed by :class:`dancepipe.model.dataset.PairBatches`
  through :func:`dancepipe.model.dataset.make_loader`, with the speed switches resolved for the
  device exactly as the train stage does (``auto``: bf16 autocast, channels_last, pinned
  memory and loader workers on CUDA; nothing extra on CPU). It also freezes D during the
  generator pass, where the real pair's D features and perceptual features are computed
  without a graph (they are constants of the generator loss), and scores real and fake
  pairs in one batched D call in the discriminator update.
* **reference** — the textbook pix2pixHD step written plainly: fp32, contiguous tensors,
  batches gathered synchronously (no prefetch), separate D calls for real and fake, the
  generator loss back-propagated into D as well (its gradients then zeroed), no TF32.

Timed steps alternate between the loops in rounds so load from other processes hits both
alike; the median images/s (generated frames per second) of each is reported with the
ratio. On CUDA the peak GPU memory of each loop is printed too.

    python -m benchmarks.bench_train                      # CPU, demo-sized 128x192
    python -m benchmarks.bench_train --device cuda --height 512 --width 256 --batch-size 4
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from dancepipe.config import load_params
from dancepipe.model.dataset import PairBatches, TrainingData, batch_indices, make_loader, to_model_range
from dancepipe.model.features import build_feature_net
from dancepipe.model.losses import PerceptualLoss, build_gan_loss, feature_matching
from dancepipe.model.networks import Generator, MultiscaleDiscriminator, init_weights, temporal_pair
from dancepipe.model.train import TrainConfig, Trainer, configure_backends, resolve_switches


def synthetic_data(n: int, height: int, width: int, seed: int = 0) -> TrainingData:
    """Random uint8 frames/labels (content does not change the cost of a step)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 256, (n, 3, height, width), dtype=torch.uint8, generator=g)
    images = torch.randint(0, 256, (n, 3, height, width), dtype=torch.uint8, generator=g)
    return TrainingData(frames=list(range(n)), labels=labels, images=images, n_train=n,
                        pairs=np.arange(n - 1), fingerprint="synthetic")


class ReferenceLoop:
    """A plain fp32 pix2pixHD temporal step with the same networks and losses."""

    def __init__(self, cfg: TrainConfig, device: torch.device, feature_net: torch.nn.Module | None) -> None:
        torch.manual_seed(cfg.seed)
        self.cfg, self.device = cfg, device
        self.g = Generator(cfg.generator_arch()).to(device)
        self.d = MultiscaleDiscriminator(cfg.discriminator_arch()).to(device)
        init_weights(self.g)
        init_weights(self.d)
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self.gan = build_gan_loss(cfg.gan_loss)
        self.perc = PerceptualLoss(feature_net) if feature_net is not None and cfg.lambda_perceptual else None

    def step(self, data: TrainingData, step: int) -> None:
        cfg = self.cfg
        rows = torch.from_numpy(data.pairs[batch_indices(step, cfg.batch_size, len(data.pairs), cfg.seed)])
        lt, lt1, rt, rt1 = (x.to(self.device).float() / 127.5 - 1 for x in (
            data.labels[rows], data.labels[rows + 1], data.images[rows], data.images[rows + 1]))
        ft = self.g(lt, torch.zeros_like(lt))
        ft1 = self.g(lt1, ft)
        real = temporal_pair(lt, lt1, rt, rt1)
        fake = temporal_pair(lt, lt1, ft, ft1)
        d_fake_g = self.d(fake)
        d_real = self.d(real)
        loss_g = (self.gan.g_loss(d_fake_g) + cfg.lambda_feat * feature_matching(d_fake_g, d_real)
                  + cfg.lambda_l1 * (F.l1_loss(ft, rt) + F.l1_loss(ft1, rt1)))
        if self.perc is not None:
            loss_g = loss_g + cfg.lambda_perceptual * self.perc(torch.cat([ft, ft1]), torch.cat([rt, rt1]))
        self.opt_g.zero_grad()
        loss_g.backward()
        self.opt_g.step()
        d_fake = self.d(fake.detach())
        d_real = self.d(real)
        loss_d = self.gan.d_loss(d_real, d_fake)
        self.opt_d.zero_grad()
        loss_d.backward()
        self.opt_d.step()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_ours(cfg: TrainConfig, data: TrainingData, device: torch.device, feature_net, total_steps: int
              ) -> Callable[[int], None]:
    switches = resolve_switches(cfg, device)
    trainer = Trainer(cfg, device, switches, feature_net)
    loader = iter(make_loader(PairBatches(data, 0, total_steps, cfg.batch_size, cfg.seed),
                              switches.workers, switches.pin_memory))

    def run(n: int) -> None:
        configure_backends(device, fast=True)
        for _ in range(n):
            batch = next(loader)
            trainer.train_step(*(to_model_range(x, device, switches.memory_format) for x in batch))

    print(f"ours: {switches}")
    return run


def make_reference(cfg: TrainConfig, data: TrainingData, device: torch.device, feature_net) -> Callable[[int], None]:
    ref = ReferenceLoop(cfg, device, feature_net)
    counter = iter(range(10**9))

    def run(n: int) -> None:
        configure_backends(device, fast=False)
        for _ in range(n):
            ref.step(data, next(counter))

    return run


def measure(run: Callable[[int], None], steps: int, device: torch.device) -> float:
    _sync(device)
    t = time.perf_counter()
    run(steps)
    _sync(device)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--height", type=int, default=None, help="image height (default: frames.height)")
    ap.add_argument("--width", type=int, default=None, help="image width (default: frames.width)")
    ap.add_argument("--batch-size", type=int, default=None, help="pairs per step (default: train.batch_size)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per loop per round")
    ap.add_argument("--rounds", type=int, default=3, help="alternating measurement rounds")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per loop first")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a train param, e.g. --set ngf=64 --set feature_net=none")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    params = load_params("params.yaml")
    values = dict(params["train"])
    for item in args.overrides:
        key, _, raw = item.partition("=")
        values[key] = raw
    if args.batch_size:
        values["batch_size"] = args.batch_size
    cfg = TrainConfig(**values)
    h = args.height or params["frames"]["height"]
    w = args.width or params["frames"]["width"]
    device = torch.device(args.device)
    data = synthetic_data(32, h, w)
    feature_net = build_feature_net(cfg.feature_net, device)
    print(f"device {device}, {w}x{h}, batch {cfg.batch_size} pairs, ngf {cfg.ngf}, n_blocks {cfg.n_blocks}, "
          f"num_d {cfg.num_d}, feature_net {cfg.feature_net}, torch threads {torch.get_num_threads()}")
    total = args.warmup + args.steps * args.rounds
    loops = {"ours": make_ours(cfg, data, device, feature_net, total),
             "reference": make_reference(cfg, data, device, feature_net)}
    peak: dict[str, float] = {}
    for name, run in loops.items():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        run(args.warmup)
        if device.type == "cuda":
            peak[name] = torch.cuda.max_memory_allocated(device) / 2**20
    rates: dict[str, list[float]] = {k: [] for k in loops}
    images = 2 * cfg.batch_size * args.steps
    for r in range(args.rounds):
        order = list(loops) if r % 2 == 0 else list(loops)[::-1]
        for name in order:
            rates[name].append(images / measure(loops[name], args.steps, device))
    ours, ref = statistics.median(rates["ours"]), statistics.median(rates["reference"])
    for name, values_ in rates.items():
        mem = f", peak GPU memory {peak[name]:.0f} MiB" if name in peak else ""
        print(f"{name:>9}: {statistics.median(values_):7.2f} images/s (rounds: "
              f"{', '.join(f'{v:.2f}' for v in values_)}){mem}")
    print(f"ratio ours/reference: {ours / ref:.2f}x")


if __name__ == "__main__":
    main()

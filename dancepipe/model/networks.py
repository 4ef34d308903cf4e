"""pix2pixHD networks with the temporal conditioning of "Everybody Dance Now".

* :class:`GlobalGenerator` — reflection pad + 7x7 conv, ``n_downsample`` strided
  3x3 convs, ``n_blocks`` residual blocks, as many transposed convs, 7x7 conv + tanh.
* :class:`LocalEnhancer` — pix2pixHD's coarse-to-fine generator: a global generator
  (twice as wide) runs on the input downsampled by 2, and its last feature map is added
  to a full-resolution local branch before that branch's residual blocks.
* :class:`Generator` — the module everybody else uses: ``forward(label, prev)`` with two
  (B, 3, H, W) tensors in [-1, 1] (``prev`` is the previous generated frame, zeros for
  the first one) returning (B, 3, H, W) in [-1, 1]. With ``temporal=False`` (pix2pixHD
  frame by frame, the paper's FBF ablation) the network's input is the label alone and
  ``prev`` is ignored, so every caller works unchanged.
* :class:`MultiscaleDiscriminator` — ``num_d`` PatchGANs on the input at successively
  halved resolutions; each returns all its intermediate feature maps so the generator
  can be trained with discriminator feature matching.

Normalisation is instance norm without affine parameters (as pix2pixHD). Convolutions
directly followed by instance norm carry no bias: the norm would cancel it, leaving a
parameter that never receives a gradient.

The architecture is described by plain dicts (:class:`GeneratorArch`,
:class:`DiscriminatorArch` ``.to_dict()``) so checkpoints can rebuild a network without
pickled classes or the current params.yaml.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dancepipe.errors import DancepipeError
from dancepipe.hardware.precision import autocast


@dataclasses.dataclass(frozen=True)
class GeneratorArch:
    """Everything needed to rebuild a generator (stored in checkpoints)."""

    ngf: int = 64
    n_downsample: int = 4
    n_blocks: int = 9
    local_enhancer: bool = False
    n_blocks_local: int = 3
    label_channels: int = 3
    image_channels: int = 3
    temporal: bool = True  # False: no previous frame in the input (checkpoints without the key are temporal)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GeneratorArch:
        return _arch_from_dict(cls, d, "generator")

    @property
    def multiple(self) -> int:
        """Image height and width must be divisible by this."""
        return 2 ** (self.n_downsample + (1 if self.local_enhancer else 0))


@dataclasses.dataclass(frozen=True)
class DiscriminatorArch:
    """Multi-scale PatchGAN description; ``in_channels`` = 2 labels + 2 images = 12 (temporal),
    or 1 label + 1 image = 6 (frame by frame)."""

    ndf: int = 64
    n_layers: int = 3
    num_d: int = 3
    in_channels: int = 12

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DiscriminatorArch:
        return _arch_from_dict(cls, d, "discriminator")


def _arch_from_dict(cls: type, d: dict[str, Any], what: str) -> Any:
    """Rebuild an arch dataclass from its stored dict; unknown keys are an error naming them."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise DancepipeError(f"{what} arch has unknown keys {unknown}; expected {sorted(names)}")
    return cls(**d)


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=False)


class ResnetBlock(nn.Module):
    """x + (pad, conv3x3, IN, ReLU, pad, conv3x3, IN)(x)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=False), _norm(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=False), _norm(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _down(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), _norm(cout), nn.ReLU(True)]


def _up(cin: int, cout: int) -> list[nn.Module]:
    return [
        nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1, bias=False),
        _norm(cout), nn.ReLU(True),
    ]


def _head(cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(cout, 3, 7), nn.Tanh())


class GlobalGenerator(nn.Module):
    """pix2pixHD global generator on a (B, in_ch, H, W) input.

    ``features`` (B, ngf, H, W) is the last feature map before the output head; the
    local enhancer taps it, so the head is a separate submodule.
    """

    def __init__(self, in_ch: int, ngf: int, n_downsample: int, n_blocks: int, with_head: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3), nn.Conv2d(in_ch, ngf, 7, bias=False), _norm(ngf), nn.ReLU(True),
        ]
        for i in range(n_downsample):
            layers += _down(ngf * 2**i, ngf * 2 ** (i + 1))
        width = ngf * 2**n_downsample
        layers += [ResnetBlock(width) for _ in range(n_blocks)]
        for i in range(n_downsample, 0, -1):
            layers += _up(ngf * 2**i, ngf * 2 ** (i - 1))
        self.features = nn.Sequential(*layers)
        self.head = _head(ngf) if with_head else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return f if self.head is None else self.head(f)


class LocalEnhancer(nn.Module):
    """pix2pixHD local enhancer: global G (width 2·ngf) at half resolution + local branch."""

    def __init__(self, in_ch: int, ngf: int, n_downsample: int, n_blocks: int, n_blocks_local: int) -> None:
        super().__init__()
        self.global_g = GlobalGenerator(in_ch, ngf * 2, n_downsample, n_blocks, with_head=False)
        self.local_down = nn.Sequential(
            nn.ReflectionPad2d(3), nn.Conv2d(in_ch, ngf, 7, bias=False), _norm(ngf), nn.ReLU(True),
            *_down(ngf, ngf * 2),
        )
        self.local_up = nn.Sequential(
            *[ResnetBlock(ngf * 2) for _ in range(n_blocks_local)], *_up(ngf * 2, ngf),
        )
        self.head = _head(ngf)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coarse = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
        g = self.global_g(coarse)  # (B, 2·ngf, H/2, W/2)
        return self.head(self.local_up(self.local_down(x) + g))


class Generator(nn.Module):
    """The generator: ``forward(label, prev) -> image``, all (B, 3, H, W) in [-1, 1].

    ``prev`` is only read when ``arch.temporal``; a frame-by-frame generator accepts and
    ignores it (None is fine too).
    """

    def __init__(self, arch: GeneratorArch) -> None:
        super().__init__()
        self.arch = arch
        in_ch = arch.label_channels + (arch.image_channels if arch.temporal else 0)
        if arch.local_enhancer:
            self.net: nn.Module = LocalEnhancer(in_ch, arch.ngf, arch.n_downsample, arch.n_blocks, arch.n_blocks_local)
        else:
            self.net = GlobalGenerator(in_ch, arch.ngf, arch.n_downsample, arch.n_blocks)

    def forward(self, label: torch.Tensor, prev: torch.Tensor | None = None) -> torch.Tensor:
        m = self.arch.multiple
        h, w = label.shape[-2:]
        if h % m or w % m:
            raise DancepipeError(
                f"image size {w}x{h} is not a multiple of {m} (required by n_downsample="
                f"{self.arch.n_downsample}{' and the local enhancer' if self.arch.local_enhancer else ''})"
            )
        if not self.arch.temporal:
            return self.net(label)
        if prev is None:
            raise ValueError("a temporal generator needs the previous frame (zeros for the first)")
        return self.net(torch.cat([label, prev], dim=1))


class PairGenerator(nn.Module):
    """Training wrapper: generate two consecutive frames in one forward.

    Frame t comes from (label_t, zeros), frame t+1 from (label_t+1, generated frame t).
    The generated frame t is *not* detached: as in the official implementation the
    temporal loss on frame t+1 also shapes frame t. One forward per step keeps
    DistributedDataParallel to one reduction per backward. A frame-by-frame generator
    makes the two frames independently (it ignores the previous frame).
    """

    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, label_t: torch.Tensor, label_t1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fake_t = next_frame(self.generator, label_t, None)
        fake_t1 = next_frame(self.generator, label_t1, fake_t)
        return fake_t, fake_t1


class NLayerDiscriminator(nn.Module):
    """pix2pixHD PatchGAN (4x4 convs, padding 2) returning every intermediate feature map."""

    def __init__(self, in_ch: int, ndf: int, n_layers: int) -> None:
        super().__init__()
        k, p = 4, 2
        blocks: list[nn.Sequential] = [
            nn.Sequential(nn.Conv2d(in_ch, ndf, k, stride=2, padding=p), nn.LeakyReLU(0.2, True))
        ]
        nf = ndf
        for n in range(1, n_layers + 1):
            prev, nf = nf, min(nf * 2, 512)
            stride = 2 if n < n_layers else 1
            blocks.append(nn.Sequential(
                nn.Conv2d(prev, nf, k, stride=stride, padding=p, bias=False), _norm(nf), nn.LeakyReLU(0.2, True),
            ))
        blocks.append(nn.Sequential(nn.Conv2d(nf, 1, k, stride=1, padding=p)))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return feats  # last entry = (B, 1, h, w) patch scores


class MultiscaleDiscriminator(nn.Module):
    """``num_d`` PatchGANs at full, 1/2, 1/4 … resolution.

    Input: (B, 12, H, W) = cat(label_t, label_t+1, image_t, image_t+1). Output: one list
    of feature maps per scale (finest first), the last map of each being the scores.
    """

    def __init__(self, arch: DiscriminatorArch) -> None:
        super().__init__()
        self.arch = arch
        self.scales = nn.ModuleList(
            NLayerDiscriminator(arch.in_channels, arch.ndf, arch.n_layers) for _ in range(arch.num_d)
        )

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        outs = []
        for i, d in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outs.append(d(x))
        return outs


def temporal_pair(label_t: torch.Tensor, label_t1: torch.Tensor, image_t: torch.Tensor,
                  image_t1: torch.Tensor) -> torch.Tensor:
    """The discriminator's input: (B, 12, H, W) = labels of both frames, then both images."""
    return torch.cat([label_t, label_t1, image_t, image_t1], dim=1)


def single_pairs(label_t: torch.Tensor, label_t1: torch.Tensor, image_t: torch.Tensor,
                 image_t1: torch.Tensor) -> torch.Tensor:
    """Frame-by-frame discriminator input: (2B, 6, H, W), each frame's (label, image) on its own."""
    return torch.cat([torch.cat([label_t, image_t], dim=1), torch.cat([label_t1, image_t1], dim=1)], dim=0)


def discriminator_input(temporal: bool):
    """:func:`temporal_pair` or :func:`single_pairs`: what the discriminator of that kind sees."""
    return temporal_pair if temporal else single_pairs


def to_model(images: np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 RGB images (H, W, 3) or (N, H, W, 3) → float (N, 3, H, W) in [-1, 1] (on ``device``)."""
    a = np.ascontiguousarray(images)
    t = torch.from_numpy(a[None] if a.ndim == 3 else a)
    if device is not None:
        t = t.to(device)
    return t.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float (N, 3, H, W) in [-1, 1] → uint8 RGB (N, H, W, 3) on the CPU (values clamped, rounded)."""
    x = images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def next_frame(generator: nn.Module, label: torch.Tensor, prev: torch.Tensor | None,
               precision: str = "fp32") -> torch.Tensor:
    """One step of the recurrence: G's frame for ``label`` given its own previous output.

    ``prev`` is None at the first frame of a sequence, which then starts from zeros, as
    in training. Every caller that runs G over a sequence (training samples, face crop
    collection, render, evaluate) steps through this, so they all condition alike.
    With ``precision`` bf16 or fp16 (:func:`dancepipe.hardware.precision.choose_precision`)
    G runs under that autocast (as it trains with ``train.amp``); the frame comes back as
    float32 either way, so the recurrence and everything after it see one dtype; bf16
    differs from fp32 by rounding only (tests/test_networks.py bounds a step fed its own output).
    """
    x = torch.zeros_like(label) if prev is None else prev
    if precision == "fp32":
        return generator(label, x)
    with autocast(label.device, precision):
        return generator(label, x).float()


@torch.no_grad()
def generate_frames(generator: nn.Module, labels: torch.Tensor, device: torch.device,
                    precision: str = "fp32") -> torch.Tensor:
    """G over uint8 labels (N, 3, H, W) in order, each frame conditioned on the previous one → uint8 (N, 3, H, W).

    The in-memory form for training-time samples and metrics; render streams frames
    through :class:`dancepipe.output.render.Recurrence` instead. ``precision``: see :func:`next_frame`.
    """
    was_training = generator.training
    generator.eval()
    out, prev = [], None
    for i in range(len(labels)):
        prev = next_frame(generator, labels[i:i + 1].to(device).float() / 127.5 - 1, prev, precision)
        out.append(((prev.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu())
    generator.train(was_training)
    return torch.cat(out)


def build_generator(arch: GeneratorArch | dict[str, Any]) -> Generator:
    """A fresh generator from an arch (or its dict form, as stored in checkpoints)."""
    return Generator(arch if isinstance(arch, GeneratorArch) else GeneratorArch.from_dict(arch))


def build_discriminator(arch: DiscriminatorArch | dict[str, Any]) -> MultiscaleDiscriminator:
    """A fresh multi-scale discriminator from an arch or its dict form."""
    return MultiscaleDiscriminator(arch if isinstance(arch, DiscriminatorArch) else DiscriminatorArch.from_dict(arch))


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """pix2pixHD initialisation: conv weights ~ N(0, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

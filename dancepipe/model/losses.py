"""Losses: adversarial (registry), discriminator feature matching, perceptual, L1.

Discriminator outputs are lists (one per scale) of lists of feature maps whose last
entry is the patch score map, as returned by
:class:`dancepipe.model.networks.MultiscaleDiscriminator`. All losses are means over the
batch, so the average of per-rank losses under DDP equals the loss of the whole global
batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dancepipe.errors import DancepipeError

DOut = Sequence[Sequence[torch.Tensor]]


class GANLoss(ABC):
    """Adversarial loss on multi-scale patch scores (averaged over scales)."""

    @abstractmethod
    def d_loss(self, real: DOut, fake: DOut) -> torch.Tensor:
        """Discriminator loss: real scored as real, fake as fake."""

    @abstractmethod
    def g_loss(self, fake: DOut) -> torch.Tensor:
        """Generator loss: fake scored as real."""


class LSGANLoss(GANLoss):
    """Least squares (pix2pixHD's default): D → 1 on real, 0 on fake."""

    def d_loss(self, real: DOut, fake: DOut) -> torch.Tensor:
        terms = [0.5 * (F.mse_loss(r[-1].float(), torch.ones_like(r[-1].float()))
                        + F.mse_loss(f[-1].float(), torch.zeros_like(f[-1].float())))
                 for r, f in zip(real, fake, strict=True)]
        return torch.stack(terms).mean()

    def g_loss(self, fake: DOut) -> torch.Tensor:
        return torch.stack([F.mse_loss(f[-1].float(), torch.ones_like(f[-1].float())) for f in fake]).mean()


class HingeLoss(GANLoss):
    """Hinge: D minimises relu(1 - D(real)) + relu(1 + D(fake)); G maximises D(fake)."""

    def d_loss(self, real: DOut, fake: DOut) -> torch.Tensor:
        terms = [0.5 * (F.relu(1 - r[-1].float()).mean() + F.relu(1 + f[-1].float()).mean())
                 for r, f in zip(real, fake, strict=True)]
        return torch.stack(terms).mean()

    def g_loss(self, fake: DOut) -> torch.Tensor:
        return torch.stack([-f[-1].float().mean() for f in fake]).mean()


GAN_LOSSES: dict[str, type[GANLoss]] = {"lsgan": LSGANLoss, "hinge": HingeLoss}


def build_gan_loss(name: str) -> GANLoss:
    """The adversarial loss called ``name`` (see :data:`GAN_LOSSES`)."""
    try:
        return GAN_LOSSES[name]()
    except KeyError as e:
        raise DancepipeError(f"train.gan_loss = {name!r} is unknown; choose one of {', '.join(GAN_LOSSES)}") from e


def feature_matching(fake: DOut, real: DOut) -> torch.Tensor:
    """pix2pixHD feature matching: L1 between D's intermediate maps on fake and real.

    Real maps are constants (detached). Each scale's layers are weighted 4/(n_layers+1)
    and scales averaged, as in pix2pixHD.
    """
    total = fake[0][0].new_zeros((), dtype=torch.float32)
    num_d = len(fake)
    for f_scale, r_scale in zip(fake, real, strict=True):
        n = len(f_scale) - 1  # every map but the scores
        for f, r in zip(f_scale[:-1], r_scale[:-1], strict=True):
            total = total + (4.0 / n) / num_d * F.l1_loss(f.float(), r.detach().float())
    return total


class PerceptualLoss(nn.Module):
    """Weighted L1 between feature maps of a frozen network (see :mod:`dancepipe.model.features`)."""

    def __init__(self, feature_net: nn.Module) -> None:
        super().__init__()
        self.net = feature_net

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        # The real images' features are constants: computed without a graph, so the backward
        # pass runs through the fake half only (one batched pass over both would also compute
        # input gradients for the real half, which nothing uses).
        fake_feats = self.net(fake)
        with torch.no_grad():
            real_feats = self.net(real)
        total = fake.new_zeros((), dtype=torch.float32)
        for w, f, r in zip(self.net.layer_weights, fake_feats, real_feats, strict=True):
            total = total + w * F.l1_loss(f.float(), r.float())
        return total

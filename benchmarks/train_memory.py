"""Training memory of a generator recipe, computed without running it (no GPU, no weights).

:func:`estimate` builds the recipe's generator, multi-scale discriminator and perceptual
feature network on PyTorch's ``meta`` device (shapes and dtypes only, nothing allocated),
runs the forward pass of one generator update the way
:meth:`dancepipe.model.train.Trainer.train_step` does (the frame pair through G, D on the
generated pair, D and the feature net on the real pair without a graph, the losses), and
adds up the tensors autograd saves for the backward pass, once per storage. That forward
holds the step's peak: the discriminator update afterwards sees only detached frames.

What a step needs, in bytes (``Memory``):

* ``state`` — fp32 weights, gradients and Adam's two moments of G and D (16 bytes a
  parameter), G's weight average (4), the frozen feature net (4), and under bf16/fp16
  autocast the cached half-precision weight copies (2 a parameter of all three);
* ``activations`` — what the generator update saves for its backward at this batch, at
  fp32 or at 2 bytes (bf16 and fp16 are the same size: the networks run in that dtype);
* ``backward`` — twice the largest saved tensor: the gradient buffers alive at once
  while the backward pass walks the graph.

``total`` is their sum. It leaves out the CUDA context (about 0.5 GiB), cuDNN's
workspaces and the caching allocator's slack, so leave 10-20 % of a card free. These are
the figures ``make paper-check`` prints and docs/train.md marks "computed".
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from dancepipe.model.losses import PerceptualLoss, build_gan_loss, feature_matching
from dancepipe.model.networks import Generator, MultiscaleDiscriminator, PairGenerator, discriminator_input
from dancepipe.model.train import TrainConfig

GiB = 2**30
_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclasses.dataclass(frozen=True)
class Memory:
    """Computed memory of one training step (bytes) and the parameter counts behind it."""

    params_g: int
    params_d: int
    params_f: int
    state: int
    activations: int
    backward: int

    @property
    def total(self) -> int:
        return self.state + self.activations + self.backward


def vgg19_meta() -> nn.Module:
    """The ``vgg19`` feature net's structure (torchvision's VGG19, untrained: no download)."""
    from torchvision.models import vgg19

    from dancepipe.model.features import VGG19Features

    with torch.device("meta"):
        return VGG19Features(vgg19(weights=None).features).freeze()


def _count(modules: Iterable[nn.Module | None]) -> int:
    return sum(p.numel() for m in modules if m is not None for p in m.parameters())


def state_bytes(params_g: int, params_d: int, params_f: int, precision: str, ema: bool = True) -> int:
    """Weights, gradients, Adam moments, weight average, frozen feature net and autocast copies."""
    out = 16 * (params_g + params_d) + 4 * params_f + (4 * params_g if ema else 0)
    if precision != "fp32":
        out += _BYTES[precision] * (params_g + params_d + params_f)
    return out


def saved_activations(cfg: TrainConfig, height: int, width: int, batch: int, precision: str,
                      feature_net: nn.Module | None, device: str = "meta") -> tuple[int, int]:
    """(total, largest) bytes autograd saves in one generator update at ``batch`` pairs of ``height x width``.

    On the ``meta`` device (the default) nothing is computed: the networks are cast to
    ``precision``'s dtype, which is what autocast's convolutions run in. On a real device
    (for checking the meta figures on small sizes) the networks stay fp32 under autocast,
    as in training. ``feature_net`` (any device) is copied there.
    """
    dtype = _DTYPES[precision]
    meta = torch.device(device).type == "meta"
    weights_dtype = dtype if meta else torch.float32
    with torch.device(device):
        g = Generator(cfg.generator_arch())
        d = MultiscaleDiscriminator(cfg.discriminator_arch())
    g.to(weights_dtype)
    d.to(weights_dtype).requires_grad_(False)  # frozen in the generator update, as in Trainer.train_step
    f = None
    if feature_net is not None and cfg.lambda_perceptual:
        f = copy.deepcopy(feature_net).to(device, weights_dtype)
    weights = {t.untyped_storage()._cdata for m in (g, d, f) if m is not None
               for t in (*m.parameters(), *m.buffers())}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s._cdata not in weights:  # weights are counted in the state, not as activations
            saved[s._cdata] = s.nbytes()
        return t

    def frames() -> torch.Tensor:
        return torch.zeros(batch, 3, height, width, device=device, dtype=weights_dtype)

    label_t, label_t1, real_t, real_t1 = frames(), frames(), frames(), frames()
    d_input = discriminator_input(cfg.temporal)
    gan = build_gan_loss(cfg.gan_loss)
    cast = nullcontext() if meta or precision == "fp32" else torch.autocast(torch.device(device).type, dtype)
    # Keep the graph (and so every saved tensor) alive until counted: storage ids stay unique.
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), cast:
        fake_t, fake_t1 = PairGenerator(g)(label_t, label_t1)
        d_fake = d(d_input(label_t, label_t1, fake_t, fake_t1))
        with torch.no_grad():
            d_real = d(d_input(label_t, label_t1, real_t, real_t1))
        loss = gan.g_loss(d_fake) + cfg.lambda_feat * feature_matching(d_fake, d_real)
        loss = loss + cfg.lambda_l1 * (F.l1_loss(fake_t.float(), real_t.float())
                                       + F.l1_loss(fake_t1.float(), real_t1.float()))
        if f is not None:
            loss = loss + cfg.lambda_perceptual * PerceptualLoss(f)(torch.cat([fake_t, fake_t1]),
                                                                     torch.cat([real_t, real_t1]))
    total, largest = sum(saved.values()), max(saved.values(), default=0)
    del loss
    return total, largest


def estimate(cfg: TrainConfig, height: int, width: int, batch: int, precision: str,
             feature_net: nn.Module | None) -> Memory:
    """Computed memory of one training step of ``cfg``'s networks at ``batch`` pairs of ``height x width``.

    ``precision`` is ``fp32``, ``bf16`` or ``fp16``; ``feature_net`` is the perceptual
    network's module (e.g. :func:`vgg19_meta`) or None.
    """
    if precision not in _BYTES:
        raise ValueError(f"precision must be one of {', '.join(_BYTES)}, not {precision!r}")
    with torch.device("meta"):
        params_g = _count([Generator(cfg.generator_arch())])
        params_d = _count([MultiscaleDiscriminator(cfg.discriminator_arch())])
    params_f = _count([feature_net]) if cfg.lambda_perceptual else 0
    acts, largest = saved_activations(cfg, height, width, batch, precision, feature_net)
    return Memory(params_g=params_g, params_d=params_d, params_f=params_f,
                  state=state_bytes(params_g, params_d, params_f, precision, cfg.ema_halflife > 0),
                  activations=acts, backward=2 * largest)

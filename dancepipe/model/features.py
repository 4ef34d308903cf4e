"""Frozen pretrained feature networks for the perceptual loss, chosen by ``train.feature_net``.

:data:`FEATURE_NETS` is the explicit registry:

* ``vgg19`` — torchvision's ImageNet VGG19, cut after relu1_1, relu2_1, relu3_1,
  relu4_1 and relu5_1 as in pix2pixHD. The weights are downloaded by torchvision on first
  use; where that is impossible the run stops with a sentence naming the param and the
  alternatives (never a silent switch to another network).
* ``pose_backbone`` — the first layers of the pinned YOLO pose model's backbone
  (available offline through :mod:`dancepipe.pose.estimator`); a network trained to see
  people, which is what the generator has to draw.
* ``none`` — no perceptual loss.

Every feature net takes (B, 3, H, W) images in [-1, 1] and returns a list of feature
maps; ``layer_weights`` says how much each map counts in the loss. Parameters are
frozen and the module stays in eval mode, but gradients flow through it to the input.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

from dancepipe.errors import DancepipeError

log = logging.getLogger(__name__)

PARAM = "train.feature_net"
POSE_WEIGHTS = "yolo11n-pose.pt"  # pinned by sha256 in dancepipe.assets; the same file offline or online
POSE_LAYERS = 5  # YOLO11n layers 0-4: stem convs and the first C3k2 blocks, strides 2 to 8


class FrozenFeatures(nn.Module):
    """Base: frozen, eval-only, maps [-1, 1] input to the network's own normalisation."""

    layer_weights: list[float]

    def freeze(self) -> FrozenFeatures:
        for p in self.parameters():
            p.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> FrozenFeatures:  # noqa: ARG002 - always eval (frozen BN stats)
        return super().train(False)


class VGG19Features(FrozenFeatures):
    """VGG19 relu1_1 … relu5_1 on ImageNet-normalised input."""

    _CUTS = (2, 7, 12, 21, 30)

    def __init__(self, vgg_features: nn.Sequential) -> None:
        super().__init__()
        start = 0
        slices = []
        for end in self._CUTS:
            slices.append(nn.Sequential(*[vgg_features[i] for i in range(start, end)]))
            start = end
        self.slices = nn.ModuleList(slices)
        self.layer_weights = [1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0]
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x + 1) / 2 - self.mean) / self.std
        feats = []
        for s in self.slices:
            x = s(x)
            feats.append(x)
        return feats


class PoseBackboneFeatures(FrozenFeatures):
    """The first ``len(layers)`` layers of a YOLO pose backbone on [0, 1] input."""

    def __init__(self, layers: nn.Sequential) -> None:
        super().__init__()
        self.layers = layers
        n = len(layers)
        self.layer_weights = [1.0 / n] * n

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x + 1) / 2
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


def _build_vgg19(device: str | torch.device) -> nn.Module:
    from torchvision.models import VGG19_Weights, vgg19

    try:
        net = vgg19(weights=VGG19_Weights.IMAGENET1K_V1)
    except (OSError, RuntimeError, ValueError) as e:  # URLError is an OSError
        raise DancepipeError(
            f"{PARAM} = 'vgg19': torchvision could not load the ImageNet VGG19 weights "
            f"({e.__class__.__name__}: {e}); allow the download, or set {PARAM} to 'pose_backbone' "
            f"(offline) or 'none'"
        ) from e
    return VGG19Features(net.features).freeze().to(device)


def _build_pose_backbone(device: str | torch.device) -> nn.Module:
    from dancepipe.pose.estimator import load_pose_model

    try:
        yolo = load_pose_model(POSE_WEIGHTS, "cpu")
        seq = yolo.model.model
        layers = nn.Sequential(*[seq[i] for i in range(POSE_LAYERS)])
    except DancepipeError as e:
        raise DancepipeError(
            f"{PARAM} = 'pose_backbone': the pose model weights could not be loaded ({e}); "
            f"set {PARAM} to 'vgg19' or 'none'"
        ) from e
    for i, layer in enumerate(layers):
        if getattr(layer, "f", -1) != -1:  # a layer fed by an earlier one would break the plain chain
            raise DancepipeError(f"{PARAM} = 'pose_backbone': layer {i} of {POSE_WEIGHTS} is not sequential")
    return PoseBackboneFeatures(layers.float()).freeze().to(device)


FEATURE_NETS: dict[str, Callable[[str | torch.device], nn.Module | None]] = {
    "vgg19": _build_vgg19,
    "pose_backbone": _build_pose_backbone,
    "none": lambda device: None,
}


def build_feature_net(name: str, device: str | torch.device = "cpu") -> nn.Module | None:
    """The frozen feature network called ``name`` on ``device`` (None for ``none``).

    Raises :class:`DancepipeError` naming ``train.feature_net`` and the alternatives when
    the name is unknown or its weights cannot be loaded.
    """
    try:
        builder = FEATURE_NETS[name]
    except KeyError as e:
        raise DancepipeError(
            f"{PARAM} = {name!r} is not a known feature network; choose one of {', '.join(FEATURE_NETS)}"
        ) from e
    net = builder(device)
    if net is not None:
        log.info("perceptual loss: %s feature net, %d maps", name, len(net.layer_weights))
    return net

"""Adversarial losses, feature matching, perceptual loss and the feature-net registry."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dancepipe.errors import DancepipeError
from dancepipe.model.features import FEATURE_NETS, build_feature_net
from dancepipe.model.losses import (
    GAN_LOSSES,
    HingeLoss,
    LSGANLoss,
    PerceptualLoss,
    build_gan_loss,
    feature_matching,
)


def _dout(values: list[float], n_layers: int = 2) -> list[list[torch.Tensor]]:
    """Fake multi-scale D output: per scale some feature maps, then a constant score map."""
    g = torch.Generator().manual_seed(0)
    return [[torch.randn(2, 4, 5, 5, generator=g) for _ in range(n_layers)] + [torch.full((2, 1, 3, 3), v)]
            for v in values]


def test_lsgan_targets() -> None:
    loss = LSGANLoss()
    assert loss.d_loss(_dout([1.0, 1.0]), _dout([0.0, 0.0])).item() == pytest.approx(0.0)
    assert loss.g_loss(_dout([1.0, 1.0])).item() == pytest.approx(0.0)
    # the worst case for D: real scored 0 and fake scored 1
    assert loss.d_loss(_dout([0.0]), _dout([1.0])).item() == pytest.approx(1.0)
    assert loss.g_loss(_dout([0.0, 0.0])).item() == pytest.approx(1.0)


def test_hinge_margins() -> None:
    loss = HingeLoss()
    assert loss.d_loss(_dout([1.5]), _dout([-2.0])).item() == pytest.approx(0.0)
    assert loss.d_loss(_dout([0.0]), _dout([0.0])).item() == pytest.approx(1.0)
    assert loss.g_loss(_dout([2.0, 4.0])).item() == pytest.approx(-3.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=1, max_size=3), st.lists(st.floats(-5, 5), min_size=1, max_size=3))
def test_discriminator_losses_are_non_negative(real: list[float], fake: list[float]) -> None:
    n = min(len(real), len(fake))
    for name, cls in GAN_LOSSES.items():
        assert cls().d_loss(_dout(real[:n]), _dout(fake[:n])).item() >= 0, name
    assert LSGANLoss().g_loss(_dout(fake)).item() >= 0


def test_unknown_gan_loss_lists_the_choices() -> None:
    with pytest.raises(DancepipeError, match="train.gan_loss.*lsgan, hinge"):
        build_gan_loss("wgan")


def test_feature_matching_is_zero_on_identical_features_and_only_trains_fake() -> None:
    real = _dout([1.0, 1.0], n_layers=3)
    same = [[f.clone() for f in s] for s in real]
    assert feature_matching(same, real).item() == pytest.approx(0.0)
    fake = [[(f + 0.5).requires_grad_() for f in s] for s in real]
    real = [[f.requires_grad_() for f in s] for s in real]
    loss = feature_matching(fake, real)
    # two scales x three layers, each |diff| = 0.5, weights 4/3 per layer averaged over scales: 3 * 4/3 * 0.5
    assert loss.item() == pytest.approx(2.0, rel=1e-5)
    loss.backward()
    assert fake[0][0].grad is not None and real[0][0].grad is None
    # the score maps are not features
    assert fake[0][-1].grad is None


class _Halves(torch.nn.Module):
    """A tiny frozen 'feature net': a fixed 3x3 conv, then 2x average pooling (two maps)."""

    layer_weights = [1.0, 0.5]

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        torch.nn.init.constant_(self.conv.weight, 0.1)
        torch.nn.init.zeros_(self.conv.bias)
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        a = self.conv(x)
        return [a, torch.nn.functional.avg_pool2d(a, 2)]


def test_perceptual_loss_is_weighted_l1_of_features_and_only_trains_fake() -> None:
    net = _Halves()
    fake = torch.zeros(2, 3, 8, 8, requires_grad=True)
    real = torch.full((2, 3, 8, 8), 0.5, requires_grad=True)
    loss = PerceptualLoss(net)(fake, real)
    # away from the border a pixel's 3x3x3 window sums to 27 * 0.5 * 0.1 = 1.35; on the border fewer taps
    a = net.conv(real.detach())
    expected = 1.0 * a.abs().mean() + 0.5 * torch.nn.functional.avg_pool2d(a, 2).abs().mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert a[0, 0, 4, 4].item() == pytest.approx(1.35, rel=1e-6)
    loss.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert real.grad is None  # the real features are constants: no backward through the real half


def test_unknown_feature_net_lists_the_choices() -> None:
    with pytest.raises(DancepipeError, match="train.feature_net.*vgg19, pose_backbone, none"):
        build_feature_net("resnet")
    assert set(FEATURE_NETS) == {"vgg19", "pose_backbone", "none"}
    assert build_feature_net("none") is None


def test_vgg19_without_weights_names_the_param(tmp_path, monkeypatch) -> None:
    # an empty torch cache and no network: torchvision must download and cannot
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network disabled for this test")

    import torch.hub

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setattr(torch.hub, "urlopen", offline)  # torch.hub imported the name itself
    with pytest.raises(DancepipeError) as err:
        build_feature_net("vgg19")
    msg = str(err.value)
    assert "train.feature_net" in msg and "'pose_backbone'" in msg and "'none'" in msg
    assert "\n" not in msg


@pytest.mark.slow
def test_pose_backbone_is_frozen_and_passes_gradients(pose_weights) -> None:
    torch.set_num_threads(1)
    net = build_feature_net("pose_backbone")
    assert not any(p.requires_grad for p in net.parameters())
    net.train()  # stays in eval mode: frozen batch-norm statistics
    assert not net.training
    x = (torch.rand(2, 3, 32, 48) * 2 - 1).requires_grad_()
    feats = net(x)
    assert len(feats) == len(net.layer_weights) >= 3
    assert feats[0].shape[-2:] == (16, 24)  # the stem conv halves the resolution
    perc = PerceptualLoss(net)
    assert perc(x.detach(), x.detach()).item() == pytest.approx(0.0, abs=1e-6)
    loss = perc(x, torch.rand(2, 3, 32, 48) * 2 - 1)
    assert loss.item() > 0
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0

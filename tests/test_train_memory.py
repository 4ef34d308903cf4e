"""benchmarks/train_memory.py: the computed training memory behind docs/train.md's GPU recipes."""

from __future__ import annotations

import copy

import pytest
import torch

from benchmarks.train_memory import Memory, estimate, saved_activations, state_bytes, vgg19_meta
from dancepipe.model.networks import Generator, MultiscaleDiscriminator
from dancepipe.model.train import TrainConfig

TINY = dict(ngf=8, n_downsample=2, n_blocks=2, local_enhancer=True, ndf=8, num_d=2, n_layers_d=2)


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_are_the_networks_of_the_paper_recipe():
    cfg = TrainConfig(ngf=64, n_downsample=3, n_blocks=9, local_enhancer=True, ndf=64, num_d=3, n_layers_d=3)
    m = estimate(cfg, 64, 32, 1, "fp32", vgg19_meta())
    with torch.device("meta"):
        assert m.params_g == _params(Generator(cfg.generator_arch())) == 183_353_667
        assert m.params_d == _params(MultiscaleDiscriminator(cfg.discriminator_arch()))
    assert m.params_f == 12_944_960  # VGG19 up to relu5_1


def test_state_is_sixteen_bytes_a_trained_parameter_plus_average_feature_net_and_half_copies():
    assert state_bytes(100, 10, 50, "fp32") == 16 * 110 + 4 * 50 + 4 * 100
    assert state_bytes(100, 10, 50, "fp32", ema=False) == 16 * 110 + 4 * 50
    assert state_bytes(100, 10, 50, "bf16") == state_bytes(100, 10, 50, "fp32") + 2 * 160
    assert state_bytes(100, 10, 50, "fp16") == state_bytes(100, 10, 50, "bf16")


def test_meta_figures_equal_a_real_fp32_forward():
    """The meta device saves exactly what a real CPU forward saves, tensor for tensor."""
    cfg = TrainConfig(**TINY, feature_net="vgg19")
    vgg = vgg19_meta()
    real_vgg = copy.deepcopy(vgg).to_empty(device="cpu")
    assert saved_activations(cfg, 64, 32, 2, "fp32", vgg) == saved_activations(cfg, 64, 32, 2, "fp32", real_vgg,
                                                                                device="cpu")


def test_meta_bf16_figures_match_a_real_autocast_forward_with_its_weight_copies():
    """Autocast also saves half-precision copies of the weights: the state counts them."""
    cfg = TrainConfig(**TINY, feature_net="vgg19")
    vgg = vgg19_meta()
    real_vgg = copy.deepcopy(vgg).to_empty(device="cpu")
    m = estimate(cfg, 64, 32, 2, "bf16", vgg)
    real, _ = saved_activations(cfg, 64, 32, 2, "bf16", real_vgg, device="cpu")
    computed = m.activations + 2 * (m.params_g + m.params_d + m.params_f)
    assert abs(computed - real) / real < 0.1


def test_activations_grow_with_the_batch_and_halve_at_two_bytes():
    cfg = TrainConfig(**TINY, feature_net="none")
    one, four = estimate(cfg, 128, 64, 1, "fp32", None), estimate(cfg, 128, 64, 4, "fp32", None)
    assert four.activations == pytest.approx(4 * one.activations, rel=0.01)
    assert four.state == one.state
    half = estimate(cfg, 128, 64, 1, "bf16", None)
    assert half.activations == pytest.approx(one.activations / 2, rel=0.05)
    assert isinstance(one, Memory) and one.total == one.state + one.activations + one.backward


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="fp32, bf16, fp16"):
        estimate(TrainConfig(**TINY), 64, 32, 1, "fp8", None)

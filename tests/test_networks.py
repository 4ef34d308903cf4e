"""Network shapes, value ranges and gradient flow (tiny sizes: 32x48, ngf 8)."""

from __future__ import annotations

import pytest
import torch

from dancepipe.config import load_params
from dancepipe.errors import DancepipeError
from dancepipe.model.networks import (
    DiscriminatorArch,
    GeneratorArch,
    PairGenerator,
    build_discriminator,
    build_generator,
    init_weights,
    temporal_pair,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks: one thread is faster on 2 loaded cores


def _images(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, h, w, generator=g) * 2 - 1


def _check_generator(arch: GeneratorArch, h: int, w: int) -> None:
    g = build_generator(arch)
    init_weights(g)
    label, prev = _images(2, h, w), _images(2, h, w, seed=1)
    with torch.no_grad():
        out = g(label, prev)
    assert out.shape == (2, 3, h, w)
    assert out.dtype == torch.float32
    assert out.min() >= -1 and out.max() <= 1
    # the previous frame is an input: changing it changes the output
    with torch.no_grad():
        assert not torch.allclose(out, g(label, torch.zeros_like(prev)))


def _check_discriminator(arch: DiscriminatorArch, h: int, w: int) -> None:
    d = build_discriminator(arch)
    outs = d(torch.randn(2, 12, h, w))
    assert len(outs) == arch.num_d
    for scale in outs:
        assert len(scale) == arch.n_layers + 2
        assert all(f.shape[0] == 2 for f in scale)
        assert scale[-1].shape[1] == 1
    # each coarser scale sees a smaller input, so its score map is not larger
    areas = [s[-1].shape[2] * s[-1].shape[3] for s in outs]
    assert areas == sorted(areas, reverse=True)


def test_params_yaml_networks_have_the_right_shapes(repo_root) -> None:
    params = load_params(repo_root / "params.yaml")
    from dancepipe.model.train import TrainConfig

    cfg = TrainConfig(**params["train"])
    h, w = params["frames"]["height"], params["frames"]["width"]
    _check_generator(cfg.generator_arch(), h, w)
    _check_discriminator(cfg.discriminator_arch(), h, w)


@pytest.mark.parametrize("local_enhancer", [False, True])
@pytest.mark.parametrize("n_downsample,n_blocks", [(1, 0), (2, 1), (3, 2)])
def test_generator_configs(local_enhancer: bool, n_downsample: int, n_blocks: int) -> None:
    _check_generator(GeneratorArch(ngf=8, n_downsample=n_downsample, n_blocks=n_blocks,
                                   local_enhancer=local_enhancer, n_blocks_local=1), 32, 48)


@pytest.mark.parametrize("num_d,n_layers", [(1, 1), (2, 2), (3, 3)])
def test_discriminator_configs(num_d: int, n_layers: int) -> None:
    _check_discriminator(DiscriminatorArch(ndf=8, n_layers=n_layers, num_d=num_d), 32, 48)


def test_size_not_divisible_is_a_clear_error() -> None:
    g = build_generator(GeneratorArch(ngf=8, n_downsample=3, n_blocks=1, local_enhancer=True))
    x = _images(1, 32, 40)  # 40 is not a multiple of 2**(3+1)
    with pytest.raises(DancepipeError, match="not a multiple of 16"):
        g(x, x)


def test_arch_round_trips_and_rejects_unknown_keys() -> None:
    arch = GeneratorArch(ngf=8, n_downsample=2, n_blocks=1, local_enhancer=True)
    assert GeneratorArch.from_dict(arch.to_dict()) == arch
    with pytest.raises(DancepipeError, match="unknown keys"):
        GeneratorArch.from_dict({**arch.to_dict(), "ngf_typo": 3})


@pytest.mark.parametrize("local_enhancer", [False, True])
def test_gradients_reach_every_parameter(local_enhancer: bool) -> None:
    torch.manual_seed(0)
    g = build_generator(GeneratorArch(ngf=8, n_downsample=2, n_blocks=1, local_enhancer=local_enhancer,
                                      n_blocks_local=1))
    d = build_discriminator(DiscriminatorArch(ndf=8, n_layers=2, num_d=2))
    init_weights(g)
    init_weights(d)
    lt, lt1, rt, rt1 = (_images(2, 32, 48, seed=s) for s in range(4))
    ft, ft1 = PairGenerator(g)(lt, lt1)
    outs = d(temporal_pair(lt, lt1, ft, ft1))
    loss = sum(f.pow(2).mean() for scale in outs for f in scale) + (ft - rt).abs().mean() + (ft1 - rt1).abs().mean()
    loss.backward()
    for name, p in [*g.named_parameters(), *d.named_parameters()]:
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def test_loss_on_frame_t1_alone_flows_back_through_frame_t() -> None:
    """Frame t is not detached inside PairGenerator: a loss on frame t+1 alone reaches frame t,
    and its parameter gradient differs from the one with frame t detached (built here by hand)."""
    torch.manual_seed(0)
    g = build_generator(GeneratorArch(ngf=8, n_downsample=2, n_blocks=1))
    init_weights(g)
    lt, lt1, rt1 = (_images(2, 32, 48, seed=s) for s in range(3))
    ft, ft1 = PairGenerator(g)(lt, lt1)
    ft.retain_grad()
    (ft1 - rt1).abs().mean().backward()
    assert ft.grad is not None and ft.grad.abs().sum() > 0
    attached = [p.grad.clone() for p in g.parameters()]

    g.zero_grad(set_to_none=True)
    detached_t = g(lt, torch.zeros_like(lt)).detach()
    (g(lt1, detached_t) - rt1).abs().mean().backward()
    detached = [p.grad for p in g.parameters()]
    assert any(not torch.allclose(a, b) for a, b in zip(attached, detached, strict=True))


def test_every_sequence_runner_conditions_alike():
    """generate_frames (training samples) and render's streaming recurrence give the same frames."""
    import numpy as np

    from dancepipe.model.networks import generate_frames, to_model, to_uint8
    from dancepipe.output.render import generate_sequence

    torch.manual_seed(0)
    g = build_generator(GeneratorArch(ngf=8, n_downsample=2, n_blocks=1)).eval()
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 256, (5, 32, 48, 3), dtype=np.uint8)
    streamed = np.stack(list(generate_sequence(g, list(labels), device=torch.device("cpu"))))
    batch = generate_frames(g, torch.from_numpy(labels).permute(0, 3, 1, 2), torch.device("cpu"))
    np.testing.assert_array_equal(streamed, batch.permute(0, 2, 3, 1).numpy())
    # and the first frame is G on zeros, the second G on the first's output
    with torch.no_grad():
        f0 = g(to_model(labels[0]), torch.zeros(1, 3, 32, 48))
        f1 = g(to_model(labels[1]), f0)
    np.testing.assert_array_equal(streamed[1], to_uint8(f1)[0])
    # under bf16 autocast as well: both runners pass the switch down to the same step
    streamed16 = np.stack(list(generate_sequence(g, list(labels), device=torch.device("cpu"), precision="bf16")))
    batch16 = generate_frames(g, torch.from_numpy(labels).permute(0, 3, 1, 2), torch.device("cpu"), precision="bf16")
    np.testing.assert_array_equal(streamed16, batch16.permute(0, 2, 3, 1).numpy())
    assert not np.array_equal(streamed16, streamed)


def test_next_frame_in_bf16_is_float32_and_close_to_fp32():
    """bf16 autocast changes the arithmetic, not the dtype or (beyond rounding) the picture."""
    from dancepipe.model.networks import next_frame

    torch.manual_seed(0)
    g = build_generator(GeneratorArch(ngf=8, n_downsample=2, n_blocks=1)).eval()
    label = torch.rand(2, 3, 32, 48) * 2 - 1
    with torch.no_grad():
        full = next_frame(g, label, None)
        half = next_frame(g, label, None, "bf16")
        again = next_frame(g, label, half, "bf16")  # a bf16 frame fed back as the previous one
    assert half.dtype == torch.float32 and again.dtype == torch.float32
    assert not torch.equal(full, half)
    # bf16 keeps 8 bits of mantissa: differences of a few 1/256 on the [-1, 1] scale
    assert (full - half).abs().max() < 0.05
    assert (full - half).abs().mean() < 0.01


def test_image_conversions_round_trip():
    import numpy as np

    from dancepipe.model.networks import to_model, to_uint8

    img = np.arange(32 * 48 * 3, dtype=np.int64).reshape(32, 48, 3).astype(np.uint8)
    t = to_model(img)
    assert t.shape == (1, 3, 32, 48) and float(t.min()) >= -1 and float(t.max()) <= 1
    assert float(t[0, 0, 0, 0]) == -1.0 and to_model(np.full((2, 2, 3), 255, np.uint8)).eq(1).all()
    np.testing.assert_array_equal(to_uint8(t)[0], img)
    assert to_model(np.stack([img, img])).shape == (2, 3, 32, 48)

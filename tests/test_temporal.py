"""train.temporal: false is pix2pixHD frame by frame (the paper's FBF ablation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dancepipe.model.checkpoint import load_generator, step_paths
from dancepipe.model.networks import Generator, GeneratorArch, single_pairs, temporal_pair
from dancepipe.model.train import TrainConfig, run_training
from dancepipe.output.render import generate_sequence
from tests.fixtures.render import recurrence_by_hand
from tests.fixtures.train import TINY_TRAIN, write_clip

ARCH = dict(ngf=8, n_downsample=2, n_blocks=1)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks: one thread is faster on 2 loaded cores


def _first_conv(g: torch.nn.Module) -> torch.nn.Conv2d:
    return next(m for m in g.modules() if isinstance(m, torch.nn.Conv2d))


def test_frame_by_frame_generator_reads_the_label_only():
    torch.manual_seed(0)
    label = torch.rand(2, 3, 32, 48) * 2 - 1
    prev_a, prev_b = torch.zeros_like(label), torch.rand_like(label) * 2 - 1
    fbf = Generator(GeneratorArch(**ARCH, temporal=False)).eval()
    assert _first_conv(fbf).in_channels == 3
    with torch.no_grad():
        out = fbf(label, prev_a)
        torch.testing.assert_close(fbf(label, prev_b), out, rtol=0, atol=0)
        torch.testing.assert_close(fbf(label), out, rtol=0, atol=0)
    ts = Generator(GeneratorArch(**ARCH)).eval()
    assert _first_conv(ts).in_channels == 6
    with torch.no_grad():
        assert (ts(label, prev_a) - ts(label, prev_b)).abs().max() > 1e-4
    with pytest.raises(ValueError, match="previous frame"):
        ts(label)


def test_old_checkpoint_archs_without_the_key_are_temporal():
    assert GeneratorArch.from_dict({"ngf": 8, "n_downsample": 2, "n_blocks": 1}).temporal is True


def test_single_pairs_puts_each_frame_with_its_own_label():
    lt, lt1, it, it1 = (torch.full((2, 3, 4, 4), float(v)) for v in (1, 2, 3, 4))
    x = single_pairs(lt, lt1, it, it1)
    assert x.shape == (4, 6, 4, 4)
    assert x[:2, :3].eq(1).all() and x[:2, 3:].eq(3).all()  # frame t: (label_t, image_t)
    assert x[2:, :3].eq(2).all() and x[2:, 3:].eq(4).all()  # frame t+1: (label_t+1, image_t+1)
    assert temporal_pair(lt, lt1, it, it1).shape == (2, 12, 4, 4)


def test_frame_by_frame_training_and_rendering(tmp_path):
    """A real FBF run: its checkpoint holds a label-only G and a 6-channel D, and rendering
    it chains nothing (each frame equals G on its label alone)."""
    frames, labels = write_clip(tmp_path / "clip", n=12)
    cfg = TrainConfig(**{**TINY_TRAIN, "steps": 4, "temporal": False})
    result = run_training(cfg, frames, labels, tmp_path / "g.pt", tmp_path / "ck", tmp_path / "live")
    assert np.isfinite(result.metrics["loss_g"]) and np.isfinite(result.metrics["loss_d"])
    g, meta = load_generator(tmp_path / "g.pt")
    assert g.arch.temporal is False and meta["train"]["temporal"] is False
    raw = torch.load(step_paths(tmp_path / "ck", 3)[0], map_location="cpu", weights_only=True)
    assert raw["d_arch"]["in_channels"] == 6
    assert raw["discriminator"]["scales.0.blocks.0.0.weight"].shape[1] == 6
    rng = np.random.default_rng(0)
    labs = [rng.integers(0, 256, (32, 48, 3), dtype=np.uint8) for _ in range(4)]
    seq = list(generate_sequence(g, labs, device=torch.device("cpu")))
    for lab, got in zip(labs, seq, strict=True):
        alone = next(iter(generate_sequence(g, [lab], device=torch.device("cpu"))))
        np.testing.assert_array_equal(got, alone)
    # the temporal model, same data, chains: frame t is G(label t, its own frame t-1), the recurrence written
    # out by hand; and that matters, frame 2 generated alone (after zeros) is another picture
    cfg_t = TrainConfig(**{**TINY_TRAIN, "steps": 3})
    run_training(cfg_t, frames, labels, tmp_path / "gt.pt", tmp_path / "ckt", tmp_path / "livet")
    gt, _ = load_generator(tmp_path / "gt.pt")
    seq_t = list(generate_sequence(gt, labs, device=torch.device("cpu")))
    for t, (got, by_hand) in enumerate(zip(seq_t, recurrence_by_hand(gt, labs), strict=True)):
        np.testing.assert_array_equal(got, by_hand, err_msg=f"frame {t}")
    alone_t = next(iter(generate_sequence(gt, [labs[2]], device=torch.device("cpu"))))
    assert not np.array_equal(seq_t[2], alone_t)

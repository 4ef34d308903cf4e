"""Generator files and training checkpoints: round trips, safety checks, pruning."""

from __future__ import annotations

import pytest
import torch

from dancepipe.errors import DancepipeError
from dancepipe.model import checkpoint as ckpt
from dancepipe.model.networks import GeneratorArch, build_generator, init_weights


def _generator(local: bool = False):
    torch.manual_seed(3)
    g = build_generator(GeneratorArch(ngf=8, n_downsample=2, n_blocks=1, local_enhancer=local, n_blocks_local=1))
    init_weights(g)
    return g


@pytest.mark.parametrize("local", [False, True])
def test_generator_round_trip(tmp_path, local: bool) -> None:
    g = _generator(local)
    split = {"train_frames": [0, 1, 2, 3], "holdout_frames": [4]}
    train = {"holdout_fraction": 0.2, "lr": 2e-4}
    path = tmp_path / "generator.pt"
    ckpt.save_generator(g, path, train, split, step=7)
    # a plain dict of tensors and builtins: loadable without unpickling any class
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == ckpt.GENERATOR_FORMAT and raw["arch"]["local_enhancer"] is local
    g2, meta = ckpt.load_generator(path)
    assert meta == {"format": ckpt.GENERATOR_FORMAT, "arch": g.arch.to_dict(), "train": train, "split": split,
                    "step": 7}
    assert not g2.training
    x = torch.rand(1, 3, 32, 48) * 2 - 1
    g.eval()
    with torch.no_grad():
        assert torch.equal(g(x, torch.zeros_like(x)), g2(x, torch.zeros_like(x)))
    assert not list(tmp_path.glob(".*tmp*")), "atomic write left a temporary file"


def test_load_rejects_foreign_and_broken_files(tmp_path) -> None:
    missing = tmp_path / "nope.pt"
    with pytest.raises(DancepipeError, match="does not exist"):
        ckpt.load_generator(missing)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(DancepipeError, match="not a readable dancepipe checkpoint"):
        ckpt.load_generator(junk)
    text = tmp_path / "text.pt"  # a text file: torch's unpickler fails with a KeyError here
    text.write_text("hello world\n")
    with pytest.raises(DancepipeError, match="not a readable dancepipe checkpoint"):
        ckpt.load_generator(text)
    empty = tmp_path / "empty.pt"  # EOFError inside torch.load
    empty.write_bytes(b"")
    with pytest.raises(DancepipeError, match="empty.pt: not a readable dancepipe checkpoint"):
        ckpt.load_generator(empty)
    torch.save({"format": "dancepipe.generator/1", "w": torch.zeros(4096)}, tmp_path / "whole.pt")
    cut = tmp_path / "cut.pt"  # a copy interrupted half way: RuntimeError from the zip reader
    cut.write_bytes((tmp_path / "whole.pt").read_bytes()[:3000])
    with pytest.raises(DancepipeError, match="cut.pt: not a readable dancepipe checkpoint"):
        ckpt.load_generator(cut)
    other = tmp_path / "other.pt"
    torch.save({"format": "something/1", "state_dict": {}}, other)
    with pytest.raises(DancepipeError, match="expected a 'dancepipe.generator/1' file"):
        ckpt.load_generator(other)
    g = _generator()
    bad = tmp_path / "bad.pt"
    payload = ckpt.generator_payload(g, {}, {"train_frames": [], "holdout_frames": []}, 1)
    payload["arch"] = {**payload["arch"], "n_blocks": 2}  # weights for 1 block, arch says 2
    torch.save(payload, bad)
    with pytest.raises(DancepipeError, match="do not match the stored architecture"):
        ckpt.load_generator(bad)


def _save(directory, step: int, fingerprint: str = "abc"):
    g = _generator()
    weights = {"arch": g.arch.to_dict(), "state_dict": g.state_dict(), "d_arch": {}, "discriminator": {},
               "train": {}, "split": {"train_frames": [0], "holdout_frames": []}}
    state = {"opt_g": {}, "opt_d": {}, "rng": {"torch": torch.get_rng_state()}, "fingerprint": fingerprint}
    return ckpt.save_checkpoint(directory, step, weights, state, keep=2)


def test_checkpoints_are_pruned_and_checked(tmp_path) -> None:
    for step in (5, 10, 15):
        _save(tmp_path, step)
    assert ckpt.list_checkpoints(tmp_path) == [10, 15]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "state_000010.pt", "state_000015.pt", "step_000010.pt", "step_000015.pt"]
    # a weights file without its state (a kill between the two writes) is not a checkpoint
    (tmp_path / "state_000015.pt").unlink()
    assert ckpt.list_checkpoints(tmp_path) == [10]
    weights, state = ckpt.load_checkpoint(tmp_path, 10, "abc")
    assert weights["step"] == state["step"] == 10
    with pytest.raises(DancepipeError, match="different params or data"):
        ckpt.load_checkpoint(tmp_path, 10, "another run")
    # the weights of a checkpoint also open as a generator
    g, meta = ckpt.load_generator(tmp_path / "step_000010.pt")
    assert meta["step"] == 10 and "discriminator" not in meta


def test_the_same_checkpoint_saved_twice_is_the_same_bytes(tmp_path):
    """DVC hashes generator.pt: two runs that train the same weights must write the same file."""
    obj = {"format": "x/1", "state_dict": {"w": torch.arange(6, dtype=torch.float32)}, "step": 3}
    ckpt.save_file(obj, tmp_path / "a" / "generator.pt")
    ckpt.save_file(obj, tmp_path / "b" / "generator.pt")
    assert (tmp_path / "a" / "generator.pt").read_bytes() == (tmp_path / "b" / "generator.pt").read_bytes()

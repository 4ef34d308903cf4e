"""Generator files and training checkpoints: plain dicts of state_dicts + plain config.

Nothing here pickles a class: every file loads with ``torch.load(weights_only=True)``
and the network is rebuilt from the architecture dict stored next to its weights, so
loading never depends on the current params.yaml.

* ``models/generator.pt`` — :data:`GENERATOR_FORMAT`: ``arch``, ``state_dict``, ``train``
  (the training params, incl. ``holdout_fraction``), ``split`` (``train_frames`` and
  ``holdout_frames`` as frame indices) and ``step``.
* ``models/checkpoints/step_XXXXXX.pt`` — the same layout plus the discriminator
  (``d_arch``, ``discriminator``), so :func:`load_generator` also opens a checkpoint.
* ``models/checkpoints/state_XXXXXX.pt`` — :data:`STATE_FORMAT`: optimiser states, step,
  RNG states and the run fingerprint that decides whether a rerun may resume from it.

Weights and training state are separate files (the weights alone are what other stages
need); both are written atomically, the state file last, so a state file always has its
weights beside it.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dancepipe.atomic import atomic_path
from dancepipe.errors import DancepipeError
from dancepipe.model.networks import Generator, build_generator

GENERATOR_FORMAT = "dancepipe.generator/1"
STATE_FORMAT = "dancepipe.trainstate/1"
_STEP_RE = re.compile(r"^step_(\d{6,})\.pt$")


def save_file(obj: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` to a temporary sibling, then rename: never a half-written file.

    Saved through an open file: given a path, torch names the archive inside after the
    (random) temporary name, so the same weights would hash differently on every run.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


def read_file(path: str | Path, expected_format: str) -> dict[str, Any]:
    """Load a dancepipe checkpoint dict safely and check its ``format`` tag."""
    p = Path(path)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise DancepipeError(f"{p}: file does not exist (run the train stage first)") from e
    except (RuntimeError, EOFError, OSError, KeyError, pickle.UnpicklingError) as e:
        # what torch.load raises on bad files: a truncated archive (RuntimeError), an empty
        # file (EOFError), a text file (KeyError), and anything weights_only refuses to
        # unpickle (foreign pickles, NumPy files: UnpicklingError)
        raise DancepipeError(f"{p}: not a readable dancepipe checkpoint ({e.__class__.__name__})") from e
    if not isinstance(obj, dict) or obj.get("format") != expected_format:
        got = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise DancepipeError(f"{p}: expected a '{expected_format}' file, found {got!r}")
    return obj


def generator_payload(
    generator: Generator, train: dict[str, Any], split: dict[str, list[int]], step: int,
) -> dict[str, Any]:
    """The ``models/generator.pt`` dict for ``generator`` (weights moved to CPU)."""
    return {
        "format": GENERATOR_FORMAT,
        "arch": generator.arch.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in generator.state_dict().items()},
        "train": dict(train),
        "split": {k: [int(i) for i in v] for k, v in split.items()},
        "step": int(step),
    }


def save_generator(
    generator: Generator, path: str | Path, train: dict[str, Any], split: dict[str, list[int]], step: int,
) -> None:
    """Write ``models/generator.pt`` atomically."""
    save_file(generator_payload(generator, train, split, step), path)


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> tuple[Generator, dict[str, Any]]:
    """Rebuild the generator stored at ``path`` (generator.pt or a step_XXXXXX.pt checkpoint).

    Returns the module in eval mode on ``device`` and the file's dict without weights
    (``arch``, ``train``, ``split``, ``step``). ``module(label, prev)`` maps two
    (B, 3, H, W) tensors in [-1, 1] to (B, 3, H, W) in [-1, 1].
    """
    obj = read_file(path, GENERATOR_FORMAT)
    for key in ("arch", "state_dict", "train", "split", "step"):
        if key not in obj:
            raise DancepipeError(f"{path}: generator file lacks the '{key}' entry")
    try:
        net = build_generator(obj["arch"])
        net.load_state_dict(obj["state_dict"], strict=True)
    except (RuntimeError, TypeError) as e:
        raise DancepipeError(f"{path}: weights do not match the stored architecture {obj['arch']}") from e
    net.to(device).eval()
    meta = {k: v for k, v in obj.items() if k not in ("state_dict", "discriminator")}
    return net, meta


# --- training checkpoints -------------------------------------------------------------------

def step_paths(directory: str | Path, step: int) -> tuple[Path, Path]:
    """(weights, state) file paths of the checkpoint taken after ``step`` updates."""
    d = Path(directory)
    return d / f"step_{step:06d}.pt", d / f"state_{step:06d}.pt"


def list_checkpoints(directory: str | Path) -> list[int]:
    """Steps that have both a weights and a state file, ascending."""
    d = Path(directory)
    if not d.is_dir():
        return []
    steps = []
    for p in d.iterdir():
        m = _STEP_RE.match(p.name)
        if m and step_paths(d, int(m.group(1)))[1].is_file():
            steps.append(int(m.group(1)))
    return sorted(steps)


def save_checkpoint(
    directory: str | Path, step: int, weights: dict[str, Any], state: dict[str, Any], keep: int = 3,
) -> tuple[Path, Path]:
    """Write one checkpoint (weights first, then state) and prune all but the ``keep`` newest."""
    wpath, spath = step_paths(directory, step)
    save_file({**weights, "format": GENERATOR_FORMAT, "step": int(step)}, wpath)
    save_file({**state, "format": STATE_FORMAT, "step": int(step)}, spath)
    for old in list_checkpoints(directory)[:-keep]:
        for p in step_paths(directory, old)[::-1]:  # state first: a lone weights file is ignored
            p.unlink(missing_ok=True)
    return wpath, spath


def load_checkpoint(directory: str | Path, step: int, fingerprint: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load and check the checkpoint of ``step``: formats, matching steps, same run fingerprint."""
    wpath, spath = step_paths(directory, step)
    weights = read_file(wpath, GENERATOR_FORMAT)
    state = read_file(spath, STATE_FORMAT)
    if weights.get("step") != step or state.get("step") != step:
        raise DancepipeError(f"{spath}: step {state.get('step')} does not match {wpath.name} ({weights.get('step')})")
    if state.get("fingerprint") != fingerprint:
        raise DancepipeError(f"{spath}: was written by a run with different params or data")
    for key in ("state_dict", "discriminator", "arch", "d_arch"):
        if key not in weights:
            raise DancepipeError(f"{wpath}: checkpoint lacks the '{key}' entry")
    for key in ("opt_g", "opt_d", "rng"):
        if key not in state:
            raise DancepipeError(f"{spath}: training state lacks the '{key}' entry")
    return weights, state


def load_into(module: nn.Module, state_dict: dict[str, Any], source: str | Path) -> None:
    """``load_state_dict(strict=True)`` with a one-sentence error naming the file."""
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:
        raise DancepipeError(f"{source}: weights do not fit the network built from the current params") from e

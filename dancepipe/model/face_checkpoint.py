"""``models/face.pt``: the face generator's weights plus a plain config, written and read back.

Like the main generator's file (:mod:`dancepipe.model.checkpoint`, whose safe reader it
uses): a dict with a ``format`` tag, the architecture as a plain dict, the
``state_dict``, the training params and final metrics. A file written with
``train_face.enabled: false`` says so and holds no weights.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dancepipe.errors import DancepipeError
from dancepipe.model.checkpoint import read_file, save_file
from dancepipe.model.face_networks import FaceRefiner, build_face_generator

log = logging.getLogger(__name__)

FORMAT = "dancepipe.face/1"


def disabled_payload(train: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint written when ``train_face.enabled`` is false: no weights."""
    return {"format": FORMAT, "enabled": False, "arch": {}, "state_dict": None, "train": train}


def enabled_payload(model: nn.Module, train: dict[str, Any], feature_net: str, crop_size: int, step: int,
                    metrics: dict[str, float]) -> dict[str, Any]:
    """The checkpoint of a trained face generator (``model`` is a :class:`FaceGenerator`)."""
    arch = {"ngf": train["ngf"], "n_downsample": train["n_downsample"], "n_blocks": train["n_blocks"],
            "in_channels": 6, "crop_size": int(crop_size)}
    return {"format": FORMAT, "enabled": True, "arch": arch, "state_dict": model.state_dict(),
            "train": {**train, "feature_net": feature_net}, "step": step, "metrics": metrics}


def save_face_model(payload: dict[str, Any], path: str | Path) -> None:
    """Write ``models/face.pt`` atomically."""
    save_file(payload, path)


def load_face_model(path: str | Path, device: torch.device | str = "cpu") -> FaceRefiner | None:
    """Load ``models/face.pt``; None (logged) when it was written with the face stage off."""
    path = Path(path)
    if not path.is_file():
        raise DancepipeError(f"{path}: face model does not exist (run the train_face stage first)")
    ckpt = read_file(path, FORMAT)
    if not ckpt.get("enabled"):
        log.info("%s: face refinement is disabled (train_face.enabled was false); "
                 "rendering uses the main generator alone", path)
        return None
    try:
        model = build_face_generator(ckpt["arch"])
        model.load_state_dict(ckpt["state_dict"])
        crop_size = ckpt["arch"]["crop_size"]
    except (KeyError, RuntimeError, TypeError) as e:  # missing arch keys, mismatched or absent weights
        raise DancepipeError(f"{path}: face weights do not match their recorded architecture "
                             f"({e.__class__.__name__})") from e
    return FaceRefiner(model, crop_size, device)

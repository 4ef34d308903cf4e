"""The ingest stage: bring a user video or a pinned demo clip into ``data/videos``.

The video is copied byte for byte (so nothing is lost to re-encoding) and described
in a JSON sidecar: upright size, fps, frame count, duration, rotation, audio, whether
the frame rate is variable, and the timestamp of every decodable frame. The whole
file is decoded once here so a damaged file is reported at the first stage.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from dancepipe.assets import DEMO_CLIPS, fetch_asset, sha256_file
from dancepipe.atomic import atomic_path
from dancepipe.errors import DancepipeError
from dancepipe.video.decode import (
    INGEST_META,
    DecodeReport,
    container_facts,
    iter_frames,
    probe,
)

log = logging.getLogger(__name__)

# A committed pointer file (inputs/demo/<clip>.demo) whose one line names a pinned demo
# clip: params.yaml then names every video by a path, which dvc.yaml can list as the
# ingest stage's only input whether it is the user's file or a demo clip.
DEMO_SUFFIX = ".demo"


def demo_clip_name(spec: str, root: str | Path = ".") -> str | None:
    """The pinned clip a ``videos`` value's ``.demo`` pointer file names, or None for any other path."""
    if not spec.endswith(DEMO_SUFFIX):
        return None
    path = Path(spec) if Path(spec).is_absolute() else Path(root) / spec
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as e:
        raise DancepipeError(f"{spec}: demo pointer file does not exist") from e
    names = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if len(names) != 1:
        raise DancepipeError(f"{spec}: a demo pointer file names exactly one clip, this one has {len(names)} lines")
    name = names[0]
    if name not in DEMO_CLIPS:
        raise DancepipeError(f"{spec}: unknown demo clip '{name}'; choose one of {', '.join(DEMO_CLIPS)}")
    return name


def resolve_input(spec: str, root: str | Path = ".") -> Path:
    """Turn a ``videos`` value into a local file path, fetching demo clips."""
    clip = demo_clip_name(spec, root)
    if clip is not None:
        return fetch_asset(clip)
    path = Path(spec)
    if not path.is_absolute():
        path = Path(root) / path
    if not path.exists():
        raise DancepipeError(f"{spec}: input video does not exist")
    return path


def ingest_video(spec: str, out_dir: str | Path, *, root: str | Path = ".") -> dict[str, Any]:
    """Copy the video named by ``spec`` into the directory ``out_dir`` and describe it.

    ``out_dir`` receives the file byte for byte as ``video.<ext>``, ``<ext>`` naming
    its real container (:func:`dancepipe.video.decode.container_facts`), and
    ``meta.json``; later stages open the directory through
    :func:`dancepipe.video.decode.resolve_video`. Raises :class:`DancepipeError` for a
    missing, empty, non-video or undecodable file. A file that ends early is accepted
    with a warning that says how many frames could be decoded, how many packets could
    not and how many announced frames are missing; a header that announces one frame
    more than the file holds is common and only recorded.
    """
    src = resolve_input(spec, root)
    info = probe(src)
    report = DecodeReport()
    timestamps = [round(f.timestamp, 6) for f in iter_frames(src, report=report)]
    if report.decoded == 0:
        raise DancepipeError(f"{src}: no frame of the video could be decoded")
    if report.damaged:
        log.warning(
            "%s: decoded %d frames; %d packets were unreadable and %d announced frames are missing "
            "(truncated or damaged file)",
            src, report.decoded, report.errors, report.missing,
        )
    ext, announced = container_facts(src)
    name = f"video.{ext}"
    meta = info.to_dict()
    meta.update(
        file=name,
        path=str(Path(out_dir) / name),
        origin=spec,
        origin_sha256=sha256_file(src),
        frame_count=report.decoded,
        announced_frames=announced,
        decode_errors=report.errors,
        missing_frames=report.missing,
        timestamps=timestamps,
    )
    with atomic_path(out_dir, directory=True) as tmp:
        shutil.copyfile(src, tmp / name)
        (tmp / INGEST_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta

"""Helpers for tests and benchmarks that run DVC itself on a throwaway copy of the project.

A *project copy* holds what ``git`` would ship from the working tree (tracked plus
untracked-but-not-ignored files, so uncommitted work is included), never the
produced artifacts, in a fresh git repository with one commit. DVC runs as a
subprocess of this interpreter (``python -m dvc``) with analytics off, the venv first
on ``PATH`` (the stage commands call ``python``) and the copy first on ``PYTHONPATH``
(so the stages import the copy's ``dancepipe``, which is what its dvc.yaml hashes).

The whole pipeline is reproduced once per test session (:func:`reproduced_project`)
with :data:`SMALL_PARAMS` on shortened copies of the demo clips (:func:`short_clips`:
real footage, every 2nd/3rd frame, half size, source audio kept) added under
``inputs/`` with ``dvc add`` as a user adds their own videos; tests that change
something work on a copy of it (:func:`clone_tree`), so only the stages they touch
run again.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]

# Produced by the pipeline (or local tooling), never part of a project copy.
# dvc.lock is the workspace's record of its own runs (after `make demo`): a project copy starts without one.
EXCLUDED_TOPS = {"data", "models", "outputs", "metrics", "dvclive", ".venv", ".dvc/cache", ".dvc/tmp", "dvc.lock"}
KEEP = {"data/.gitignore"}

# The catalog of the test projects: one target and two dances, both from one video, so
# the test pipeline poses one clip for two subjects as the demo does (the man on the box
# is picked by a point). Video names are those of SHORT_CLIPS.
TEST_CATALOG: dict[str, Any] = {
    "videos": {"cam01": "inputs/cam01.mp4", "sports2d": "inputs/sports2d.mp4"},
    "subjects": {"cam01": {"video": "cam01", "person": "auto"},
                 "walker": {"video": "sports2d", "person": "auto"},
                 "jumper": {"video": "sports2d", "person": [0.37, 0.25]}},
    "targets": ["cam01"],
    "sources": ["walker", "jumper"],
}

# Params that make the demo pipeline run end to end in about a minute on 2 CPU cores.
# Every key here must exist in the shipped params.yaml (checked by set_params).
SMALL_PARAMS: dict[str, Any] = {
    "poses": {"imgsz": 320, "batch": 8, "device": "cpu"},
    "frames": {"width": 64, "height": 96, "workers": 1},
    "labels": {"draw": {"workers": 1}, "train": {"contact_sheet_frames": 2},
               "transfer": {"contact_sheet_frames": 2}},
    "train": {
        "steps": 4, "batch_size": 1, "ngf": 8, "n_downsample": 2, "n_blocks": 1, "ndf": 8,
        "num_d": 1, "n_layers_d": 2, "feature_net": "none", "checkpoint_every": 2,
        "sample_every": 2, "device": "cpu", "workers": 0,
    },
    "train_face": {"steps": 2, "batch_size": 2, "ngf": 8, "n_blocks": 1, "ndf": 8, "samples": 2,
                   "device": "cpu"},
    "render": {"device": "cpu", "preset": "ultrafast"},
    "evaluate": {"device": "cpu", "sample_frames": 2},
}

RUNNING = re.compile(r"^Running stage '([^']+)':", re.M)
CACHED = re.compile(r"^Stage '([^']+)' is cached - skipping run", re.M)
SKIPPED = re.compile(r"^Stage '([^']+)' didn't change, skipping", re.M)


def shipped_files(root: Path = REPO) -> list[str]:
    """Files git would ship from ``root``: tracked and untracked-not-ignored, minus artifacts."""
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=root, check=True, capture_output=True,
    ).stdout.decode()
    files = []
    for rel in sorted(set(filter(None, out.split("\0")))):
        if rel not in KEEP and any(rel == t or rel.startswith(t + "/") for t in EXCLUDED_TOPS):
            continue
        if (root / rel).is_file():  # tracked files deleted in the working tree are skipped
            files.append(rel)
    return files


def env(project: Path | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for dvc/git subprocesses working on ``project``."""
    e = dict(os.environ)
    e.update(
        DVC_NO_ANALYTICS="1",
        YOLO_OFFLINE="1",
        OMP_NUM_THREADS=e.get("OMP_NUM_THREADS", "2"),
        PATH=os.pathsep.join([str(Path(sys.executable).parent), e.get("PATH", "")]),
        GIT_AUTHOR_NAME="dancepipe tests", GIT_AUTHOR_EMAIL="tests@dancepipe.invalid",
        GIT_COMMITTER_NAME="dancepipe tests", GIT_COMMITTER_EMAIL="tests@dancepipe.invalid",
        TQDM_DISABLE="1",
    )
    if project is not None:
        e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(project), e.get("PYTHONPATH", "")]))
    if extra:
        e.update(extra)
    return e


def run(project: Path, *args: str, check: bool = True, timeout: float = 900,
        extra_env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command in ``project``; on failure raise with its combined output."""
    proc = subprocess.run(
        list(args), cwd=project, env=env(project, extra_env), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode} in {project}:\n{proc.stdout[-6000:]}")
    return proc


def dvc(project: Path, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run ``dvc <args>`` with this interpreter's DVC."""
    return run(project, sys.executable, "-m", "dvc", *args, **kwargs)


def git(project: Path, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run ``git <args>`` in ``project`` with a test identity."""
    return run(project, "git", *args, **kwargs)


@dataclass
class Repro:
    """What one ``dvc repro`` / ``dvc exp run`` did, parsed from its log."""

    ran: set[str] = field(default_factory=set)        # commands actually executed
    restored: set[str] = field(default_factory=set)   # taken from the run cache
    skipped: set[str] = field(default_factory=set)    # unchanged
    output: str = ""


def parse_repro(output: str) -> Repro:
    """Extract the stages that ran, were restored from the run cache, or were skipped."""
    return Repro(set(RUNNING.findall(output)), set(CACHED.findall(output)), set(SKIPPED.findall(output)), output)


def repro(project: Path, *args: str, **kwargs: Any) -> Repro:
    """``dvc repro <args>`` and what it did."""
    return parse_repro(dvc(project, "repro", *args, **kwargs).stdout)


def _merge(base: dict[str, Any], updates: Mapping[str, Any], where: str) -> None:
    for k, v in updates.items():
        if k not in base:
            raise KeyError(f"params.yaml has no key '{where}{k}'")
        if isinstance(v, Mapping):
            _merge(base[k], v, f"{where}{k}.")
        else:
            base[k] = v


def set_params(project: Path, updates: Mapping[str, Any]) -> None:
    """Change existing keys of ``project/params.yaml`` (nested dict or dotted keys)."""
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    nested: dict[str, Any] = {}
    for key, value in updates.items():
        node = nested
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = copy.deepcopy(value)
    _merge(params, nested, "")
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def set_catalog(project: Path, **keys: Any) -> None:
    """Replace whole catalog keys (``videos``, ``subjects``, ``targets``, ``sources``) of params.yaml."""
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key, value in keys.items():
        if key not in ("videos", "subjects", "targets", "sources"):
            raise KeyError(f"'{key}' is not a catalog key")
        params[key] = copy.deepcopy(value)
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def shorten_clip(src: Path, dest: Path, step: int, scale: float, max_frames: int | None = None) -> Path:
    """Write every ``step``-th frame of ``src`` at ``scale`` size to ``dest`` (H.264).

    The frame rate is divided by ``step`` so the clip keeps its real duration and
    motion range, and an audio track is re-encoded (AAC) so the clip stays a faithful
    stand-in for the demo. Frames come out upright via :mod:`dancepipe.video.decode`.
    """
    import av
    import cv2

    from dancepipe.video.decode import iter_frames, probe

    info = probe(src)
    fps = Fraction(info.fps).limit_denominator(1001) / step
    w, h = (round(info.width * scale / 2) * 2, round(info.height * scale / 2) * 2)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(src)) as probe_audio:
        has_audio = bool(probe_audio.streams.audio)
    out = av.open(str(dest), "w")
    video = out.add_stream("libx264", rate=fps)
    video.width, video.height, video.pix_fmt = w, h, "yuv420p"
    video.options = {"crf": "20", "preset": "veryfast"}
    audio = out.add_stream("aac", rate=44100, layout="stereo") if has_audio else None
    kept = 0
    for frame in iter_frames(src):
        if frame.index % step:
            continue
        img = cv2.resize(frame.image, (w, h), interpolation=cv2.INTER_AREA)
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
        vf.pts = kept
        vf.time_base = 1 / fps
        out.mux(video.encode(vf))
        kept += 1
        if max_frames is not None and kept >= max_frames:
            break
    out.mux(video.encode())
    if audio is not None:
        duration = kept / fps
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=44100)
        with av.open(str(src)) as inp:
            for af in inp.decode(inp.streams.audio[0]):
                if af.time is not None and af.time > duration:
                    break
                for rf in resampler.resample(af):
                    out.mux(audio.encode(rf))
        out.mux(audio.encode())
    out.close()
    return dest


# video name -> (demo asset, every n-th frame, scale): ~50 target and ~77 source frames at half size.
SHORT_CLIPS = {"cam01": ("pose2sim_cam01", 2, 0.5), "sports2d": ("sports2d", 3, 0.5)}


def short_clips(cache: Path) -> dict[str, Path]:
    """Shortened demo clips for end-to-end tests (video name -> file), made once into ``cache``."""
    from dancepipe.assets import fetch_asset

    clips = {}
    for name, (asset, step, scale) in SHORT_CLIPS.items():
        dest = cache / f"{name}_{asset}_s{step}_x{scale}.mp4"
        if not dest.exists():
            tmp = dest.with_name(".tmp-" + dest.name)
            shorten_clip(fetch_asset(asset), tmp, step, scale)
            os.replace(tmp, dest)
        clips[name] = dest
    return clips


def make_project(dest: Path, params: Mapping[str, Any] | None = None, root: Path = REPO,
                 clips: Mapping[str, Path] | None = None, catalog: Mapping[str, Any] | None = None) -> Path:
    """Copy the shippable files of ``root`` into a new git repository at ``dest``.

    ``params`` (default :data:`SMALL_PARAMS`) is written into the copy's params.yaml
    before the single commit, so the copy's history starts with the small settings.
    ``clips`` (video name -> file) are copied to ``inputs/<name>.mp4`` and tracked with
    ``dvc add``, and the catalog becomes ``catalog`` (default :data:`TEST_CATALOG`,
    whose videos are those clips); without clips the shipped demo catalog is kept.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for rel in shipped_files(root):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)
    set_params(dest, SMALL_PARAMS if params is None else params)
    git(dest, "init", "-q", "-b", "main")
    if clips:
        for name, clip in clips.items():
            shutil.copy2(clip, dest / "inputs" / f"{name}.mp4")
        dvc(dest, "add", *(f"inputs/{s}.mp4" for s in clips))
        set_catalog(dest, **(TEST_CATALOG if catalog is None else catalog))
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "project copy for tests")
    return dest


def clone_tree(src: Path, dest: Path) -> Path:
    """Copy a whole project directory (git history, DVC cache, workspace outputs).

    The DVC cache is hard-linked (its files are read-only and never modified in
    place), everything else is copied; DVC's temporary state is left behind.
    """

    def ignore(directory: str, names: list[str]) -> set[str]:
        return {"tmp"} & set(names) if Path(directory).name == ".dvc" else set()

    def link_or_copy(s: str, d: str) -> None:
        if f"{os.sep}.dvc{os.sep}cache{os.sep}" in s:
            try:
                os.link(s, d)
                return
            except OSError:
                pass
        shutil.copy2(s, d)

    shutil.copytree(src, dest, symlinks=True, ignore=ignore, copy_function=link_or_copy)
    return dest


def commit_all(project: Path, message: str) -> None:
    """Commit everything git sees in ``project`` (dvc.lock, .gitignore files, metrics)."""
    git(project, "add", "-A")
    git(project, "commit", "-q", "--allow-empty", "-m", message)


def tracked_outputs(project: Path) -> list[tuple[Path, bool]]:
    """Every output declared by the pipeline: (absolute path, whether DVC caches it)."""
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        return sorted((Path(o.fs_path), bool(o.use_cache)) for o in repo.index.outs)


def stage_outputs(project: Path) -> dict[str, list[Path]]:
    """Every stage's declared outputs (absolute paths), by stage name (``frames@cam01``)."""
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        return {getattr(s, "name", s.path): [Path(o.fs_path) for o in s.outs] for s in repo.index.stages}


def file_digests(paths: Iterable[Path], root: Path) -> dict[str, str]:
    """sha256 of every file under ``paths`` (files or directories), keyed relative to ``root``."""
    digests: dict[str, str] = {}
    for p in paths:
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
        for f in files:
            digests[str(f.relative_to(root))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return digests


def dag_edges(project: Path) -> set[tuple[str, str]]:
    """Edges (upstream, downstream) of the stage graph, from ``dvc dag --dot``."""
    dot = dvc(project, "dag", "--dot").stdout
    return {(a, b) for a, b in re.findall(r'"([^"]+)"\s*->\s*"([^"]+)"', dot)}


def status_clean(project: Path) -> tuple[bool, str]:
    """Whether ``dvc status`` reports everything up to date, and its output."""
    out = dvc(project, "status").stdout
    return ("Data and pipelines are up to date" in out, out)


_BASE: list[tuple[Path, Repro]] = []


def reproduced_project(tmp_path_factory: Any) -> Path:
    """The project copy with the whole pipeline reproduced once per test session.

    Tests must treat it as read-only (``dvc status`` or a no-op ``dvc repro`` at most)
    and :func:`clone_tree` it before changing anything. ``dvc.lock`` and the git-side
    outputs (metrics) are committed, as a user would before sharing.
    """
    if not _BASE:
        clips = short_clips(tmp_path_factory.mktemp("clips"))
        project = make_project(tmp_path_factory.mktemp("dvc-base") / "project", clips=clips)
        result = repro(project)
        commit_all(project, "reproduce the pipeline")
        _BASE.append((project, result))
    return _BASE[0][0]


def first_repro(tmp_path_factory: Any) -> Repro:
    """What the from-scratch ``dvc repro`` of :func:`reproduced_project` did."""
    reproduced_project(tmp_path_factory)
    return _BASE[0][1]

"""Who is in the project: the named videos, the people in them, and which are targets or sources.

params.yaml names every clip once under ``videos`` (ingested and posed once, whatever
role it plays), every person once under ``subjects`` (a video plus which of its people
to follow), and lists the subjects to train (``targets``) and the dances to transfer
onto every target (``sources``). dvc.yaml's ``foreach``/``matrix`` stages iterate over
these four keys, so adding a dance or a dancer reruns only what it touches.

:func:`load_catalog` validates all four together, because each per-name stage must
refuse a broken catalog before doing any work (a target naming a missing subject, a
subject naming a missing video, a name that is not a safe path component, an empty
list, a point outside the picture), in one sentence naming the key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dancepipe.config import CATALOG_KEYS, StageConfig, build_config, load_params
from dancepipe.errors import DancepipeError

# Top-level params keys the catalog owns.
KEYS = CATALOG_KEYS
# A name becomes a path component (data/videos/<name>, outputs/<target>/<source>.mp4) and
# part of a DVC stage name (render@<target>-<source>): letters, digits and underscores
# only, so "-" can join a pair unambiguously.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]{0,63}$")
NAME_RULE = "letters, digits and underscores, starting with a letter or digit, at most 64 characters"
# How the person to follow is chosen when the video shows several (dancepipe.pose.tracks).
PERSON_RULES = ("auto", "largest", "longest")

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class Subject(BaseModel):
    """One person: the video they are in and how to pick them among its people.

    ``person`` is ``auto`` (the person the video is about: largest box area × score over
    the frames), ``largest`` (nearest the camera), ``longest`` (seen in the most frames)
    or a point ``[x, y]`` as fractions of the picture (0..1 from the top left): the
    person standing there in the first frames (``tracking.point_frames``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    video: str
    person: Literal["auto", "largest", "longest"] | tuple[Fraction, Fraction] = "auto"


class TrackingConfig(StageConfig):
    """``tracking`` section: how detections become one person's track (the subject stage)."""

    iou: float = Field(0.2, gt=0.0, le=1.0)
    max_gap: int = Field(15, ge=0, le=100000)
    point_frames: int = Field(30, ge=1, le=100000)


class Catalog(BaseModel):
    """The validated ``videos``, ``subjects``, ``targets`` and ``sources`` of a params file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    videos: dict[str, str]
    subjects: dict[str, Subject]
    targets: list[str]
    sources: list[str]

    @field_validator("videos")
    @classmethod
    def _videos(cls, v: dict[str, str]) -> dict[str, str]:
        for name, path in v.items():
            if not str(path).strip():
                raise ValueError(f"video '{name}' has an empty path")
            if str(path).startswith("demo:"):
                # dvc.yaml lists each video as its ingest's input file: a demo clip needs its pointer file
                raise ValueError(f"video '{name}' = {path!r} is not a file; name a demo clip by its pointer file, "
                                 f"e.g. inputs/demo/{str(path)[5:]}.demo")
        return v

    def subject(self, name: str) -> Subject:
        """The subject called ``name`` (a DancepipeError when there is none)."""
        if name not in self.subjects:
            raise DancepipeError(f"params.yaml: no subject '{name}' in 'subjects' ({', '.join(self.subjects)})")
        return self.subjects[name]

    def video(self, name: str) -> str:
        """The input path of the video called ``name``."""
        if name not in self.videos:
            raise DancepipeError(f"params.yaml: no video '{name}' in 'videos' ({', '.join(self.videos)})")
        return self.videos[name]

    def pairs(self) -> list[tuple[str, str]]:
        """Every (target, source) the pipeline renders, in params order."""
        return [(t, s) for t in self.targets for s in self.sources]


def _check_name(key: str, name: Any) -> None:
    if not isinstance(name, str) or not NAME.match(name):
        raise DancepipeError(f"params.yaml: '{key}' name {name!r} is not a safe name ({NAME_RULE})")


def catalog_from(params: dict[str, Any], source: str = "params.yaml") -> Catalog:
    """Validate the catalog keys of an already-read params dict (see the module docstring)."""
    for key in KEYS:
        if key not in params:
            raise DancepipeError(f"{source}: required key '{key}' is missing")
    for key in ("videos", "subjects"):
        value = params[key]
        if not isinstance(value, dict) or not value:
            raise DancepipeError(f"{source}: '{key}' must be a non-empty mapping of names")
        for name in value:
            _check_name(key, name)
    for key in ("targets", "sources"):
        value = params[key]
        if not isinstance(value, list) or not value:
            raise DancepipeError(f"{source}: '{key}' must be a non-empty list of subject names")
        seen: set[str] = set()
        for name in value:
            _check_name(key, name)
            if name in seen:
                raise DancepipeError(f"{source}: '{key}' lists '{name}' twice")
            seen.add(name)
            if name not in params["subjects"]:
                raise DancepipeError(
                    f"{source}: '{key}' names '{name}', which is not in 'subjects' ({', '.join(params['subjects'])})"
                )
    for name, entry in params["subjects"].items():
        if not isinstance(entry, dict):
            raise DancepipeError(f"{source}: 'subjects.{name}' must be a mapping with 'video' and 'person'")
        try:
            Subject.model_validate(entry)
        except ValidationError as e:
            # a misspelt key also leaves its right spelling missing: name the misspelling
            errors = e.errors()
            first = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])
            loc = ".".join(str(x) for x in first["loc"][:1])
            if first["type"] == "extra_forbidden":
                raise DancepipeError(
                    f"{source}: unknown key 'subjects.{name}.{loc}'; valid keys are: person, video") from e
            if first["type"] == "missing":
                raise DancepipeError(f"{source}: required key 'subjects.{name}.{loc}' is missing") from e
            raise DancepipeError(
                f"{source}: 'subjects.{name}.{loc}' = {entry.get(loc)!r} is invalid: choose "
                f"{', '.join(PERSON_RULES)} or a point [x, y] with both fractions of the picture in [0, 1]"
                if loc == "person" else f"{source}: 'subjects.{name}.{loc}' is invalid ({first['msg']})"
            ) from e
        if entry["video"] not in params["videos"]:
            raise DancepipeError(
                f"{source}: 'subjects.{name}.video' names '{entry['video']}', which is not in 'videos' "
                f"({', '.join(params['videos'])})"
            )
    try:
        return Catalog.model_validate({k: params[k] for k in KEYS})
    except ValidationError as e:
        first = e.errors()[0]
        raise DancepipeError(f"{source}: '{'.'.join(str(x) for x in first['loc'])}' is invalid "
                             f"({first['msg'].removeprefix('Value error, ')})") from e


def load_catalog(params_path: str | Path = "params.yaml") -> Catalog:
    """Read and validate the catalog of ``params_path``."""
    return catalog_from(load_params(params_path), str(params_path))


def load_tracking(params_path: str | Path = "params.yaml") -> TrackingConfig:
    """The ``tracking`` section of ``params_path``."""
    params = load_params(params_path)
    return build_config(TrackingConfig, params.get("tracking"), section="tracking", source=str(params_path))

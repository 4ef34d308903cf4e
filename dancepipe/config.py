"""Typed, validated params: one frozen config class per params.yaml section.

Each stage reads exactly one section (plus, for per-subject stages, one entry in it)
into a :class:`StageConfig` subclass that rejects unknown keys. Validation failures
become a single :class:`DancepipeError` sentence naming the key, the problem and the
allowed values, raised before the stage does any work.

:data:`SECTIONS` is the explicit registry of sections → config classes; it lets
``validate_params`` check a whole params.yaml at once (the ``dancepipe check``
command and the tests use it). The top-level ``videos``, ``subjects``, ``targets``
and ``sources`` keys are not stage sections but the project's catalog of people,
validated together by :mod:`dancepipe.catalog`; ``validate_params`` only lets them
pass as known keys.
"""

from __future__ import annotations

import importlib
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from dancepipe.errors import DancepipeError

C = TypeVar("C", bound="StageConfig")


class StageConfig(BaseModel):
    """Base for all stage configs: immutable, strict about unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


# section path in params.yaml -> "module:ClassName" (imported lazily so that e.g.
# the ingest stage never imports torch).
SECTIONS: dict[str, str] = {
    "poses": "dancepipe.pose.detect:PosesConfig",
    "tracking": "dancepipe.catalog:TrackingConfig",
    "frames": "dancepipe.video.frames:FramesConfig",
    "normfit": "dancepipe.transfer.normalize:NormfitConfig",
    "labels": "dancepipe.transfer.labels:LabelsConfig",
    "train": "dancepipe.model.train:TrainConfig",
    "train_face": "dancepipe.model.face_train:FaceConfig",
    "render": "dancepipe.output.render:RenderConfig",
    "evaluate": "dancepipe.output.evaluate:EvaluateConfig",
}


# Top-level params keys that are not stage sections: the project's catalog of videos
# and people, validated together by dancepipe.catalog (which imports this module).
CATALOG_KEYS = ("videos", "subjects", "targets", "sources")


def config_class(section: str) -> type[StageConfig]:
    """Return the config class registered for a top-level params section."""
    try:
        target = SECTIONS[section]
    except KeyError as e:
        raise DancepipeError(
            f"unknown params section '{section}'; valid sections: {', '.join(sorted(SECTIONS))}"
        ) from e
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error.

    Plain YAML keeps the last of two equal keys silently; in params.yaml that would
    let a second ``subjects.walk`` quietly replace the first.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise DancepipeError(f"key '{key}' is given twice in one mapping (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read a params file into a dict, with a one-sentence error if it is unreadable."""
    p = Path(path)
    try:
        data = yaml.load(p.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except FileNotFoundError as e:
        raise DancepipeError(f"{p}: params file does not exist") from e
    except yaml.YAMLError as e:
        raise DancepipeError(f"{p}: params file is not valid YAML ({e.__class__.__name__})") from e
    except DancepipeError as e:
        raise DancepipeError(f"{p}: {e}") from e
    if not isinstance(data, dict):
        raise DancepipeError(f"{p}: params file must be a mapping of sections")
    return data


def _owner(cls: type[BaseModel], loc: list[str]) -> tuple[type[BaseModel], list[str]]:
    """Walk ``loc`` through nested config models: the model that owns the last key, and its path."""
    owner, path = cls, []
    for part in loc[:-1]:
        info = owner.model_fields.get(part)
        ann = info.annotation if info is not None else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            break
        owner = ann
        path.append(part)
    return owner, path


def _allowed(cls: type[BaseModel], field: str) -> str:
    """Describe the values ``cls.field`` accepts (a Literal's choices or numeric bounds)."""
    info = cls.model_fields.get(field)
    if info is None:
        return ""
    ann = info.annotation
    if typing.get_origin(ann) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(ann))
    bounds = []
    for m in info.metadata:
        for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("multiple_of", "a multiple of"),
                          ("pattern", "matching")):
            v = getattr(m, attr, None)
            if v is not None:
                bounds.append(f"{sym} {v}")
    return " and ".join(bounds)


def _describe(err: ValidationError, cls: type[BaseModel], section: str, source: str) -> str:
    first = err.errors()[0]
    loc = [str(x) for x in first["loc"]]
    key = ".".join([section, *loc]) if loc else section
    owner, path = _owner(cls, loc) if loc else (cls, [])
    if first["type"] == "extra_forbidden":
        valid = ", ".join(sorted(owner.model_fields))
        where = ".".join([section, *path])
        return f"{source}: unknown key '{key}'; valid keys in '{where}' are: {valid}"
    if first["type"] == "missing":
        return f"{source}: required key '{key}' is missing"
    allowed = _allowed(owner, loc[len(path)]) if len(loc) > len(path) else ""
    got = first.get("input")
    # A union field (e.g. ``bool | Literal["auto"]``) reports one error per member, with the
    # member's name appended to the location: name the field and join the alternatives.
    leaf = loc[: len(path) + 1]
    key = ".".join([section, *leaf])
    problems = [e["msg"].removeprefix("Value error, ") for e in err.errors()
                if [str(x) for x in e["loc"]][: len(leaf)] == leaf]
    problem = " or ".join(dict.fromkeys(problems))
    if isinstance(got, dict):  # a whole (sub)section failed a cross-field check
        return f"{source}: '{key}' is invalid: {problem}"
    msg = f"{source}: '{key}' = {got!r} is invalid: {problem}"
    if allowed and first["type"] not in ("literal_error", "string_pattern_mismatch"):
        msg += f" (allowed: {allowed})"
    return msg


def build_config(cls: type[C], values: dict[str, Any] | None, *, section: str, source: str = "params.yaml") -> C:
    """Validate ``values`` into ``cls``, turning pydantic's report into one sentence."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise DancepipeError(f"{source}: section '{section}' must be a mapping, got {type(values).__name__}")
    try:
        return cls.model_validate(values)
    except ValidationError as e:
        raise DancepipeError(_describe(e, cls, section, source)) from e


def load_config(section: str, params_path: str | Path = "params.yaml") -> StageConfig:
    """Load and validate one top-level section of ``params_path``."""
    params = load_params(params_path)
    if section not in params:
        raise DancepipeError(f"{params_path}: section '{section}' is missing")
    return build_config(config_class(section), params[section], section=section, source=str(params_path))


def validate_params(params_path: str | Path = "params.yaml", *, require_all: bool = False) -> dict[str, StageConfig]:
    """Validate every section of a params file; unknown sections are errors too.

    With ``require_all`` a section registered in :data:`SECTIONS` but absent from the
    file is an error as well (every stage's ``load_config`` would fail on it).
    """
    params = load_params(params_path)
    unknown = sorted(set(params) - set(SECTIONS) - set(CATALOG_KEYS))
    if unknown:
        raise DancepipeError(
            f"{params_path}: unknown section '{unknown[0]}'; valid sections: {', '.join(sorted(SECTIONS))}"
        )
    missing = [name for name in SECTIONS if name not in params]
    if require_all and missing:
        raise DancepipeError(f"{params_path}: section '{missing[0]}' is missing")
    return {
        name: build_config(config_class(name), params.get(name), section=name, source=str(params_path))
        for name in SECTIONS
        if name in params
    }

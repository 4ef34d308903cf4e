"""Params validation in one place: every section of params.yaml is a typed config.

For each section registered in ``dancepipe.config.SECTIONS`` a misspelled key, a value
of the wrong type and a value out of range are rejected with one sentence that names
the key and what is allowed; the shipped params.yaml validates; and every stage of
dvc.yaml given a misspelled key exits 1 before writing anything.
"""

from __future__ import annotations

import copy
import importlib.util
import shlex
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from pydantic import BaseModel

from dancepipe.config import SECTIONS, build_config, config_class, load_config, validate_params
from dancepipe.errors import DancepipeError
from tests.dvc_helpers import REPO, make_project

SHIPPED = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))


def shipped(section: str) -> dict[str, Any]:
    return copy.deepcopy(SHIPPED[section])


def models(cls: type[BaseModel], path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], type[BaseModel]]]:
    """The config model and every nested config model, with their key paths."""
    found = [(path, cls)]
    for name, info in cls.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            found += models(ann, (*path, name))
    return found


def leaves(cls: type[BaseModel]) -> list[tuple[tuple[str, ...], Any]]:
    """Every scalar field (not a nested model): key path and FieldInfo."""
    out = []
    for path, model in models(cls):
        for name, info in model.model_fields.items():
            ann = info.annotation
            if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
                out.append(((*path, name), info))
    return out


def put(values: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A copy of ``values`` with ``path`` set to ``value`` (creating sub-mappings)."""
    values = copy.deepcopy(values)
    node = values
    for p in path[:-1]:
        node = node.setdefault(p, {})
    node[path[-1]] = value
    return values


def rejected(section: str, values: dict[str, Any]) -> str:
    """Validate and return the error sentence (the test fails if validation passes)."""
    with pytest.raises(DancepipeError) as info:
        build_config(config_class(section), values, section=section)
    msg = str(info.value)
    assert "\n" not in msg, f"error is not one line: {msg!r}"
    return msg


def typo(name: str, taken: typing.Collection[str]) -> str:
    """A plausible misspelling of ``name`` (last letter doubled) that is not a real key."""
    t = name + name[-1]
    assert t not in taken
    return t


@pytest.mark.parametrize("section", list(SECTIONS))
def test_unknown_key_names_the_key_and_the_valid_keys(section: str) -> None:
    cls = config_class(section)
    for path, model in models(cls):
        real = next(iter(model.model_fields))
        bad = typo(real, model.model_fields)
        values = shipped(section)
        node = values
        for p in path:
            node = node[p]
        node[bad] = node.pop(real, model.model_fields[real].default)
        msg = rejected(section, values)
        dotted = ".".join((section, *path, bad))
        assert f"unknown key '{dotted}'" in msg
        for valid in model.model_fields:
            assert valid in msg, f"{valid!r} missing from {msg!r}"


def wrong_types(info: Any) -> list[Any]:
    """Values of the wrong type for a field: a list for anything scalar, a word for numbers."""
    values: list[Any] = [[1, 2]]
    if info.annotation in (int, float, bool):
        values.append("fast")
    return values


@pytest.mark.parametrize("section", list(SECTIONS))
def test_wrong_type_names_the_key(section: str) -> None:
    for path, info in leaves(config_class(section)):
        for bad in wrong_types(info):
            msg = rejected(section, put(shipped(section), path, bad))
            assert f"'{'.'.join((section, *path))}'" in msg
            assert repr(bad) in msg


def out_of_range(info: Any) -> list[tuple[Any, list[str]]]:
    """(value, words the error must contain) for each bound or choice list of a field."""
    cases: list[tuple[Any, list[str]]] = []
    ann = info.annotation
    if typing.get_origin(ann) is typing.Literal:
        choices = typing.get_args(ann)
        cases.append(("not-a-choice", [repr(c) for c in choices]))
    bounds = {attr: getattr(m, attr) for m in info.metadata
              for attr in ("ge", "gt", "le", "lt", "multiple_of") if getattr(m, attr, None) is not None}
    step = 1 if ann is int else 0.5
    lo = bounds.get("ge", bounds.get("gt"))
    hi = bounds.get("le", bounds.get("lt"))
    named = [str(v) for k, v in bounds.items() if k != "multiple_of"]
    if "ge" in bounds:
        cases.append((bounds["ge"] - step, named))
    if "gt" in bounds:
        cases.append((bounds["gt"], named))
    if "le" in bounds:
        cases.append((bounds["le"] + step, named))
    if "lt" in bounds:
        cases.append((bounds["lt"], named))
    if "multiple_of" in bounds:
        m = bounds["multiple_of"]
        v = (lo if lo is not None else 0) + m + 1
        if hi is None or v < hi:
            cases.append((v, [str(m)]))
    return cases


# Sections whose constraints are not numeric bounds or choice lists.
SPECIAL_RANGE_CASES: dict[str, list[tuple[tuple[str, ...], Any, list[str]]]] = {}


@pytest.mark.parametrize("section", list(SECTIONS))
def test_out_of_range_names_the_key_and_the_allowed_values(section: str) -> None:
    cases = [(path, value, words) for path, info in leaves(config_class(section))
             for value, words in out_of_range(info)]
    cases += SPECIAL_RANGE_CASES.get(section, [])
    assert cases, f"section '{section}' has no bounded field: use Field(ge=..., le=...) or Literal"
    for path, value, words in cases:
        msg = rejected(section, put(shipped(section), path, value))
        assert f"'{'.'.join((section, *path))}' = {value!r}" in msg, msg
        for w in words:
            assert w in msg, f"{w!r} missing from {msg!r}"


def test_shipped_params_validate_completely() -> None:
    configs = validate_params(REPO / "params.yaml", require_all=True)
    assert set(configs) == set(SECTIONS)
    for name, cfg in configs.items():
        # Every key written in params.yaml reaches the config unchanged.
        dumped = cfg.model_dump()
        for path, _info in leaves(type(cfg)):
            node: Any = SHIPPED[name]
            for p in path:
                node = node.get(p) if isinstance(node, dict) else None
            if node is not None:
                got: Any = dumped
                for p in path:
                    got = got[p]
                assert got == node, f"{name}.{'.'.join(path)}: {got!r} != {node!r}"


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_config_defaults_equal_the_shipped_params(section: str) -> None:
    """Each stage config's defaults (what a params.yaml without the key gets, and what the library's
    callers get) are the shipped params.yaml's values: the two cannot drift apart silently."""
    defaults = config_class(section)().model_dump()
    compared = 0
    for path, _info in leaves(config_class(section)):
        want: Any = SHIPPED[section]
        got: Any = defaults
        for p in path:
            want = want.get(p) if isinstance(want, dict) else None
            got = got[p]
        if want is None:  # not written in params.yaml: the default applies, nothing to drift from
            continue
        compared += 1
        assert got == want, f"{section}.{'.'.join(path)}: default {got!r} != params.yaml {want!r}"
    assert compared >= 2


def test_unknown_section_and_missing_section(tmp_path: Path) -> None:
    params = copy.deepcopy(SHIPPED)
    params["trian"] = params.pop("train")
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(params), encoding="utf-8")
    with pytest.raises(DancepipeError, match="unknown section 'trian'; valid sections: .*train"):
        validate_params(p)
    with pytest.raises(DancepipeError, match="section 'train' is missing"):
        load_config("train", p)


def load_main(script: Path) -> Any:
    assert script.is_file(), f"{script} does not exist"
    spec = importlib.util.spec_from_file_location(f"stage_{script.stem}", script)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_check_params_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    main = load_main(REPO / "stages" / "check_params.py")
    monkeypatch.chdir(REPO)
    ok = CliRunner().invoke(main, [])
    assert ok.exit_code == 0, ok.output
    assert f"{len(SECTIONS)} sections valid" in ok.output
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(put(SHIPPED, ("frames", "width"), 100)), encoding="utf-8")
    res = CliRunner().invoke(main, ["--params", str(bad)])
    assert res.exit_code == 1
    assert res.output.startswith("Error: ") and res.output.count("\n") == 1
    assert "'frames.width' = 100" in res.output and "multiple of 16" in res.output


def pipeline_stages(project: Path) -> list[Any]:
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        return [(getattr(s, "name", s.path), s.cmd, [d.def_path for d in s.deps], [o.def_path for o in s.outs])
                for s in repo.index.stages]


@pytest.fixture(scope="module")
def stages_in_dvc_yaml(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    return pipeline_stages(make_project(tmp_path_factory.mktemp("stages") / "p"))


def snapshot(root: Path) -> set[str]:
    skip = {".git", ".dvc"}
    return {str(p.relative_to(root)) for p in root.rglob("*") if not (set(p.relative_to(root).parts) & skip)}


# The params section checked for each stage group (None: only the catalog, checked by a typo in a
# subject); labels_transfer reads labels too, which labels_train checks.
STAGE_SECTION = {"ingest": None, "poses": "poses", "subject": "tracking", "frames": "frames",
                 "labels_train": "labels", "labels_transfer": "normfit", "train": "train",
                 "train_face": "train_face", "render": "render", "evaluate": "evaluate",
                 "evaluate_transfer": "evaluate", "report": None, "footage": None}
# Stages that read no params at all (dvc.yaml lists none for them, checked below); the code stage
# hashes the code (tools/dvc_deps.py) and is no stages/ command.
STAGES_WITHOUT_PARAMS = {"profile", "code"}


def test_every_stage_rejects_a_misspelled_param_before_any_work(
    stages_in_dvc_yaml: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: set[str] = set()
    checked = []
    for addressing, cmd, deps, outs in stages_in_dvc_yaml:
        group = addressing.split("@")[0]
        if group in seen:
            continue
        seen.add(group)
        if group in STAGES_WITHOUT_PARAMS:
            raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "dvc.yaml").read_text())["stages"][group]
            assert "params" not in raw.get("do", raw), f"{group} reads no params, but dvc.yaml lists some"
            continue
        section = STAGE_SECTION[group]
        project = make_project(tmp_path / group)
        # Placeholder inputs so only the params can be the problem.
        for dep in deps:
            path = project / dep
            if not path.exists():
                if Path(dep).suffix:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.touch()
                else:
                    path.mkdir(parents=True)
        params = yaml.safe_load((project / "params.yaml").read_text())
        if section is None:
            first = next(iter(params["subjects"]))
            params["subjects"][first]["vidoe"] = params["subjects"][first].pop("video")
            expected = f"unknown key 'subjects.{first}.vidoe'"
        else:
            cls = config_class(section)
            real = next(iter(cls.model_fields))
            bad = typo(real, cls.model_fields)
            params[section][bad] = params[section].pop(real)
            expected = f"unknown key '{section}.{bad}'"
        (project / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
        before = snapshot(project)

        argv = shlex.split(cmd)
        assert argv[0] == "python" and argv[1].startswith("stages/"), cmd
        main = load_main(project / argv[1])
        monkeypatch.chdir(project)
        res = CliRunner().invoke(main, argv[2:])
        assert res.exit_code == 1, f"{addressing}: exit {res.exit_code}\n{res.output}"
        error = [line for line in res.output.splitlines() if line.startswith("Error: ")]
        assert len(error) == 1 and expected in error[0], f"{addressing}: {res.output}"
        assert snapshot(project) == before, f"{addressing} wrote {snapshot(project) - before}"
        for out in outs:
            assert not (project / out).exists()
        checked.append(section)
    assert seen == set(STAGE_SECTION) | STAGES_WITHOUT_PARAMS  # every stage group of dvc.yaml was tried
    assert set(checked) == {*SECTIONS, None}  # every section, and the catalog

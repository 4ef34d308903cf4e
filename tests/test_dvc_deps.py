"""dvc.yaml lists, for every stage, the code the stage runs: no more, no less, at one granularity.

DVC reruns a stage when one of its ``deps`` changes, so code missing from the list means an
edit there leaves stale outputs behind, and extra code means needless reruns. The code a
stage runs is its command module plus every ``dancepipe`` module reachable from it through
imports; :mod:`tools.dvc_deps` computes that closure from the source (with :mod:`ast`,
nothing is imported) and writes it into dvc.yaml (``make deps``): top-level modules file by
file, and each subpackage the stage reaches either module by module or, as dvc.yaml ships,
as one directory dep. These tests hold dvc.yaml to that, and the directory deps to the
closure (every listed subpackage is used, every used module is under a listed path).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tools.dvc_deps import (
    PACKAGE,
    ROOT,
    code_closure,
    code_deps,
    direct_imports,
    granularity_of,
    module_file,
    rewrite,
)


def _stages() -> dict[str, dict]:
    raw = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    return {name: stage.get("do", stage) for name, stage in raw.items()}


def _code(stage: dict) -> list[str]:
    return [d for d in stage["deps"] if d.startswith(("stages/", f"{PACKAGE}/"))]


def _granularity() -> str:
    return granularity_of([d for s in _stages().values() for d in _code(s)])


@pytest.mark.parametrize("name", sorted(_stages()))
def test_stage_code_deps_are_its_import_closure(name: str) -> None:
    stage = _stages()[name]
    listed = _code(stage)
    command = [d for d in listed if d.startswith("stages/")]
    assert len(command) == 1, f"{name}: expected one stage module in deps, got {command}"
    assert command[0] in stage["cmd"], f"{name}: deps name {command[0]} but the command runs something else"
    expected = code_deps(command[0], _granularity())
    assert listed == expected, (
        f"{name}: missing from deps {sorted(set(expected) - set(listed))}, listed but unused "
        f"{sorted(set(listed) - set(expected))} (make deps rewrites them)"
    )


@pytest.mark.parametrize("name", sorted(_stages()))
def test_every_module_a_stage_runs_is_under_a_listed_dep_and_every_dep_is_used(name: str) -> None:
    """Independent of the generator: the closure is covered, and no listed path covers none of it."""
    listed = _code(_stages()[name])
    command = next(d for d in listed if d.startswith("stages/"))
    closure = code_closure(ROOT / command)
    for module in closure:
        assert any(module == d or module.startswith(d + "/") for d in listed), f"{name}: {module} is not covered"
    for dep in listed:
        assert any(m == dep or m.startswith(dep + "/") for m in closure), f"{name}: {dep} is listed but unused"
        assert (ROOT / dep).exists(), f"{name}: {dep} does not exist"


def test_dvc_yaml_uses_one_granularity_and_the_generator_keeps_it() -> None:
    """Every stage lists subpackages the same way, and regenerating dvc.yaml changes nothing."""
    assert {granularity_of(_code(s)) for s in _stages().values()} == {_granularity()}
    text = (ROOT / "dvc.yaml").read_text(encoding="utf-8")
    assert rewrite(text, _granularity()) == text
    # the command-line form used by `make deps`
    check = subprocess.run([sys.executable, "-m", "tools.dvc_deps", "--check"], cwd=ROOT, capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stderr


def test_the_two_granularities_list_the_same_code() -> None:
    """By module and by package name the same files; by package as fewer, wider entries."""
    for name, stage in _stages().items():
        command = next(d for d in _code(stage) if d.startswith("stages/"))
        by_module, by_package = code_deps(command, "module"), code_deps(command, "package")
        assert len(by_package) <= len(by_module), name
        assert all(any(m == p or m.startswith(p + "/") for p in by_package) for m in by_module), name
        assert [p for p in by_package if not p.endswith(".py")] == sorted(
            {"/".join(m.split("/")[:2]) for m in by_module if m.count("/") > 1}), name


def test_closure_follows_imports_transitively() -> None:
    """Render reaches the face refiner through the face checkpoint module, and no training code."""
    closure = code_closure(ROOT / "stages" / "render.py")
    assert {"dancepipe/model/face_checkpoint.py", "dancepipe/model/face_networks.py", "dancepipe/model/__init__.py",
            "dancepipe/model/networks.py", "dancepipe/__init__.py"} <= closure
    assert not {"dancepipe/model/train.py", "dancepipe/model/face_train.py", "dancepipe/model/features.py"} & closure


def test_bytecode_is_not_part_of_a_directory_dep(tmp_path: Path) -> None:
    """Python writes __pycache__ beside the sources whenever a stage runs; .dvcignore keeps it out of
    the hash of a subpackage directory dep, or every run would change its own deps."""
    from dvc.repo import Repo

    project = tmp_path / "p"
    (project / "dancepipe" / "pose" / "__pycache__").mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    (project / ".dvcignore").write_text((ROOT / ".dvcignore").read_text(encoding="utf-8"), encoding="utf-8")
    with Repo.init(str(project)) as repo:
        ignored = repo.dvcignore
        pyc = str(project / "dancepipe" / "pose" / "__pycache__" / "keypoints.cpython-311.pyc")
        assert ignored.is_ignored_file(pyc)
        assert ignored.is_ignored_file(str(project / "dancepipe" / "pose" / "keypoints.pyc"))
        assert not ignored.is_ignored_file(str(project / "dancepipe" / "pose" / "keypoints.py"))


def test_the_library_has_no_import_cycle() -> None:
    """No dancepipe module reaches itself through imports (function-level and TYPE_CHECKING ones count)."""
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts) for p in (ROOT / PACKAGE).rglob("*.py")
               if p.stem != "__init__"}
    graph = {m: direct_imports(module_file(m)) & modules for m in modules}
    cycles = []
    for start in sorted(modules):
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    cycles.append(" → ".join([*path, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert not cycles, f"import cycles: {cycles[:3]}"


def test_no_stage_script_shadows_a_standard_library_module() -> None:
    """``python stages/x.py`` puts stages/ first on sys.path, so a stages/profile.py would replace the
    standard ``profile`` module for everything the stage imports (torch._dynamo needs the real one)."""
    shadowing = sorted(p.name for p in (ROOT / "stages").glob("*.py") if p.stem in sys.stdlib_module_names)
    assert shadowing == []

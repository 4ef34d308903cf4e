"""dvc.yaml lists, for every stage, the code the stage runs: no more, no less, hashed once per command.

DVC reruns a stage when one of its ``deps`` changes, so code missing from what a stage depends
on means an edit there leaves stale outputs behind, and extra code means needless reruns. The
code a stage runs is its command module plus every ``dancepipe`` module reachable from it
through imports; :mod:`tools.dvc_deps` computes that closure from the source (with :mod:`ast`,
nothing is imported). The ``code`` stage depends on the library and the commands as
directories and writes one manifest per command, ``data/code/<command>.json``: every file of
the closure with its sha256. Each stage depends on its command's manifest and on no code
directly. These tests hold dvc.yaml to that layout (``make deps`` writes it) and the manifests
to the closure: an edit changes the manifests of exactly the commands that run the edited file.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tools.dvc_deps import (
    CODE_DIRS,
    CODE_STAGE,
    PACKAGE,
    ROOT,
    code_closure,
    code_deps,
    commands,
    direct_imports,
    manifest,
    manifest_path,
    module_file,
    rewrite,
    write_manifests,
)


def _dvc_yaml() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def _stages() -> dict[str, dict]:
    """Every stage but the code stage, as its body (``do`` of a foreach)."""
    return {name: stage.get("do", stage) for name, stage in _dvc_yaml().items() if name != CODE_STAGE}


def _code(stage: dict) -> list[str]:
    return [d for d in stage["deps"] if d.startswith(("stages/", f"{PACKAGE}/", "data/code/"))]


@pytest.mark.parametrize("name", sorted(_stages()))
def test_each_stage_depends_on_its_commands_manifest_and_on_no_code_directly(name: str) -> None:
    stage = _stages()[name]
    command = [c for c in commands(stage["cmd"])]
    assert len(command) == 1, f"{name}: expected one `python stages/<x>.py` command, got {stage['cmd']!r}"
    assert _code(stage) == [manifest_path(command[0])], (
        f"{name}: its code dep must be {manifest_path(command[0])} alone, not {_code(stage)} (make deps)")


def test_the_code_stage_hashes_every_command_and_writes_one_manifest_each() -> None:
    code = _dvc_yaml()[CODE_STAGE]
    run = sorted({c for s in _stages().values() for c in commands(s["cmd"])})
    assert code["outs"] == [manifest_path(c) for c in run]
    assert code["deps"] == [*CODE_DIRS, "tools/dvc_deps.py"]
    assert "python -m tools.dvc_deps --manifests data/code" == code["cmd"]
    # every file a manifest can name is under a directory the code stage hashes
    for command in run:
        for path in code_closure(ROOT / command):
            assert any(path.startswith(d + "/") for d in CODE_DIRS), f"{command}: {path} is outside {CODE_DIRS}"


@pytest.mark.parametrize("command", commands((ROOT / "dvc.yaml").read_text(encoding="utf-8")))
def test_a_manifest_is_the_import_closure_with_each_files_hash(command: str) -> None:
    """Independent of the generator: every module the command imports (transitively) is in its manifest,
    with the sha256 of its bytes, and nothing else is."""
    import hashlib

    files = manifest(command)["files"]
    closure = code_closure(ROOT / command)
    assert set(files) == closure
    assert command in files and f"{PACKAGE}/__init__.py" in files
    for path, digest in files.items():
        assert digest == hashlib.sha256((ROOT / path).read_bytes()).hexdigest(), path
        assert path == command or path.startswith(f"{PACKAGE}/"), path


def test_an_edit_changes_the_manifests_of_exactly_the_commands_that_run_it(tmp_path: Path) -> None:
    """On a copy of the code: write the manifests, edit one module (a comment: its bytes change), write
    them again; the manifests that changed are those of the commands whose closure holds the module.
    A module no command runs (``output/strip.py`` draws the README picture) changes none."""
    for d in (*CODE_DIRS, "tools"):
        shutil.copytree(ROOT / d, tmp_path / d, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    run = commands((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    out = tmp_path / "data" / "code"
    assert write_manifests(out, tmp_path) == run
    widths = {}
    for module in ("dancepipe/output/report.py", "dancepipe/pose/detect.py", "dancepipe/config.py",
                   "stages/labels.py", "dancepipe/output/strip.py"):
        before = {c: (out / Path(manifest_path(c)).name).read_bytes() for c in run}
        with (tmp_path / module).open("a", encoding="utf-8") as f:
            f.write("# an edit\n")
        write_manifests(out, tmp_path)
        changed = {c for c in run if (out / Path(manifest_path(c)).name).read_bytes() != before[c]}
        expected = {c for c in run if module in code_closure(tmp_path / c, tmp_path)}
        assert changed == expected, module
        widths[module] = len(changed)
    assert widths == {"dancepipe/output/report.py": 3, "dancepipe/pose/detect.py": 1, "dancepipe/config.py": len(run),
                      "stages/labels.py": 1, "dancepipe/output/strip.py": 0}
    # deterministic: writing again changes nothing
    again = {c: (out / Path(manifest_path(c)).name).read_bytes() for c in run}
    write_manifests(out, tmp_path)
    assert again == {c: (out / Path(manifest_path(c)).name).read_bytes() for c in run}
    assert json.loads(again["stages/render.py"])["command"] == "stages/render.py"


def test_dvc_yaml_is_what_make_deps_writes() -> None:
    """Regenerating dvc.yaml changes nothing, and an old layout (code listed in each stage) is replaced."""
    text = (ROOT / "dvc.yaml").read_text(encoding="utf-8")
    assert rewrite(text) == text
    # the command-line form used by `make deps`
    check = subprocess.run([sys.executable, "-m", "tools.dvc_deps", "--check"], cwd=ROOT, capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stderr
    old = text.replace("        - data/code/render.json\n", "".join(
        f"        - {d}\n" for d in code_deps("stages/render.py", "package")))
    old = old.replace("      - data/code/render.json\n", "".join(
        f"      - {d}\n" for d in code_deps("stages/render.py", "module")))
    assert old != text and rewrite(old) == text


def test_the_two_listed_granularities_name_the_same_code() -> None:
    """What bench_dvc compares: code listed in each stage by module or by package names the same files."""
    for command in commands((ROOT / "dvc.yaml").read_text(encoding="utf-8")):
        by_module, by_package = code_deps(command, "module"), code_deps(command, "package")
        assert len(by_package) <= len(by_module), command
        assert all(any(m == p or m.startswith(p + "/") for p in by_package) for m in by_module), command
        assert [p for p in by_package if not p.endswith(".py")] == sorted(
            {"/".join(m.split("/")[:2]) for m in by_module if m.count("/") > 1}), command


def test_closure_follows_imports_transitively() -> None:
    """Render reaches the face refiner through the face checkpoint module, and no training code."""
    closure = code_closure(ROOT / "stages" / "render.py")
    assert {"dancepipe/model/face_checkpoint.py", "dancepipe/model/face_networks.py", "dancepipe/model/__init__.py",
            "dancepipe/model/networks.py", "dancepipe/__init__.py"} <= closure
    assert not {"dancepipe/model/train.py", "dancepipe/model/face_train.py", "dancepipe/model/features.py"} & closure


def test_bytecode_is_not_part_of_a_directory_dep(tmp_path: Path) -> None:
    """Python writes __pycache__ beside the sources whenever a stage runs; .dvcignore keeps it out of
    the hash of the code stage's directory deps, or every run would change its own deps."""
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

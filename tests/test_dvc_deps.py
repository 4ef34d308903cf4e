"""dvc.yaml lists, for every stage, exactly the code the stage runs.

DVC reruns a stage when one of its ``deps`` changes, so a library module missing from
the list means an edit there leaves stale outputs behind, and an extra one means
needless reruns. The code a stage runs is its command module plus every ``dancepipe``
module reachable from it through imports; this test computes that closure from the
source (with :mod:`ast`, nothing is imported) and compares it with dvc.yaml.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "dancepipe"


def module_file(module: str) -> Path:
    """Source file of a ``dancepipe`` module name (the package itself is its __init__)."""
    parts = module.split(".")
    package_dir = ROOT.joinpath(*parts)
    if package_dir.is_dir():
        return package_dir / "__init__.py"
    return ROOT.joinpath(*parts[:-1], parts[-1] + ".py")


def direct_imports(path: Path) -> set[str]:
    """``dancepipe`` modules imported by one file, including the package for any of them."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == PACKAGE:  # ``from dancepipe import x`` may name a submodule
                names += [f"{PACKAGE}.{a.name}" for a in node.names
                          if module_file(f"{PACKAGE}.{a.name}").exists()]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == PACKAGE:
                # importing a submodule runs the __init__ of every package above it
                found.update(".".join(parts[:k]) for k in range(1, len(parts) + 1))
    return found


def code_closure(entry: Path) -> set[str]:
    """Repository-relative paths of ``entry`` and every dancepipe module it reaches."""
    seen: set[str] = set()
    todo = list(direct_imports(entry))
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(direct_imports(module_file(module)))
    return {entry.relative_to(ROOT).as_posix()} | {module_file(m).relative_to(ROOT).as_posix() for m in seen}


def _stages() -> dict[str, dict]:
    raw = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in raw.items()}


@pytest.mark.parametrize("name", sorted(_stages()))
def test_stage_code_deps_are_exactly_its_import_closure(name: str) -> None:
    stage = _stages()[name]
    listed = {d for d in stage["deps"] if d.startswith(("stages/", f"{PACKAGE}/"))}
    command = [d for d in listed if d.startswith("stages/")]
    assert len(command) == 1, f"{name}: expected one stage module in deps, got {command}"
    assert command[0] in stage["cmd"], f"{name}: deps name {command[0]} but the command runs something else"
    expected = code_closure(ROOT / command[0])
    assert listed == expected, (
        f"{name}: missing from deps {sorted(expected - listed)}, listed but unused {sorted(listed - expected)}"
    )


def test_closure_follows_imports_transitively() -> None:
    """Render reaches the face refiner through the face checkpoint module, and no training code."""
    closure = code_closure(ROOT / "stages" / "render.py")
    assert {"dancepipe/model/face_checkpoint.py", "dancepipe/model/face_networks.py", "dancepipe/model/__init__.py",
            "dancepipe/model/networks.py", "dancepipe/__init__.py"} <= closure
    assert not {"dancepipe/model/train.py", "dancepipe/model/face_train.py", "dancepipe/model/features.py"} & closure


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
    import sys

    shadowing = sorted(p.name for p in (ROOT / "stages").glob("*.py") if p.stem in sys.stdlib_module_names)
    assert shadowing == []

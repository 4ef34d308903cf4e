"""dvc_deps: the code each stage runs, hashed once per ``dvc`` command, and dvc.yaml's deps on it.

DVC reruns a stage when one of its ``deps`` changes. The code a stage runs is its command
module plus every ``dancepipe`` module reachable from it through imports (found with
:mod:`ast`, nothing is imported). DVC checks every dep of every stage on every command, so
listing that code in each of a catalog's hundreds of stages made it hash the same files and
directories hundreds of times. Instead one stage, ``code``, depends on the library and the
stage commands as directories and writes one small manifest per command module,
``data/code/<command>.json``: the path and sha256 of every file that command runs. Each
stage depends on its command's manifest (one file dep), so:

* a no-op ``dvc repro`` walks the code once, whatever the size of the catalog;
* an edit reruns ``code`` (well under a second), which rewrites the manifests; only those
  whose content changed, the commands whose closure holds the edited file, rerun their
  stages. An edit to a module no command reaches reruns nothing else.

``python -m tools.dvc_deps`` rewrites dvc.yaml in place: the ``code`` stage (one manifest
per command a stage runs) and each stage's code dep (comments and everything else kept);
``--check`` only says whether it is current (exit 1 when not). ``make deps`` runs it, after
adding a stage or a command module; adding or moving a library module needs nothing.
``--manifests DIR`` is the ``code`` stage's command.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "dancepipe"
MANIFESTS = "data/code"
CODE_STAGE = "code"
# what the code stage hashes as directories: every file a manifest can name is under one of them
CODE_DIRS = (PACKAGE, "stages")
CMD = re.compile(r"python (stages/\w+\.py)")
# a stage's code dep: its command's manifest (or, in a dvc.yaml from before the manifests, its
# command module and library paths listed one by one; `make deps` replaces those too)
CODE_DEP = re.compile(rf"^(\s*)- (?:{MANIFESTS}/\w+\.json|stages/\w+\.py|{PACKAGE}/\S*)\s*(#.*)?$")
STAGE_KEY = re.compile(r"^  (\w+):\s*(#.*)?$")


def module_file(module: str, root: Path = ROOT) -> Path:
    """Source file of a ``dancepipe`` module name (a package is its __init__)."""
    parts = module.split(".")
    package_dir = root.joinpath(*parts)
    if package_dir.is_dir():
        return package_dir / "__init__.py"
    return root.joinpath(*parts[:-1], parts[-1] + ".py")


def direct_imports(path: Path, root: Path = ROOT) -> set[str]:
    """``dancepipe`` modules imported by one file, including the package above any of them."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == PACKAGE:  # ``from dancepipe import x`` may name a submodule
                names += [f"{PACKAGE}.{a.name}" for a in node.names
                          if module_file(f"{PACKAGE}.{a.name}", root).exists()]
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


def code_closure(entry: Path, root: Path = ROOT) -> set[str]:
    """Repository-relative paths of ``entry`` and of every dancepipe module it reaches."""
    seen: set[str] = set()
    todo = list(direct_imports(entry, root))
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(direct_imports(module_file(module, root), root))
    return {entry.relative_to(root).as_posix()} | {module_file(m, root).relative_to(root).as_posix() for m in seen}


def coarsen(paths: set[str]) -> set[str]:
    """Module files inside a subpackage become that subpackage's directory (``dancepipe/pose``)."""
    out = set()
    for p in paths:
        parts = p.split("/")
        out.add("/".join(parts[:2]) if parts[0] == PACKAGE and len(parts) > 2 else p)
    return out


def code_deps(command: str, by: str = "module", root: Path = ROOT) -> list[str]:
    """The code a stage running ``command`` (``stages/x.py``) runs, as deps listed in each stage would be:
    the command module first, then the library paths sorted; ``by="package"`` lists each subpackage as
    its directory. (dvc.yaml lists manifests instead; bench_dvc compares the granularities.)"""
    closure = code_closure(root / command, root)
    if by == "package":
        closure = coarsen(closure)
    return [command, *sorted(closure - {command})]


def manifest_path(command: str) -> str:
    """The manifest of a command module: ``stages/render.py`` -> ``data/code/render.json``."""
    return f"{MANIFESTS}/{Path(command).stem}.json"


def manifest(command: str, root: Path = ROOT) -> dict[str, object]:
    """What ``command`` runs: its closure, each file with the sha256 of its bytes (comments count)."""
    files = {p: hashlib.sha256((root / p).read_bytes()).hexdigest() for p in sorted(code_closure(root / command, root))}
    return {"command": command, "files": files}


def commands(dvc_yaml: str) -> list[str]:
    """The command modules the stages of a dvc.yaml text run, sorted."""
    return sorted(set(CMD.findall(dvc_yaml)))


def write_manifests(out: Path, root: Path = ROOT) -> list[str]:
    """Write the manifest of every command dvc.yaml runs under ``out`` (each atomically); those commands."""
    out.mkdir(parents=True, exist_ok=True)
    written = commands((root / "dvc.yaml").read_text(encoding="utf-8"))
    for command in written:
        path = out / Path(manifest_path(command)).name
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(manifest(command, root), indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    return written


def code_stage(commands_run: list[str]) -> list[str]:
    """The lines of the ``code`` stage: the code as directories in, one manifest per command out."""
    return [
        f"  {CODE_STAGE}:   # written by `make deps`: the code each command runs, hashed once per dvc command",
        f"    cmd: python -m tools.dvc_deps --manifests {MANIFESTS}",
        "    deps:",
        *(f"      - {d}" for d in CODE_DIRS),
        "      - tools/dvc_deps.py",
        "    outs:",
        *(f"      - {manifest_path(c)}" for c in commands_run),
        "",
    ]


def rewrite(text: str) -> str:
    """dvc.yaml ``text`` with the ``code`` stage regenerated (first among the stages) and each stage's run
    of code-dep lines replaced by its command's manifest."""
    lines = text.split("\n")
    # drop the code stage (up to the next stage), then put the current one first
    out: list[str] = []
    skipping = False
    for line in lines:
        if m := STAGE_KEY.match(line):
            skipping = m.group(1) == CODE_STAGE
        elif line[:1] not in ("", " ", "#"):  # a top-level key after the stages
            skipping = False
        if not skipping:
            out.append(line)
    start = out.index("stages:") + 1
    out[start:start] = code_stage(commands(text))
    lines, out = out, []
    command = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if m := CMD.search(line):
            command = m.group(1)
        if (m := CODE_DEP.match(line)) and command:
            while i < len(lines) and CODE_DEP.match(lines[i]):
                i += 1
            out.append(f"{m.group(1)}- {manifest_path(command)}")
            command = None  # one run of code deps per stage
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only check; exit 1 if dvc.yaml is not current")
    ap.add_argument("--dvc-yaml", type=Path, default=ROOT / "dvc.yaml")
    ap.add_argument("--manifests", type=Path, default=None, metavar="DIR",
                    help="write the code manifests of dvc.yaml's commands into DIR (the code stage's command)")
    args = ap.parse_args(argv)
    if args.manifests:
        written = write_manifests(args.manifests, args.dvc_yaml.parent.resolve())
        print(f"{args.manifests}: the code manifests of {len(written)} commands")
        return 0
    text = args.dvc_yaml.read_text(encoding="utf-8")
    new = rewrite(text)
    if new == text:
        print(f"{args.dvc_yaml.name}: code deps are current")
        return 0
    if args.check:
        print(f"{args.dvc_yaml.name}: code deps are out of date; run `make deps`", file=sys.stderr)
        return 1
    args.dvc_yaml.write_text(new, encoding="utf-8")
    print(f"{args.dvc_yaml.name}: code deps rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())

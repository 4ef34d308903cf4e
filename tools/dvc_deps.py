"""dvc_deps: write every stage's code deps into dvc.yaml from what its command imports.

DVC reruns a stage when one of its ``deps`` changes. The code a stage runs is its command
module plus every ``dancepipe`` module reachable from it through imports (found with
:mod:`ast`, nothing is imported). Each stage lists that closure, so an edit reruns the
stages that run the edited file and no others:

* the stage's command module, ``stages/<name>.py``;
* the top-level library modules it reaches (``dancepipe/config.py``, ...), file by file;
* the subpackages it reaches (``dancepipe/pose/``, ...): with ``--by module`` (the default)
  each module it reaches, file by file; with ``--by package`` the whole subpackage as one
  directory dep (one hashed entry in dvc.lock, but an edit anywhere in it reruns the stage).

``python -m tools.dvc_deps`` rewrites dvc.yaml in place (comments and everything else kept);
``--check`` only says whether it is current (exit 1 when not). ``make deps`` runs it.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "dancepipe"
GRANULARITIES = ("module", "package")
CMD = re.compile(r"python (stages/\w+\.py)")
CODE_DEP = re.compile(rf"^(\s*)- (?:stages/\w+\.py|{PACKAGE}/\S*)\s*$")


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
    """The code deps of a stage whose command module is ``command`` (``stages/x.py``), in dvc.yaml order:
    the command module first, then the library paths sorted."""
    closure = code_closure(root / command, root)
    if by == "package":
        closure = coarsen(closure)
    return [command, *sorted(closure - {command})]


def granularity_of(deps: list[str]) -> str:
    """``package`` when a stage lists subpackage directories, ``module`` otherwise."""
    return "package" if any(d.startswith(f"{PACKAGE}/") and not d.endswith(".py") for d in deps) else "module"


def rewrite(text: str, by: str, root: Path = ROOT) -> str:
    """dvc.yaml ``text`` with each stage's run of code-dep lines replaced by :func:`code_deps`."""
    lines = text.split("\n")
    out: list[str] = []
    command = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if m := CMD.search(line):
            command = m.group(1)
        if (m := CODE_DEP.match(line)) and command:
            indent = m.group(1)
            while i < len(lines) and CODE_DEP.match(lines[i]):
                i += 1
            out += [f"{indent}- {d}" for d in code_deps(command, by, root)]
            command = None  # one run of code deps per stage
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--by", choices=GRANULARITIES, default=None,
                    help="module: file by file; package: one directory per subpackage "
                         "(default: what dvc.yaml uses now)")
    ap.add_argument("--check", action="store_true", help="only check; exit 1 if dvc.yaml is not current")
    ap.add_argument("--dvc-yaml", type=Path, default=ROOT / "dvc.yaml")
    args = ap.parse_args(argv)
    text = args.dvc_yaml.read_text(encoding="utf-8")
    by = args.by or granularity_of([ln.strip()[2:] for ln in text.split("\n") if CODE_DEP.match(ln)])
    new = rewrite(text, by, args.dvc_yaml.parent.resolve())
    if new == text:
        print(f"{args.dvc_yaml.name}: code deps are current (by {by})")
        return 0
    if args.check:
        print(f"{args.dvc_yaml.name}: code deps are out of date; run `make deps`", file=sys.stderr)
        return 1
    args.dvc_yaml.write_text(new, encoding="utf-8")
    print(f"{args.dvc_yaml.name}: code deps rewritten (by {by})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

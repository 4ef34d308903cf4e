"""prune_lock: drop from dvc.lock the entries of stages that dvc.yaml no longer defines.

``dvc repro`` updates the dvc.lock entry of every stage it checks but never removes one:
when a dance or a target leaves the catalog in params.yaml, the ``foreach``/``matrix``
stages it expanded to stop existing, yet their entries stay in dvc.lock, which DVC reads
(and parses in full) several times in every ``dvc repro`` and ``dvc status``. ``dvc remove``
cannot help: it removes a stage *defined* in dvc.yaml, and a templated one only as a whole.

``python -m tools.prune_lock`` (``make prune-lock``) rewrites each dvc.lock without the
entries no stage of its dvc.yaml has, leaving every other entry as it was; ``--dry-run``
lists them only. The outputs those stages made stay in the DVC cache and in the run cache,
so putting the name back in the catalog restores them ("Stage ... is cached - skipping run").
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def stale_entries(root: Path) -> dict[str, list[str]]:
    """For each dvc.lock under ``root`` (repository-relative path): the stage names it holds
    that its dvc.yaml does not define, sorted."""
    from dvc.dvcfile import LOCK_FILE, ProjectFile
    from dvc.repo import Repo
    from dvc.utils.serialize import load_yaml

    with Repo(str(root)) as repo:
        defined: dict[str, set[str]] = {}
        for stage in repo.index.stages:
            if isinstance(stage.dvcfile, ProjectFile):
                lock = os.path.join(os.path.dirname(stage.dvcfile.path), LOCK_FILE)
                defined.setdefault(lock, set()).add(stage.name)
        stale = {}
        for lock, names in defined.items():
            entries = (load_yaml(lock, fs=repo.fs) or {}).get("stages") or {}
            if extra := sorted(set(entries) - names):
                stale[os.path.relpath(lock, repo.root_dir)] = extra
    return stale


def prune(root: Path) -> dict[str, list[str]]:
    """Remove :func:`stale_entries` from their dvc.lock files (under DVC's repository lock); what was removed."""
    from dvc.repo import Repo
    from dvc.utils.serialize import modify_yaml

    stale = stale_entries(root)
    if not stale:
        return stale
    with Repo(str(root)) as repo, repo.lock:
        for rel, names in stale.items():
            with modify_yaml(os.path.join(repo.root_dir, rel), fs=repo.fs) as data:
                for name in names:
                    data["stages"].pop(name, None)
    return stale


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="list the entries, change nothing")
    ap.add_argument("--root", type=Path, default=Path.cwd(), help="the DVC repository (default: here)")
    args = ap.parse_args(argv)
    found = (stale_entries if args.dry_run else prune)(args.root)
    verb = "would remove" if args.dry_run else "removed"
    for lock, names in found.items():
        print(f"{lock}: {verb} {len(names)} entries of stages dvc.yaml no longer defines: {', '.join(names)}")
    if not found:
        print("dvc.lock holds only stages that dvc.yaml defines")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Atomic outputs: write to a temporary sibling, rename into place when complete.

A stage that fails half-way must leave no partial output behind, so DVC and the user
never mistake a truncated file for a finished one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str], *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success rename it to ``final``.

    With ``directory=True`` the temporary path is an existing empty directory, otherwise
    it is a file path that does not exist yet (the caller creates it). On any exception
    the temporary path is deleted and ``final`` is left untouched. The suffix of
    ``final`` is kept so libraries that dispatch on the extension still work.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{final.name}.tmp-"
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=final.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=final.suffix, dir=final.parent)
        os.close(fd)
        tmp = Path(name)
        tmp.unlink()
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{tmp} was never written")
        if directory:
            # Directories cannot be replaced atomically; move the old one aside first.
            if final.exists():
                old = final.with_name(f".{final.name}.old-{os.getpid()}")
                _remove(old)
                os.replace(final, old)
                os.replace(tmp, final)
                _remove(old)
            else:
                os.replace(tmp, final)
        else:
            if final.is_dir():
                shutil.rmtree(final)
            os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise


def atomic_write_text(final: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``final`` atomically (UTF-8)."""
    with atomic_path(final) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def removed_on_failure(*paths: str | os.PathLike[str] | None) -> Iterator[None]:
    """Outputs one stage writes one after another: on any exception remove those already written.

    Each output is itself written atomically; this keeps a stage that fails after its first
    output from leaving that one behind. ``None`` entries (optional outputs not asked for)
    are skipped.
    """
    try:
        yield
    except BaseException:
        for path in paths:
            if path is not None:
                _remove(Path(path))
        raise

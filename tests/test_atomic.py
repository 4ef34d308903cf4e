"""Atomic outputs: what a failed stage leaves behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from dancepipe.atomic import atomic_path, removed_on_failure


def _write(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def test_outputs_written_before_a_failure_are_removed(tmp_path: Path) -> None:
    first, second, folder = tmp_path / "a" / "stats.json", tmp_path / "plot.png", tmp_path / "labels"
    with pytest.raises(RuntimeError, match="drawing failed"), removed_on_failure(first, None, second, folder):
        _write(first, "{}")
        folder.mkdir()
        (folder / "000000.png").write_bytes(b"x")
        raise RuntimeError("drawing failed")
    assert not first.exists() and not second.exists() and not folder.exists()
    assert first.parent.is_dir()  # only the outputs go, not the folders they sit in


def test_outputs_stay_when_the_work_succeeds(tmp_path: Path) -> None:
    first, second = tmp_path / "stats.json", tmp_path / "plot.png"
    with removed_on_failure(first, second):
        _write(first, "{}")
        _write(second, "png")
    assert first.read_text(encoding="utf-8") == "{}" and second.read_text(encoding="utf-8") == "png"

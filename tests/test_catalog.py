"""The catalog (videos, subjects, targets, sources): every bad shape is one sentence before any work."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from dancepipe.catalog import catalog_from, load_catalog
from dancepipe.config import validate_params
from dancepipe.errors import DancepipeError

REPO = Path(__file__).resolve().parents[1]
GOOD = {
    "videos": {"me": "inputs/me.mp4", "clip": "inputs/clip.mp4"},
    "subjects": {"me": {"video": "me", "person": "auto"}, "walk": {"video": "clip", "person": [0.2, 0.8]}},
    "targets": ["me"],
    "sources": ["walk", "me"],
}


def _with(**changes) -> dict:
    params = copy.deepcopy(GOOD)
    for dotted, value in changes.items():
        node = params
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return params


def test_the_shipped_catalog_is_the_demo():
    c = load_catalog(REPO / "params.yaml")
    assert c.targets == ["dancer"] and c.sources == ["walker", "jumper", "pose2sim"]
    assert c.subject("walker").video == c.subject("jumper").video == "sports2d"  # one clip, two people
    assert c.subject("jumper").person == (0.37, 0.25)
    assert c.pairs() == [("dancer", "walker"), ("dancer", "jumper"), ("dancer", "pose2sim")]
    for path in c.videos.values():
        assert (REPO / path).is_file(), path  # every video is a file dvc.yaml can list as a dep


def test_a_good_catalog_reads_back():
    c = catalog_from(GOOD)
    assert c.video("clip") == "inputs/clip.mp4" and c.subject("walk").person == (0.2, 0.8)
    assert c.pairs() == [("me", "walk"), ("me", "me")]  # a target may also dance as a source


@pytest.mark.parametrize("params, message", [
    (_with(targets=[]), "'targets' must be a non-empty list of subject names"),
    (_with(sources=None), "'sources' must be a non-empty list of subject names"),
    (_with(videos={}), "'videos' must be a non-empty mapping of names"),
    (_with(targets=["you"]), "'targets' names 'you', which is not in 'subjects' (me, walk)"),
    (_with(sources=["walk", "walk"]), "'sources' lists 'walk' twice"),
    (_with(subjects__walk={"video": "elsewhere"}), "'subjects.walk.video' names 'elsewhere', which is not in 'videos'"),
    (_with(subjects__walk={"video": "clip", "person": [1.2, 0.5]}),
     "'subjects.walk.person' = [1.2, 0.5] is invalid: choose auto, largest, longest or a point [x, y] with both "
     "fractions of the picture in [0, 1]"),
    (_with(subjects__walk={"video": "clip", "person": "tallest"}), "'subjects.walk.person' = 'tallest' is invalid"),
    (_with(subjects__walk={"video": "clip", "who": "auto"}), "unknown key 'subjects.walk.who'"),
    (_with(subjects__walk={"person": "auto"}), "required key 'subjects.walk.video' is missing"),
    (_with(videos={"me": "inputs/me.mp4", "clip": "inputs/clip.mp4", "../up": "x.mp4"}),
     "'videos' name '../up' is not a safe name (letters, digits and underscores"),
    (_with(targets=["me-2"]), "'targets' name 'me-2' is not a safe name"),
    (_with(videos={"me": "  ", "clip": "inputs/clip.mp4"}), "video 'me' has an empty path"),
])
def test_bad_catalogs_are_one_sentence_naming_the_key(params, message):
    with pytest.raises(DancepipeError) as e:
        catalog_from(params)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_a_name_given_twice_is_refused(tmp_path: Path):
    """YAML would keep the second of two equal keys silently; params.yaml refuses it."""
    params = tmp_path / "params.yaml"
    params.write_text("videos:\n  a: inputs/a.mp4\n  a: inputs/b.mp4\n")
    with pytest.raises(DancepipeError, match=r"params.yaml: key 'a' is given twice in one mapping \(line 3\)"):
        load_catalog(params)


def test_validate_params_knows_the_catalog_keys(tmp_path: Path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(GOOD))
    assert validate_params(params) == {}


def test_ingest_stage_refuses_a_bad_catalog_before_any_work(tmp_path: Path):
    from stages.ingest import main

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(_with(targets=["nobody"])))
    out = tmp_path / "data" / "videos" / "me"
    res = CliRunner().invoke(main, ["--name", "me", "--out", str(out), "--params", str(params)])
    assert res.exit_code == 1
    assert res.output.strip().splitlines()[-1].endswith("'targets' names 'nobody', which is not in 'subjects' (me, walk)")
    assert not out.parent.exists()


def test_every_stage_checks_the_catalog_first(tmp_path: Path):
    """A stage that reads no catalog key (frames) still stops on a broken catalog, with its sentence:
    whichever stage DVC runs first, the user reads what is wrong with params.yaml."""
    from stages.frames import main

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({**_with(sources=["me", "ghost"]), "frames": {}}))
    out = tmp_path / "data" / "frames" / "me"
    res = CliRunner().invoke(main, ["--video", str(tmp_path / "none"), "--poses", str(tmp_path / "none.parquet"),
                                    "--out", str(out), "--params", str(params)])
    assert res.exit_code == 1
    assert "'sources' names 'ghost', which is not in 'subjects' (me, walk)" in res.output
    assert not out.parent.exists()
    # without catalog keys (a stage run by hand on its own section) the stage goes on to its own checks
    params.write_text(yaml.safe_dump({"frames": {}}))
    res = CliRunner().invoke(main, ["--video", str(tmp_path / "none"), "--poses", str(tmp_path / "none.parquet"),
                                    "--out", str(out), "--params", str(params)])
    assert res.exit_code == 1 and "ghost" not in res.output and "none.parquet" in res.output


def test_prune_lock_drops_the_entries_of_names_removed_from_the_catalog(tmp_path: Path):
    """DVC keeps a removed foreach item's dvc.lock entry through `dvc repro`; tools.prune_lock drops
    exactly the entries no stage defines, and the project stays up to date. (A two-stage project with
    trivial commands: tests/test_dvc_pipeline.py does the same on the real pipeline.)"""
    import subprocess
    import sys

    from tests.dvc_helpers import commit_all, dvc, env, git, repro

    project = tmp_path / "p"
    project.mkdir()
    (project / "w.py").write_text("import sys, pathlib\npathlib.Path(sys.argv[1]).write_text(sys.argv[2])\n")
    (project / "params.yaml").write_text(yaml.safe_dump({"sources": ["a", "b", "c"], "crf": 18}))
    (project / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "render": {"foreach": "${sources}", "do": {"cmd": "python w.py ${item}.out ${crf}", "deps": ["w.py"],
                                                   "params": ["crf"], "outs": ["${item}.out"]}},
        "report": {"cmd": "python w.py report.out x", "params": ["sources"], "outs": ["report.out"]}}}))
    git(project, "init", "-q", "-b", "main")
    dvc(project, "init", "-q")
    assert repro(project).ran == {"render@a", "render@b", "render@c", "report"}
    commit_all(project, "three sources")

    def lock() -> dict:
        return yaml.safe_load((project / "dvc.lock").read_text())["stages"]

    kept = lock()
    (project / "params.yaml").write_text(yaml.safe_dump({"sources": ["a", "c"], "crf": 18}))
    assert repro(project).ran == {"report"}
    assert "render@b" in lock()  # what DVC does: the removed stage's entry stays

    def prune(*args: str) -> str:
        return subprocess.run([sys.executable, "-m", "tools.prune_lock", *args], cwd=project, env=env(REPO),
                              check=True, capture_output=True, text=True).stdout

    assert "would remove 1 entries of stages dvc.yaml no longer defines: render@b" in prune("--dry-run")
    assert "render@b" in lock()
    assert "removed 1 entries" in prune()
    assert set(lock()) == {"render@a", "render@c", "report"}
    assert {k: lock()[k] for k in ("render@a", "render@c")} == {k: kept[k] for k in ("render@a", "render@c")}
    assert "Data and pipelines are up to date" in dvc(project, "status").stdout
    assert "dvc.lock holds only stages that dvc.yaml defines" in prune()

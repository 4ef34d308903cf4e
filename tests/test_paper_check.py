"""benchmarks/paper_check.py: its pieces on real inputs (the whole check is `make paper-check`)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import yaml

from benchmarks.paper_check import (
    CHECK,
    GPU_RECIPES,
    RECIPE,
    format_table,
    main,
    recipe_config,
    slice_poses,
    slice_subject,
    write_params,
)
from dancepipe.config import load_config
from dancepipe.pose.keypoints import read_table
from dancepipe.video.decode import iter_frames, probe
from tests.conftest import write_video
from tests.fixtures.labels import depth_walk, write_pose_table

ROOT = Path(__file__).resolve().parents[1]


def _paper_section() -> str:
    text = (ROOT / "docs" / "train.md").read_text()
    return text.split("## Paper-scale training on GPUs", 1)[1].split("\n## ", 1)[0]


def test_the_docs_give_the_recipe_the_check_runs():
    section = _paper_section()
    command = next(line for line in section.splitlines() if line.startswith("dvc exp run"))
    words = shlex.split(command)
    pairs = dict(words[i + 1].split("=", 1) for i, w in enumerate(words) if w == "-S")
    assert {k: yaml.safe_load(v) for k, v in pairs.items()} == RECIPE


def test_the_docs_table_of_gpu_recipes_has_each_card():
    section = _paper_section()
    for card, _, overrides in GPU_RECIPES:
        row = next(line for line in section.splitlines() if line.startswith(f"| {card}"))
        cfg, _ = recipe_config(overrides)
        assert f"| {cfg.batch_size} |" in row and f"| {cfg.ngf} |" in row, row
        assert "computed" in row


def test_the_params_file_restricts_the_catalog_and_sets_the_recipe(tmp_path: Path):
    out = tmp_path / "params.yaml"
    write_params(ROOT / "params.yaml", out, {**RECIPE, **CHECK})
    params = yaml.safe_load(out.read_text())
    assert params["targets"] == ["dancer"] and params["sources"] == ["walker"]
    assert set(params["subjects"]) == {"dancer", "walker"}
    assert set(params["videos"]) == {"dancer", "sports2d"}
    train = load_config("train", out)
    assert (train.ngf, train.n_downsample, train.n_blocks, train.local_enhancer, train.num_d) == (64, 3, 9, True, 3)
    assert (train.steps, train.checkpoint_every, train.feature_net, train.devices) == (3, 2, "pose_backbone", 1)
    frames = load_config("frames", out)
    assert (frames.width, frames.height) == (512, 1024)


def test_slice_subject_cuts_video_and_pose_table_to_the_same_frames(tmp_path: Path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (9, 48, 64, 3), dtype=np.uint8)
    src = tmp_path / "subject"
    src.mkdir()
    write_video(src / "video.mp4", list(images), fps=10)
    (src / "meta.json").write_text('{"file": "video.mp4", "origin": "synthetic"}')
    write_pose_table(src / "poses.parquet", depth_walk(9, 40, 44, 20, 22), 64, 48, fps=10)
    n = slice_subject(src, tmp_path / "cut", 5)
    assert n == 5
    assert len(list(iter_frames(tmp_path / "cut" / "video.mp4"))) == 5
    df, meta = read_table(tmp_path / "cut" / "poses.parquet")
    assert df["frame"].tolist() == [0, 1, 2, 3, 4]
    assert np.allclose(df["timestamp"], np.arange(5) / 10)
    assert meta["width"] == 64
    assert probe(tmp_path / "cut" / "video.mp4").frame_count == 5


def test_slice_poses_takes_the_first_run_that_shows_the_person(tmp_path: Path):
    found = np.array([0, 1, 1, 0, 1, 1, 1, 1, 0], bool)
    src = write_pose_table(tmp_path / "p.parquet", depth_walk(9, 40, 44, 20, 22), 64, 48, person_found=found)
    assert slice_poses(src, tmp_path / "cut.parquet", 3) == (4, 6)
    df, _ = read_table(tmp_path / "cut.parquet")
    assert df["frame"].tolist() == [4, 5, 6] and df["person_found"].all()


def test_format_table_pads_columns_under_a_title():
    text = format_table("memory", ("what", "total"), [("paper recipe", "8.9 GiB"), ("12 GB", "7.3 GiB")])
    lines = text.splitlines()
    assert lines[0] == "memory"
    assert lines[1] == "what          total"
    assert re.fullmatch(r"-{12}  -{7}", lines[2])
    assert lines[3] == "paper recipe  8.9 GiB"
    assert lines[4] == "12 GB         7.3 GiB"


def test_missing_subjects_are_one_sentence_and_exit_1(tmp_path: Path, capsys):
    assert main(["--target", str(tmp_path / "none"), "--source", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "dvc repro subject@dancer subject@walker" in err

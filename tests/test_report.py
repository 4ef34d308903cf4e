"""The report: the index (outputs/report.html) over every target and dance, and the pages it links.

:func:`build_outputs` lays out ``outputs/`` the way the pipeline does from real renders
(the render stage's code on a tiny generator); tests/test_report_browser.py opens the
same pages in Chromium.
"""

from __future__ import annotations

import base64
import html.parser
import json
import types
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from dancepipe.output.evaluate import EvaluateConfig, pose_weights_note
from dancepipe.output.render import RenderConfig, run_render
from dancepipe.output.report import Evaluation, PairPaths, target_page, write_report
from dancepipe.video.decode import iter_frames, probe
from stages.report import main
from tests.conftest import write_video
from tests.fixtures.render import sway_keypoints, write_labels_dir, write_tiny_generator
from tests.test_sidebyside import write_pose_table

REPO = Path(__file__).resolve().parent.parent
CATALOG = {
    "videos": {"me": "inputs/me.mp4", "clip": "inputs/clip.mp4"},
    "subjects": {"me": {"video": "me"}, "walk": {"video": "clip"}, "jump": {"video": "clip", "person": [0.4, 0.2]}},
    "targets": ["me"],
    "sources": ["walk", "jump"],
}
W, H = 64, 96  # label size: the side-by-side is source | stick figure | generated, each W x H
DANCES = {"walk": (24, 12), "jump": (15, 10)}  # source: (frames, fps) of its clip, so each video has its own length


class _Page(html.parser.HTMLParser):
    """Table rows (cell texts), links, videos and images of a page, read back the way a browser would."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.links: list[str] = []
        self.videos: list[dict[str, str]] = []
        self.images: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "a":
            self.links.append(a["href"])
        elif tag == "video":
            self.videos.append(a)
        elif tag == "img":
            self.images.append(a["src"])

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def read_page(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def render_dance(root: Path, outputs: Path, target: str, source: str) -> PairPaths:
    """Render a dance with the render stage's code (a tiny untrained generator) where the pipeline puts it."""
    n, fps = DANCES[source]
    work = root / f"work-{source}"
    centre = np.array([W / 2, H / 2])
    kps = sway_keypoints(n, W, H)
    kps[..., :2] = (kps[..., :2] - centre) * 0.5 + centre
    labels = write_labels_dir(work / "labels", kps, W, H, fps=fps)
    src = kps.copy()  # the source: a white box around the figure at twice its size, walking right
    src[..., :2] = 2 * (kps[..., :2] - centre) + np.stack([40.0 + 3 * np.arange(n), np.full(n, 60.0)], 1)[:, None]
    lo, hi = src[..., :2].min(axis=1), src[..., :2].max(axis=1)
    boxes = np.round(np.concatenate([lo - 0.15 * (hi - lo), hi + 0.15 * (hi - lo)], axis=1)).astype(int)
    clip = []
    for x0, y0, x1, y1 in boxes:
        img = np.full((120, 160, 3), (40, 60, 90), np.uint8)
        img[max(y0, 0):y1, max(x0, 0):x1] = 255
        clip.append(img)
    paths = PairPaths.of(target, source)
    run_render(RenderConfig(device="cpu", preset="ultrafast"), generator_path=write_tiny_generator(work / "g.pt"),
               face_path=None, labels_dir=labels, source_video=write_video(work / "clip.mp4", clip, fps=fps),
               source_poses=write_pose_table(work / "poses.parquet", boxes, kps=src),
               out=outputs / paths.video, side_by_side_out=outputs / paths.side_by_side)
    return paths


def holdout_evaluation(seed: int = 0) -> Evaluation:
    """A held-out evaluation with four sample frames (label | generated | baseline | real)."""
    rng = np.random.default_rng(seed)
    samples = [(f, [rng.integers(0, 255, (H, W, 3), dtype=np.uint8) for _ in range(4)]) for f in (3, 9, 15, 21)]
    per_frame = pd.DataFrame({"frame": [3, 9, 15, 21], "ssim": [0.8, 0.82, 0.79, 0.81],
                              "baseline_frame": [2, 8, 14, 20]})
    return Evaluation({"ssim_box": 0.8561, "baseline_ssim_box": 0.8129, "warp_error_real": 0.0123},
                      per_frame, samples)


def build_outputs(root: Path, *, evaluated: tuple[str, ...] = ("walk", "jump"),
                  rendered: tuple[str, ...] = ("walk", "jump")) -> Path:
    """``outputs/`` and ``metrics/eval`` as the pipeline leaves them for target ``me`` and the
    ``rendered`` dances, then the report stage's index; returns ``outputs/report.html``."""
    outputs, metrics = root / "outputs", root / "metrics" / "eval"
    write_report(outputs / target_page("me"), holdout=holdout_evaluation(), title="dancepipe: me")
    (metrics / "me").mkdir(parents=True)
    (metrics / "me" / "eval.json").write_text(json.dumps({"ssim_box": 0.8561, "baseline_ssim_box": 0.8129}))
    for source in rendered:
        paths = render_dance(root, outputs, "me", source)
        frames = [f.image for f in iter_frames(outputs / paths.side_by_side)]
        transfer = Evaluation({"frames": len(frames), "pose_distance": 0.0691},
                              pd.DataFrame({"frame": range(len(frames)), "pose_distance": 0.07}),
                              [(0, [frames[0]])])
        write_report(outputs / paths.page, transfer=transfer, title=f"dancepipe: me-{source}",
                     video=outputs / paths.side_by_side)
    for source in evaluated:
        (metrics / "me" / source).mkdir(parents=True)
        (metrics / "me" / source / "transfer.json").write_text(json.dumps({"frames": 171, "pose_distance": 0.0691}))
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(CATALOG))
    out = outputs / "report.html"
    res = CliRunner().invoke(main, ["--metrics", str(metrics), "--out", str(out), "--params", str(params)])
    assert res.exit_code == 0, res.output
    return out


def data_image(src: str) -> np.ndarray:
    """The RGB picture of a ``data:image/...;base64,`` address."""
    head, b64 = src.split(",", 1)
    assert head in ("data:image/jpeg;base64", "data:image/png;base64"), head
    img = cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    return build_outputs(tmp_path_factory.mktemp("report"))


def test_index_shows_each_dance_as_a_video_beside_its_numbers(report: Path):
    page = read_page(report)
    assert [v["src"] for v in page.videos] == ["me/side_by_side/walk.mp4", "me/side_by_side/jump.mp4"]
    for video, source in zip(page.videos, ("walk", "jump"), strict=True):
        path = report.parent / video["src"]
        info = probe(path)
        n, fps = DANCES[source]
        assert (info.codec, info.frame_count, info.fps, info.width, info.height) == ("h264", n, fps, 3 * W, H)
        assert int(video["width"]) == 2 * 3 * W and "controls" in video  # small: shown at twice its size
        # the poster is the video's own middle frame (JPEG: close, not exact)
        poster = data_image(video["poster"])
        middle = [f.image for f in iter_frames(path)][n // 2]
        assert poster.shape == middle.shape
        assert np.abs(poster.astype(int) - middle).mean() < 3
    walk = next(r for r in page.rows if r[:1] == ["frames"])
    assert walk == ["frames", "171"]
    assert ["pose distance", "0.0691"] in page.rows
    assert page.links == ["me/held-out.html", "me/walk.html", "me/walk.mp4", "me/jump.html", "me/jump.mp4"]


def test_index_shows_each_targets_held_out_samples_beside_its_numbers(report: Path):
    page = read_page(report)
    held_out = read_page(report.parent / "me" / "held-out.html")
    samples = [src for src in held_out.images if data_image(src).shape[1] == 4 * W * 2]  # label|gen|base|real, 2x
    assert len(samples) == 4
    assert [src for src in page.images if src in samples] == samples
    assert ["box SSIM", "0.8561", "0.8129"] in page.rows
    assert ["face SSIM", "n/a", "n/a"] in page.rows  # keys the file lacks
    assert page.rows[0] == ["held out", "generator", "baseline"]


def test_what_is_not_there_yet_is_said_and_counted(tmp_path: Path):
    out = build_outputs(tmp_path, evaluated=("walk",), rendered=("walk",))
    text = out.read_text(encoding="utf-8")
    page = read_page(out)
    assert [v["src"] for v in page.videos] == ["me/side_by_side/walk.mp4"]  # jump: no video element, no dead link
    jump = text[text.index("id='dance-me-jump'"):]
    assert jump.index("Not rendered yet.") < jump.index("Not evaluated yet.")
    res = CliRunner().invoke(main, ["--metrics", str(tmp_path / "metrics" / "eval"), "--out", str(out),
                                    "--params", str(tmp_path / "params.yaml")])
    assert res.exit_code == 0 and "report: 1 targets, 2 pairs" in res.output
    assert "(1 evaluations not found)" in res.output


def test_the_pair_page_plays_its_side_by_side_from_beside_it(report: Path):
    page = read_page(report.parent / "me" / "walk.html")
    (video,) = page.videos
    assert video["src"] == "side_by_side/walk.mp4"
    assert (report.parent / "me" / video["src"]).is_file()
    assert data_image(video["poster"]).shape == (H, 3 * W, 3)


def test_the_report_finds_files_where_dvc_yaml_puts_them():
    """The report's paths relative to outputs/ are the outs dvc.yaml gives the render and evaluate stages."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    out = {name: [next(iter(o)) if isinstance(o, dict) else o for o in stage.get("do", stage).get(key, [])]
           for name, stage in stages.items() for key in ("outs",)}
    metrics = {name: [next(iter(o)) for o in stage.get("do", stage).get("metrics", [])] for name, stage in stages.items()}
    pair = PairPaths.of("${item.target}", "${item.source}")
    assert sorted(out["render"]) == sorted(f"outputs/{p}" for p in (pair.video, pair.side_by_side))
    assert out["evaluate_transfer"] == [f"outputs/{pair.page}"]
    assert out["evaluate"] == [f"outputs/{target_page('${item}')}"]
    assert out["report"] == ["outputs/report.html"]
    # the report reads each target's footage figures from <metrics root>/<target>/footage.json
    assert metrics["footage"] == ["metrics/eval/${item}/footage.json"]
    assert "metrics/eval" in stages["report"]["deps"]


def test_pages_name_the_pose_weights_that_ran():
    cfg = EvaluateConfig(pose_model="yolov8n-pose.pt")
    ran = types.SimpleNamespace(ckpt_path="/cache/assets/yolo11n-pose/yolo11n-pose.pt")
    assert pose_weights_note(cfg, ran) == "pose model: yolo11n-pose.pt (evaluate.pose_model names yolov8n-pose.pt)"
    same = types.SimpleNamespace(ckpt_path="/somewhere/yolov8n-pose.pt")
    assert pose_weights_note(cfg, same) == "pose model: yolov8n-pose.pt"


def test_offline_the_pages_name_the_pinned_weights(pose_weights, monkeypatch, tmp_path):
    """Offline, evaluate.pose_model = yolov8n-pose.pt runs the pinned yolo11n-pose.pt, and the page says so."""
    from dancepipe.pose.estimator import load_pose_model

    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # no yolov8n-pose.pt lying around in the working directory
    cfg = EvaluateConfig(pose_model="yolov8n-pose.pt")
    model = load_pose_model(cfg.pose_model, "cpu")
    assert pose_weights_note(cfg, model) == "pose model: yolo11n-pose.pt (evaluate.pose_model names yolov8n-pose.pt)"


def test_index_shows_the_footage_advice_and_each_dances_coverage(tmp_path: Path):
    """The footage stage's figures and advice beside the target; per dance a bar of covered | between | far
    frames, flagged with the parts that will smear when too much of it is far; footage shows before any
    evaluation."""
    from dancepipe.advice.coverage import FAR_SHARE

    out = build_outputs(tmp_path, evaluated=("walk", "jump"), rendered=("walk",))
    metrics = tmp_path / "metrics" / "eval"
    footage = {"frames": 448, "seconds": 17.9, "person_frames": 448,
               "full_body_frames": 440, "full_body_share": 0.982, "body_px": 318.0, "fill": 0.64,
               "distinct_poses": 23, "advice": "18 s of footage with 23 distinct poses: film more."}
    (metrics / "me" / "footage.json").write_text(json.dumps(footage))
    cov = {"frames": 171, "pose_distance": 0.0691, "coverage_frames": 100, "covered_frames": 20}
    (metrics / "me" / "walk" / "transfer.json").write_text(json.dumps(
        {**cov, "far_frames": 10, "far_share": 0.1, "far_parts": {"head": 0, "torso": 0, "arms": 0.1, "legs": 0}}))
    far = 1 + int(100 * FAR_SHARE)
    (metrics / "me" / "jump" / "transfer.json").write_text(json.dumps(
        {**cov, "far_frames": far, "far_share": far / 100,
         "far_parts": {"head": 0.0, "torso": 0.02, "arms": 0.6, "legs": 0.3}}))
    res = CliRunner().invoke(main, ["--metrics", str(metrics), "--out", str(out),
                                    "--params", str(tmp_path / "params.yaml")])
    assert res.exit_code == 0, res.output
    text = out.read_text(encoding="utf-8")
    page = read_page(out)
    assert ["footage", "whole body", "body height", "distinct poses"] in page.rows
    assert ["18 s", "98% of the frames", "318 px (64% of the picture)", "23"] in page.rows
    assert "Footage advice: 18 s of footage with 23 distinct poses: film more." in text
    walk = text[text.index("id='dance-me-walk'"):text.index("id='dance-me-jump'")]
    jump = text[text.index("id='dance-me-jump'"):]
    assert ["coverage", "20% covered, 10% far"] in page.rows and "&#9888;" not in walk
    assert "style='width:20.0%'" in walk and "style='width:70.0%'" in walk and "style='width:10.0%'" in walk
    assert f"&#9888; 20% covered, {far}% far: arms, legs will smear" in jump
    # nothing far but nothing covered either: footage that repeats itself
    (metrics / "me" / "walk" / "transfer.json").write_text(json.dumps(
        {**cov, "covered_frames": 0, "far_frames": 1, "far_share": 0.01, "far_parts": {}}))
    CliRunner().invoke(main, ["--metrics", str(metrics), "--out", str(out), "--params", str(tmp_path / "params.yaml")])
    text = out.read_text(encoding="utf-8")
    walk = text[text.index("id='dance-me-walk'"):text.index("id='dance-me-jump'")]
    assert "&#9888; 0% covered, 1% far: the target's footage repeats itself, all of it will blur" in walk
    # before any evaluation the footage is already there
    (metrics / "me" / "eval.json").unlink()
    res = CliRunner().invoke(main, ["--metrics", str(metrics), "--out", str(out),
                                    "--params", str(tmp_path / "params.yaml")])
    text = out.read_text(encoding="utf-8")
    assert text.index("Footage advice") < text.index("Not evaluated yet.")

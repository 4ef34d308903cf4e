"""Face boxes, the residual face GAN, its training stage and its use on full frames."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from dancepipe.config import build_config
from dancepipe.errors import DancepipeError
from dancepipe.model.checkpoint import load_generator, save_generator
from dancepipe.model.face_checkpoint import FORMAT, load_face_model
from dancepipe.model.face_dataset import boxes_from_index, chain_segments, collect_face_crops
from dancepipe.model.face_networks import FaceGenerator, FaceRefiner
from dancepipe.model.face_train import FaceConfig, fit_face
from dancepipe.model.networks import GeneratorArch, build_generator, init_weights
from dancepipe.pose.keypoints import KP
from dancepipe.transfer.facebox import compute_face_boxes, face_box_size
from stages.train_face import main as train_face_cli

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks: one thread is faster on 2 loaded cores


# --------------------------------------------------------------------------- face boxes


def _kps(n: int = 1) -> np.ndarray:
    return np.full((n, 17, 3), np.nan, dtype=np.float32)


@settings(max_examples=200, deadline=None)
@given(
    width=st.integers(32, 400), height=st.integers(32, 600), fraction=st.floats(0.05, 0.5),
    u=st.floats(0.0, 1.0), v=st.floats(0.0, 1.0), nose=st.booleans(),
)
def test_boxes_stay_inside_and_keep_their_size(width, height, fraction, u, v, nose):
    size = min(face_box_size(height, fraction), width, height)
    # a centre anywhere from half a box outside the left/top edge to half a box past the right/bottom
    cx = -size / 2 + 0.01 + u * (width + size - 0.02)
    cy = -size / 2 + 0.01 + v * (height + size - 0.02)
    k = _kps()
    if nose:
        k[0, KP["nose"]] = (cx, cy, 0.9)
    else:
        k[0, KP["left_ear"]] = (cx - 3, cy, 0.9)
        k[0, KP["right_ear"]] = (cx + 3, cy, 0.9)
    box = compute_face_boxes(k, width, height, fraction).iloc[0]
    assert bool(box.face_ok)
    assert int(box.face_size) == size
    assert 0 <= box.face_x0 and box.face_x0 + box.face_size <= width
    assert 0 <= box.face_y0 and box.face_y0 + box.face_size <= height
    # away from the borders the box is centred on the face point, to the pixel; the
    # keypoints are float32, so a centre at x.5 may round either way (1e-4 covers that)
    if size / 2 + 1 <= cx <= width - size / 2 - 1 and size / 2 + 1 <= cy <= height - size / 2 - 1:
        assert abs(box.face_x0 + size / 2 - cx) <= 0.5 + 1e-4
        assert abs(box.face_y0 + size / 2 - cy) <= 0.5 + 1e-4


def test_box_in_a_corner_is_shifted_not_shrunk():
    k = _kps()
    k[0, KP["nose"]] = (1.0, 190.0, 0.9)
    box = compute_face_boxes(k, 128, 192, 1 / 6).iloc[0]
    assert (int(box.face_x0), int(box.face_y0), int(box.face_size)) == (0, 192 - 32, 32)


def test_box_falls_back_to_eyes_then_ears():
    k = _kps(3)
    k[0, KP["nose"]] = (50, 60, 0.9)
    k[0, KP["left_eye"]] = (10, 10, 0.9)  # ignored while the nose is visible
    k[1, KP["left_eye"]] = (40, 50, 0.9)
    k[1, KP["right_eye"]] = (60, 54, 0.9)
    k[2, KP["left_ear"]] = (70, 80, 0.9)
    boxes = compute_face_boxes(k, 128, 192, 1 / 6)
    centres = boxes[["face_x0", "face_y0"]].to_numpy() + 16
    assert boxes.face_ok.all()
    np.testing.assert_allclose(centres, [[50, 60], [50, 52], [70, 80]], atol=0.5)


def test_frames_without_a_face_are_flagged():
    k = _kps(3)
    k[1, KP["left_shoulder"]] = (50, 60, 0.9)  # a body but no face point
    k[2, KP["nose"]] = (-500, 60, 0.9)  # a face far outside the picture
    boxes = compute_face_boxes(k, 128, 192, 1 / 6)
    assert not boxes.face_ok.any()
    assert boxes_from_index(boxes) == [None, None, None]


# --------------------------------------------------------------------------- networks and refinement


def test_fresh_face_generator_returns_its_input_crop():
    torch.manual_seed(0)
    gen = FaceGenerator(ngf=8, n_downsample=2, n_blocks=1)
    label = torch.rand(3, 3, 32, 32) * 2 - 1
    image = torch.rand(3, 3, 32, 32) * 2 - 1
    assert torch.equal(gen(label, image), image)
    # and on full frames, boxes and all
    refiner = FaceRefiner(gen, crop_size=32)
    big_label = torch.rand(3, 3, 96, 64) * 2 - 1
    big = torch.rand(3, 3, 96, 64) * 2 - 1
    out = refiner.refine(big_label, big, [(0, 0, 32), None, (32, 64, 32)])
    assert torch.equal(out, big)
    assert (refiner.applied, refiner.skipped) == (2, 1)


def _trained_looking(gen: FaceGenerator) -> FaceGenerator:
    with torch.no_grad():
        gen.out[1].weight.normal_(0, 0.05)
    return gen


def test_refine_changes_only_the_face_box():
    torch.manual_seed(1)
    refiner = FaceRefiner(_trained_looking(FaceGenerator(ngf=8, n_downsample=2, n_blocks=1)), crop_size=16)
    label = torch.rand(2, 3, 48, 40) * 2 - 1
    image = torch.rand(2, 3, 48, 40) * 0.5
    boxes = [(24, 10, 16), (4, 4, 24)]  # the second is resized to the trained 16 px and back
    out = refiner.refine(label, image, boxes)
    for i, (x0, y0, s) in enumerate(boxes):
        inside = torch.zeros(48, 40, dtype=torch.bool)
        inside[y0:y0 + s, x0:x0 + s] = True
        assert torch.equal(out[i][:, ~inside], image[i][:, ~inside])
        assert not torch.equal(out[i][:, inside], image[i][:, inside])
    assert out.min() >= -1 and out.max() <= 1


def test_refine_rejects_boxes_outside_the_image_and_wrong_counts():
    refiner = FaceRefiner(FaceGenerator(ngf=8), crop_size=16)
    x = torch.zeros(1, 3, 32, 32)
    with pytest.raises(DancepipeError, match="does not lie inside"):
        refiner.refine(x, x, [(20, 0, 16)])
    with pytest.raises(ValueError, match="2 face boxes for a batch of 1"):
        refiner.refine(x, x, [None, None])


def test_config_errors_name_the_key_and_allowed_values():
    with pytest.raises(DancepipeError, match="train_face.gan_loss.*'lsgan' or 'hinge'"):
        build_config(FaceConfig, {"gan_loss": "wgan"}, section="train_face")
    with pytest.raises(DancepipeError, match="unknown key 'train_face.stpes'"):
        build_config(FaceConfig, {"stpes": 3}, section="train_face")
    with pytest.raises(DancepipeError, match="train_face.device"):
        build_config(FaceConfig, {"device": "gpu"}, section="train_face")


# --------------------------------------------------------------------------- a small synthetic subject

W, H, N = 64, 96, 16


def _make_subject(root: Path, no_face: tuple[int, ...] = (3,)) -> tuple[Path, Path, Path]:
    """Frames + labels directories of a synthetic subject whose head bobs around, and a
    freshly initialised (but real) main generator checkpoint trained on its first 12 frames."""
    rng = np.random.default_rng(0)
    frames_dir, labels_dir = root / "frames", root / "labels"
    frames_dir.mkdir(parents=True)
    labels_dir.mkdir(parents=True)
    k = np.full((N, 17, 3), np.nan, dtype=np.float32)
    frows, lrows = [], []
    for i in range(N):
        cx, cy = 20 + 24 * (i % 4) / 3, 14 + 4 * (i % 3)
        frame = np.full((H, W, 3), 90, np.uint8)
        cv2.rectangle(frame, (int(cx) - 8, int(cy) + 10), (int(cx) + 8, 90), (40, 60, 160), -1)
        label = np.zeros((H, W, 3), np.uint8)
        cv2.line(label, (int(cx), int(cy) + 8), (int(cx), 88), (255, 80, 0), 3)
        if i not in no_face:
            cv2.circle(frame, (int(cx), int(cy)), 7, (230, 190, 160), -1)
            cv2.circle(frame, (int(cx) - 3, int(cy) - 2), 1, (20, 20, 20), -1)
            cv2.circle(frame, (int(cx) + 3, int(cy) - 2), 1, (20, 20, 20), -1)
            cv2.circle(label, (int(cx), int(cy)), 2, (255, 255, 255), -1)
            k[i, KP["nose"]] = (cx, cy, 0.9)
        frame = np.clip(frame + rng.integers(-6, 7, frame.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(frames_dir / f"{i:06d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(labels_dir / f"{i:06d}.png"), cv2.cvtColor(label, cv2.COLOR_RGB2BGR))
        frows.append({"frame": i, "file": f"{i:06d}.jpg", "timestamp": i / 10, "person_found": True})
        lrows.append({"frame": i, "file": f"{i:06d}.png", "person_found": True})
    pd.DataFrame(frows).to_parquet(frames_dir / "index.parquet")
    boxes = compute_face_boxes(k, W, H, 1 / 6)
    pd.concat([pd.DataFrame(lrows), boxes], axis=1).to_parquet(labels_dir / "index.parquet")
    torch.manual_seed(0)
    gen = build_generator(GeneratorArch(ngf=8, n_downsample=2, n_blocks=1))
    init_weights(gen)
    gen_path = root / "generator.pt"
    save_generator(gen, gen_path, {"feature_net": "none"},
                   {"train_frames": list(range(12)), "holdout_frames": list(range(12, N))}, step=0)
    return gen_path, frames_dir, labels_dir


@pytest.fixture(scope="module")
def subject(tmp_path_factory) -> tuple[Path, Path, Path]:
    return _make_subject(tmp_path_factory.mktemp("face_subject"))


def _params(tmp_path: Path, **face) -> Path:
    section = {"steps": 20, "batch_size": 4, "lr": 0.001, "ngf": 8, "n_blocks": 1, "ndf": 8, "device": "cpu",
               **face}
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump({"train": {"feature_net": "none"}, "train_face": section}))
    return p


def test_crops_come_from_the_training_split_and_skip_faceless_frames(subject):
    gen_path, frames_dir, labels_dir = subject
    gen, meta = load_generator(gen_path)
    crops = collect_face_crops(gen, frames_dir, labels_dir, meta["split"]["train_frames"])
    assert crops.total == 12 and crops.skipped == 1
    assert sorted(crops.frames.tolist()) == [i for i in range(12) if i != 3]
    assert crops.label.shape == (11, 16, 16, 3) and crops.main.shape == crops.real.shape == crops.label.shape


def test_chain_segments_cover_every_row_once_and_break_at_gaps():
    frames = np.array([0, 1, 2, 3, 4, 5, 6, 9, 10, 11])  # a gap after frame 6
    assert chain_segments(frames, 1) == [(0, 7), (7, 10)]
    segs = chain_segments(frames, 3)
    assert segs == [(0, 4), (4, 7), (7, 10)]  # pieces of at most ceil(10 / 3) = 4 rows
    assert [r for a, b in segs for r in range(a, b)] == list(range(10))
    assert chain_segments(np.array([], dtype=int), 4) == []


@pytest.mark.parametrize("chains", [1, 3])
def test_lockstep_chains_give_the_crops_of_the_sequential_recurrence(subject, chains):
    """Each crop is cut from G(label_t, G's output for t-1), the chain's first frame from zeros:
    checked against a plain frame-by-frame loop written here."""
    gen_path, frames_dir, labels_dir = subject
    gen, meta = load_generator(gen_path)
    train = meta["split"]["train_frames"]
    crops = collect_face_crops(gen, frames_dir, labels_dir, train, chains=chains)
    index = pd.read_parquet(labels_dir / "index.parquet").sort_values("frame")
    index = index[index["frame"].isin(train)].reset_index(drop=True)
    starts = {a for a, _ in chain_segments(index["frame"].to_numpy(), chains)}
    expected, prev = {}, None
    with torch.no_grad():
        for r, row in index.iterrows():
            img = cv2.cvtColor(cv2.imread(str(labels_dir / row["file"])), cv2.COLOR_BGR2RGB)
            x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 127.5 - 1
            prev = gen(x, torch.zeros_like(x) if r in starts else prev)
            if row["face_ok"]:
                x0, y0, s = int(row["face_x0"]), int(row["face_y0"]), int(row["face_size"])
                out = ((prev[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
                expected[int(row["frame"])] = out[y0:y0 + s, x0:x0 + s]
    assert sorted(expected) == crops.frames.tolist()
    for f, main in zip(crops.frames.tolist(), crops.main, strict=True):
        assert np.abs(main.astype(int) - expected[f].astype(int)).max() <= 1, f


def test_training_on_synthetic_faces_improves_them_and_freezes_the_generator(subject):
    gen_path, frames_dir, labels_dir = subject
    gen, meta = load_generator(gen_path)
    crops = collect_face_crops(gen, frames_dir, labels_dir, meta["split"]["train_frames"])
    before = {k: v.clone() for k, v in gen.state_dict().items()}
    cfg = FaceConfig(steps=40, batch_size=4, lr=0.002, ngf=8, n_blocks=1, ndf=8, lambda_perceptual=0.0)
    result = fit_face(crops, cfg, feature_net=None)
    assert result.metrics["face_l1_refined"] < 0.6 * result.metrics["face_l1_main"]
    assert all(torch.equal(before[k], v) for k, v in gen.state_dict().items())
    assert not gen.training and not any(p.requires_grad for p in gen.parameters())
    assert result.grid is not None and result.grid.shape[1] == 4 * 4 * 16


# --------------------------------------------------------------------------- the stage


def test_stage_trains_writes_face_model_and_logs(subject, tmp_path):
    gen_path, frames_dir, labels_dir = subject
    gen_bytes = gen_path.read_bytes()
    out, logdir = tmp_path / "models" / "face.pt", tmp_path / "dvclive" / "train_face"
    res = CliRunner().invoke(train_face_cli, [
        "--generator", str(gen_path), "--frames", str(frames_dir), "--labels", str(labels_dir),
        "--out", str(out), "--logdir", str(logdir), "--params", str(_params(tmp_path)),
    ])
    assert res.exit_code == 0, res.output
    assert "11 training faces (1 frames without a usable face skipped)" in res.output
    assert gen_path.read_bytes() == gen_bytes
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["format"] == FORMAT and ckpt["enabled"] is True and ckpt["arch"]["crop_size"] == 16
    assert ckpt["train"]["feature_net"] == "none" and ckpt["step"] == 20
    refiner = load_face_model(out)
    assert isinstance(refiner, FaceRefiner)
    metrics = yaml.safe_load((logdir / "metrics.json").read_text())
    # steps are logged as fit_face numbers them, 1..steps, so the last logged step is the checkpoint's
    assert metrics["step"] == 20 and metrics["faces"] == 11 and metrics["frames_without_face"] == 1
    for name in ("loss_d", "loss_g", "loss_g_adv", "loss_g_l1"):
        losses = pd.read_csv(logdir / "plots" / "metrics" / f"{name}.tsv", sep="\t")
        assert losses["step"].tolist() == list(range(1, 21)), name
    grid = cv2.imread(str(logdir / "plots" / "images" / "face_samples.png"))
    assert grid is not None and grid.shape[1] == 4 * 4 * 16


def test_stage_disabled_writes_a_weightless_model(subject, tmp_path):
    out, logdir = tmp_path / "face.pt", tmp_path / "live"
    res = CliRunner().invoke(train_face_cli, [
        "--generator", str(tmp_path / "not_needed.pt"), "--frames", str(tmp_path), "--labels", str(tmp_path),
        "--out", str(out), "--logdir", str(logdir), "--params", str(_params(tmp_path, enabled=False)),
    ])
    assert res.exit_code == 0, res.output
    assert "disabled" in res.output and "main generator alone" in res.output
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["enabled"] is False and ckpt["state_dict"] is None
    assert load_face_model(out) is None
    # the dvclive layout dvc.yaml declares exists even when nothing was trained
    assert yaml.safe_load((logdir / "metrics.json").read_text())["enabled"] == 0
    assert (logdir / "plots" / "metrics").is_dir() and (logdir / "plots" / "images").is_dir()


def test_stage_bad_inputs_fail_in_one_sentence_and_leave_nothing(subject, tmp_path):
    gen_path, frames_dir, labels_dir = subject
    out = tmp_path / "face.pt"
    args = ["--frames", str(frames_dir), "--labels", str(labels_dir), "--out", str(out),
            "--logdir", str(tmp_path / "live")]
    res = CliRunner().invoke(train_face_cli, ["--generator", str(tmp_path / "missing.pt"), *args,
                                              "--params", str(_params(tmp_path))])
    assert res.exit_code == 1
    assert "missing.pt: generator model does not exist (run the train stage first)" in res.output
    res = CliRunner().invoke(train_face_cli, ["--generator", str(gen_path), *args,
                                              "--params", str(_params(tmp_path, steps=0))])
    assert res.exit_code == 1 and "'train_face.steps' = 0 is invalid" in res.output
    wrong = tmp_path / "wrong.pt"  # a face model passed where the generator belongs
    torch.save({"format": FORMAT, "enabled": False}, wrong)
    res = CliRunner().invoke(train_face_cli, ["--generator", str(wrong), *args, "--params", str(_params(tmp_path))])
    assert res.exit_code == 1 and "wrong.pt: expected a 'dancepipe.generator/1' file" in res.output
    assert not out.exists() and not list(tmp_path.glob(".face.pt*"))
    with pytest.raises(DancepipeError, match=r"generator.pt: expected a .dancepipe.face/1. file, found .dancepipe.generator/1."):
        load_face_model(gen_path)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"garbage")
    res = CliRunner().invoke(train_face_cli, ["--generator", str(garbage), *args, "--params", str(_params(tmp_path))])
    assert res.exit_code == 1 and "garbage.pt: not a readable dancepipe checkpoint" in res.output
    assert not out.exists()
    with pytest.raises(DancepipeError, match="garbage.pt: not a readable dancepipe checkpoint"):
        load_face_model(garbage)


# --------------------------------------------------------------------------- the demo


def _demo_dirs(demo_frames, demo_labels) -> tuple[Path, Path]:
    frames = demo_frames["target"] if isinstance(demo_frames, dict) else demo_frames
    return Path(frames), Path(demo_labels["train"])


@pytest.mark.slow
def test_short_overfit_on_demo_faces_lowers_face_error_and_freezes_the_generator(
    demo_generator, demo_frames, demo_labels,
):
    from dancepipe.model.features import build_feature_net

    frames, labels = _demo_dirs(demo_frames, demo_labels)
    gen, meta = load_generator(demo_generator)
    before = {k: v.clone() for k, v in gen.state_dict().items()}
    crops = collect_face_crops(gen, frames, labels, meta["split"]["train_frames"])
    assert len(crops) >= 10 and crops.total == len(meta["split"]["train_frames"])
    assert set(crops.frames.tolist()) <= set(meta["split"]["train_frames"])
    # perceptual loss on the offline feature net, as the demo params use it
    cfg = FaceConfig(steps=100, batch_size=4, lr=0.001, ngf=8, n_blocks=1, ndf=8)
    result = fit_face(crops, cfg, build_feature_net("pose_backbone"))
    assert result.metrics["face_l1_refined"] < 0.8 * result.metrics["face_l1_main"], result.metrics
    assert all(torch.equal(before[k], v) for k, v in gen.state_dict().items())
    assert not gen.training and not any(p.requires_grad for p in gen.parameters())


@pytest.mark.slow
def test_demo_face_model_refines_transfer_frames(demo_face, demo_generator, demo_labels):
    """The fixture's face.pt on full transfer frames: only the recorded boxes change."""
    refiner = load_face_model(demo_face)
    assert isinstance(refiner, FaceRefiner)
    gen, _ = load_generator(demo_generator)
    index = pd.read_parquet(Path(demo_labels["transfer"]) / "index.parquet")
    # frames with a face box and, where the clip has one, a frame without
    index = pd.concat([index[index["face_ok"]].head(3), index[~index["face_ok"]].head(1)]).reset_index(drop=True)
    boxes = boxes_from_index(index)
    labels = np.stack([cv2.cvtColor(cv2.imread(str(Path(demo_labels["transfer"]) / f)), cv2.COLOR_BGR2RGB)
                       for f in index["file"]])
    from dancepipe.model.networks import to_model

    label = to_model(labels)
    with torch.no_grad():
        image = gen(label, torch.zeros_like(label))
    out = refiner.refine(label, image, boxes)
    assert sum(box is not None for box in boxes) == 3
    for i, box in enumerate(boxes):
        mask = torch.ones(image.shape[-2:], dtype=torch.bool)
        if box is not None:
            x0, y0, s = box
            mask[y0:y0 + s, x0:x0 + s] = False
            # inside the box the trained face residual changed the generated pixels
            assert (out[i][:, ~mask] - image[i][:, ~mask]).abs().max() > 1e-3, i
        assert torch.equal(out[i][:, mask], image[i][:, mask])
    assert refiner.applied == sum(b is not None for b in boxes)
    assert refiner.skipped == sum(b is None for b in boxes)

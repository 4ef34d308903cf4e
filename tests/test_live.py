"""The live mirror's parts that need no model: the One Euro filter, the gap hold, the newest-frame
slot, the online subject rule, the wire format, the recorder and the command's errors.

The calibration rule on real pose data and everything with a model or a browser is in
tests/test_live_browser.py.
"""

from __future__ import annotations

import math
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dancepipe.errors import DancepipeError
from dancepipe.live.filters import GapHold, OneEuroFilter
from dancepipe.live.follow import SubjectFollower
from dancepipe.live.slot import NewestSlot, SlotClosed
from dancepipe.pose.tracks import Detections

# ---------------------------------------------------------------------------- One Euro filter


def test_one_euro_without_beta_is_the_first_order_low_pass_at_min_cutoff() -> None:
    f = OneEuroFilter(min_cutoff=2.0, beta=0.0)
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(40, 3))
    dt = 1 / 30
    alpha = 1 / (1 + 1 / (2 * math.pi * 2.0 * dt))  # the textbook smoothing factor, computed here
    expected = xs[0].copy()
    np.testing.assert_allclose(f(xs[0], 0.0), xs[0])  # the first sample passes through
    for i in range(1, len(xs)):
        expected = expected + alpha * (xs[i] - expected)
        np.testing.assert_allclose(f(xs[i], i * dt), expected, rtol=1e-12)


def test_one_euro_removes_jitter_at_rest_and_follows_fast_motion() -> None:
    rng = np.random.default_rng(1)
    dt = 1 / 30
    still = 100.0 + rng.normal(0, 2.0, 90)  # a joint at rest with 2 px detector jitter
    f = OneEuroFilter(min_cutoff=1.0, beta=20.0, scale=480.0)
    out = np.array([f(np.array([x]), i * dt)[0] for i, x in enumerate(still)])
    assert np.std(np.diff(out[30:])) < 0.25 * np.std(np.diff(still[30:]))
    # then an arm sweeps 300 px in a third of a second: the adaptive filter keeps up, a plain low pass lags
    sweep = np.concatenate([np.full(10, 100.0), np.linspace(100, 400, 10), np.full(10, 400.0)])
    lagging = OneEuroFilter(min_cutoff=1.0, beta=0.0, scale=480.0)
    adaptive = OneEuroFilter(min_cutoff=1.0, beta=20.0, scale=480.0)
    a = np.array([adaptive(np.array([x]), i * dt)[0] for i, x in enumerate(sweep)])
    b = np.array([lagging(np.array([x]), i * dt)[0] for i, x in enumerate(sweep)])
    assert abs(a[19] - 400) < 60 < abs(b[19] - 400)


def test_one_euro_restarts_a_value_after_a_gap() -> None:
    f = OneEuroFilter(min_cutoff=0.5, beta=0.0)
    f(np.array([0.0, 0.0]), 0.0)
    out = f(np.array([np.nan, 10.0]), 0.1)
    assert np.isnan(out[0]) and 0 < out[1] < 10  # the missing value is missing; the other is smoothed
    out = f(np.array([50.0, 10.0]), 0.2)
    assert out[0] == 50.0  # back after the gap: starts afresh, not pulled towards 0


def test_gap_hold_keeps_a_joint_for_gap_max_frames_only() -> None:
    hold = GapHold(gap_max=2)
    seen = np.tile([[5.0, 6.0, 0.9]], (17, 1))
    missing = seen.copy()
    missing[3] = np.nan
    hold(seen)
    assert np.array_equal(hold(missing)[3], seen[3])
    assert np.array_equal(hold(missing)[3], seen[3])
    assert np.isnan(hold(missing)[3]).all()  # third frame missing: longer than gap_max
    assert np.array_equal(hold(missing)[4], seen[4])


# ---------------------------------------------------------------------------- newest-frame slot


def test_newest_slot_gives_the_newest_item_and_counts_the_rest_as_dropped() -> None:
    slot: NewestSlot[int] = NewestSlot()
    assert [slot.put(i) for i in range(5)] == [True, False, False, False, False]
    assert slot.get(timeout=0) == 4
    assert slot.dropped == 4 and slot.put_count == 5
    assert slot.get(timeout=0.01) is None  # nothing waits: no stale item comes back
    slot.put(7)
    slot.close()
    assert slot.get() == 7
    with pytest.raises(SlotClosed):
        slot.get()


def test_newest_slot_never_falls_behind_a_fast_producer() -> None:
    slot: NewestSlot[int] = NewestSlot()
    taken: list[int] = []

    def consume() -> None:
        while True:
            try:
                item = slot.get()
            except SlotClosed:
                return
            time.sleep(0.005)  # a consumer several times slower than the producer
            taken.append(item)

    t = threading.Thread(target=consume)
    t.start()
    for i in range(300):
        slot.put(i)
        time.sleep(0.0005)
    time.sleep(0.05)
    slot.close()
    t.join()
    assert taken == sorted(taken) and taken[-1] == 299  # in order, and the last frame was shown
    assert len(taken) + slot.dropped == 300 and slot.dropped > 100


def test_wait_empty_returns_when_the_consumer_takes_the_item() -> None:
    slot: NewestSlot[int] = NewestSlot()
    slot.put(1)
    assert not slot.wait_empty(timeout=0.01)
    threading.Timer(0.05, slot.get).start()
    assert slot.wait_empty(timeout=2)


# ---------------------------------------------------------------------------- the subject rule, online


def _det(*boxes: tuple[float, float, float, float]) -> Detections:
    b = np.array(boxes, np.float32).reshape(-1, 4)
    return Detections(b, np.full(len(b), 0.9, np.float32), np.zeros((len(b), 17, 3), np.float32))


def test_a_bystander_never_takes_over_a_subject_in_view() -> None:
    follow = SubjectFollower(iou_threshold=0.2, max_gap=3)
    assert follow(_det((100, 100, 200, 400))) == 0
    # a much larger person steps in front, listed first: the subject is still the one that continues
    for x in range(100, 140, 5):
        assert follow(_det((0, 0, 600, 480), (x, 100, x + 100, 400))) == 1
    assert follow.switches == 0


def test_the_largest_person_becomes_the_subject_after_a_long_miss() -> None:
    follow = SubjectFollower(iou_threshold=0.2, max_gap=2)
    follow(_det((100, 100, 200, 400)))
    for _ in range(3):  # the subject may still come back on the third frame, as tracks.link_tracks allows
        assert follow(_det((400, 50, 460, 200), (300, 0, 600, 470))) == -1
    assert follow(_det((400, 50, 460, 200), (300, 0, 600, 470))) == 1  # a miss longer than max_gap: the largest
    assert follow.switches == 1


# ---------------------------------------------------------------------------- wire format


def _jpeg(w: int, h: int) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", np.full((h, w, 3), 128, np.uint8))
    return buf.tobytes()


def test_parse_frame_accepts_a_page_frame_and_rejects_everything_else() -> None:
    import io

    from PIL import Image

    from dancepipe.live.server import FRAME_HEADER, MAGIC, BadMessage, decode_jpeg, parse_frame

    seq, t, body = parse_frame(FRAME_HEADER.pack(MAGIC, 7, 1234.5) + _jpeg(64, 48), max_side=2048)
    assert (seq, t) == (7, 1234.5) and decode_jpeg(body, seq).shape == (48, 64, 3)
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    bad = {
        "too short": b"DPL1",
        "wrong magic": FRAME_HEADER.pack(b"XXXX", 1, 0.0) + _jpeg(8, 8),
        "not an image": FRAME_HEADER.pack(MAGIC, 1, 0.0) + b"hello world" * 10,
        "a PNG": FRAME_HEADER.pack(MAGIC, 1, 0.0) + png.getvalue(),
        "too large": FRAME_HEADER.pack(MAGIC, 1, 0.0) + _jpeg(3000, 16),
        "no capture time": FRAME_HEADER.pack(MAGIC, 1, float("nan")) + _jpeg(8, 8),
    }
    for what, data in bad.items():
        with pytest.raises(BadMessage):
            parse_frame(data, max_side=2048)
            pytest.fail(f"{what} was accepted")
    truncated = _jpeg(64, 48)[:200]  # refused when its header is read, or at the latest when it is decoded
    with pytest.raises(BadMessage):
        decode_jpeg(parse_frame(FRAME_HEADER.pack(MAGIC, 2, 0.0) + truncated, max_side=2048)[2], 2)


# ---------------------------------------------------------------------------- --record


def test_recorder_writes_in_real_time_and_nothing_when_nothing_was_shown(tmp_path: Path) -> None:
    from dancepipe.live.record import Recorder
    from dancepipe.video.decode import iter_frames, probe

    empty = Recorder(tmp_path / "none.mp4", fps=10)
    assert empty.close() is None and not (tmp_path / "none.mp4").exists()
    rec = Recorder(tmp_path / "out.mp4", fps=10)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    for t, c in zip((0.0, 0.5, 1.0), colours, strict=True):  # three frames shown half a second apart
        rec.show(np.full((48, 64, 3), c, np.uint8), now=100.0 + t)
    assert rec.close() == tmp_path / "out.mp4"
    info = probe(tmp_path / "out.mp4")
    assert info.frame_count == 11 and abs(info.fps - 10) < 1e-6  # 1 s at 10 fps, plus the last frame
    frames = [f.image for f in iter_frames(tmp_path / "out.mp4")]
    firsts = [int(np.argmax(frames[i][24, 32])) for i in (0, 4, 5, 9, 10)]
    assert firsts == [0, 0, 1, 1, 2]  # each colour held until the next was shown


# ---------------------------------------------------------------------------- the command's errors


def _layout(root: Path, name: str, with_model: bool = True) -> Path:
    """The pipeline's layout for a target, files present but empty (the command checks them before loading)."""
    paths = [f"data/subjects/{name}/poses.parquet", f"data/profiles/{name}.json", f"data/frames/{name}/transform.json",
             f"models/{name}/face.pt"] + ([f"models/{name}/generator.pt"] if with_model else [])
    for p in paths:
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        (root / p).write_bytes(b"")
    return root


def _run(root: Path, *args: str):
    from dancepipe.console import main

    return CliRunner().invoke(main, ["live", "--models-dir", str(root / "models"), "--data-dir", str(root / "data"),
                                     "--params", str(root / "params.yaml"), *args])


def test_a_target_without_a_model_names_the_stage_to_run(tmp_path: Path) -> None:
    result = _run(_layout(tmp_path, "ann", with_model=False), "--target", "ann")
    assert result.exit_code == 1
    message = result.output.strip().splitlines()[-1]
    assert message.startswith("Error: ") and "has no trained model" in message and "`dvc repro train@ann`" in message
    assert message.count(". ") == 0  # one sentence
    missing_face = _layout(tmp_path / "b", "bob")
    (missing_face / "models/bob/face.pt").unlink()
    result = _run(missing_face, "--target", "bob")
    assert result.exit_code == 1 and "`dvc repro train_face@bob`" in result.output


def test_a_port_in_use_is_one_sentence(tmp_path: Path) -> None:
    root = _layout(tmp_path, "ann")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run(root, "--target", "ann", "--port", str(port))
    assert result.exit_code == 1
    assert f"Error: port {port} on 127.0.0.1 is already in use" in result.output and "--port" in result.output


def test_bad_options_are_usage_errors(tmp_path: Path) -> None:
    root = _layout(tmp_path, "ann")
    result = _run(root, "--target", "ann", "--pose-size", "250")
    assert result.exit_code == 2 and "--pose-size" in result.output and "multiple of 32" in result.output
    assert _run(root, "--target", "../etc").exit_code == 1


def test_every_option_is_explained_in_help() -> None:
    from dancepipe.console import main
    from dancepipe.live.command import live

    out = CliRunner().invoke(main, ["live", "--help"]).output
    for param in live.params:
        assert param.help, f"{param.name} has no help"
        assert param.opts[0] in out


def test_the_chain_steps_are_all_classified(monkeypatch: pytest.MonkeyPatch) -> None:
    from dancepipe.live import pipeline
    from dancepipe.transfer.chain import STEPS, Step

    pipeline.check_chain()  # the current chain: every step is per-frame or has a causal stand-in
    monkeypatch.setattr(pipeline, "STEPS", (*STEPS, Step("lookahead", lambda c, t: True, lambda k, c, t: None)))
    with pytest.raises(DancepipeError, match="lookahead"):
        pipeline.check_chain()


def test_an_empty_label_is_never_drawn_by_the_generator_the_last_frame_is_held() -> None:
    import torch

    from dancepipe.live.pipeline import LabelFrame, LiveGenerator, StepTimes
    from dancepipe.model.networks import GeneratorArch, build_generator

    torch.manual_seed(0)
    g = build_generator(GeneratorArch(ngf=4, n_downsample=1, n_blocks=1)).eval()
    live = LiveGenerator(g, None, torch.device("cpu"), "fp32")
    label = np.zeros((32, 16, 3), np.uint8)
    label[8:24, 6:10] = 255
    nobody = LabelFrame(np.zeros_like(label), False, None, np.full((17, 3), np.nan))
    person = LabelFrame(label, True, None, np.zeros((17, 3)))
    assert not live(nobody, StepTimes()).any()  # nobody yet: black, not G's picture of an empty label
    first = live(person, StepTimes())
    prev = live.prev
    held = live(nobody, StepTimes())
    assert np.array_equal(held, first) and live.prev is prev  # held, and the recurrence does not move
    times = StepTimes()
    second = live(person, times)
    assert times.generator > 0 and not np.array_equal(second, first)  # conditioned on the first output

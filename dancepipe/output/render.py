"""The render stage: the target person performing the source's motion, as an MP4.

The normalised source labels (``data/labels/<target>/transfer/<source>``) go through the generator one
frame at a time, each conditioned on the generator's previous output (zeros for the
first frame) exactly as it was trained; the face GAN then refines each frame's face
crop (the recurrence uses the unrefined output, which is what the generator saw in
training). Frames are encoded to H.264 at the source frame rate and the source's audio
track is carried over (:mod:`dancepipe.video.encode`).

A label without a person (``person_found`` False) is never given to the generator:
``render.empty`` picks what the output shows instead (:mod:`dancepipe.output.personless`: hold the
last generated frame, blank it, or trim the person-less ends and hold inside), and the
recurrence continues across the gap from the last generated output. With ``trim`` the
audio starts at the source time of the first frame kept, so it stays in sync.

The side-by-side video shows source | label | generated for the same frames; its
source panel is a steadied crop of the source video around the source subject, with
the dancer as tall as the stick figure (:mod:`dancepipe.output.sidebyside`).

The recurrence makes frame-level batching impossible, so the rest is overlapped with
it instead: label PNGs (and source panels for the side-by-side video) are read by a
background thread (:func:`dancepipe.video.decode.prefetch`) and encoding runs in another
(:class:`dancepipe.video.encode.BackgroundWriter`), so the main thread only runs networks.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, field_validator

from dancepipe.config import StageConfig
from dancepipe.errors import DancepipeError
from dancepipe.hardware.devices import DEVICE_HELP, check_device, resolve_device
from dancepipe.hardware.precision import PRECISION_HELP, Precision, resolve_precision
from dancepipe.model.networks import next_frame, to_model, to_uint8
from dancepipe.output.personless import EMPTY_RULES, EmptyRule, FramePlan, plan_frames
from dancepipe.pose.keypoints import read_index, read_table
from dancepipe.video.decode import prefetch, probe
from dancepipe.video.encode import BackgroundWriter, mp4_writer
from dancepipe.video.images import read_rgb

log = logging.getLogger(__name__)

ProgressFn = Callable[[int], None]
Box = tuple[int, int, int]

class RenderConfig(StageConfig):
    """``render`` section."""

    device: str = Field("auto", description=f"where the networks run: {DEVICE_HELP}")
    crf: int = Field(18, ge=0, le=51, description="H.264 constant rate factor (lower = better, bigger)")
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower"] = Field(
        "medium", description="x264 speed/size trade-off"
    )
    face: bool = Field(True, description="apply the face GAN when models/face.pt has it enabled")
    empty: EmptyRule = Field(
        "trim", description=f"what a frame without a person shows: {', '.join(EMPTY_RULES)} (see dancepipe.output.personless)"
    )
    panel_window: int = Field(
        15, ge=1, le=1001,
        description="side-by-side source panel: frames over which its crop (centre and scale) is smoothed",
    )
    precision: Precision = Field("auto", description=f"the generator's: {PRECISION_HELP}")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        return check_device(v)


# ---------------------------------------------------------------------------- inputs


def count_frames(labels_dir: str | Path, empty: str | None = None) -> int | None:
    """Frames the render will write (for a progress bar), None when the index cannot be read.

    Without ``empty`` this is the number of labels; with a rule it is the planned
    output length (``trim`` drops the person-less ends).
    """
    try:
        df = read_table(Path(labels_dir) / "index.parquet")[0]
        if empty is None or "person_found" not in df.columns:
            return len(df)
        return plan_frames(df.sort_values("frame")["person_found"].to_numpy(bool), empty).frames
    except DancepipeError:
        return None


def plan_for(labels: pd.DataFrame, rule: str, where: str | Path) -> FramePlan:
    """The :func:`dancepipe.output.personless.plan_frames` plan of a labels index (rows sorted by frame)."""
    if "person_found" not in labels.columns:
        raise DancepipeError(f"{where}: the labels index has no 'person_found' column; rerun the labels stage")
    return plan_frames(labels["person_found"].to_numpy(bool), rule)


def face_boxes(df: pd.DataFrame) -> list[Box | None]:
    """Per-row face boxes (x0, y0, size) from a labels index; None where ``face_ok`` is False.

    A labels index without face columns (made before face boxes were recorded) gives no
    boxes at all, so rendering runs without the face step instead of failing, and a
    warning says so (the face model would otherwise be skipped without a word).
    """
    if "face_ok" not in df.columns:
        log.warning("the labels index has no face box columns (made by an older labels stage): "
                    "face refinement is skipped; rerun the labels stage to get it")
        return [None] * len(df)
    from dancepipe.model.face_dataset import boxes_from_index

    return boxes_from_index(df)


# ---------------------------------------------------------------------------- generation


@dataclasses.dataclass
class Timing:
    """Where the render time went (seconds)."""

    frames: int = 0
    generator: float = 0.0
    face: float = 0.0
    wait_input: float = 0.0  # main thread blocked on label/frame reading
    wait_encode: float = 0.0  # main thread blocked on a full encoder queue
    total: float = 0.0
    encode_thread: float = 0.0  # encoder thread busy time (overlapped with the above)

    @property
    def outside_generator(self) -> float:
        """Share of wall time not spent in the generator (decode, face, encode, waits)."""
        return 1.0 - self.generator / self.total if self.total > 0 else float("nan")

    def to_dict(self) -> dict[str, float]:
        d = dataclasses.asdict(self)
        d["fps"] = self.frames / self.total if self.total > 0 else float("nan")
        d["outside_generator"] = self.outside_generator
        return d


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# Frames whose face crops are refined in one call. The recurrence does not involve the
# face step, so it can lag behind the generator; on a tiny crop the per-call overhead
# outweighs the arithmetic, and batching 8 frames cut the face step's share of render
# time from about 8 % to 5-6 % at the demo size.
FACE_BATCH = 8


def _refine_batch(face: Any, pending: list[tuple[torch.Tensor, torch.Tensor, Box | None]], device: torch.device,
                  timing: Timing) -> list[np.ndarray]:
    """Face-refine the buffered (label, output, box) frames in one call; uint8 images in order."""
    t1 = time.perf_counter()
    refined = face.refine(torch.cat([p[0] for p in pending]), torch.cat([p[1] for p in pending]),
                          [p[2] for p in pending])
    _sync(device)
    timing.face += time.perf_counter() - t1
    return list(to_uint8(refined))


class Recurrence:
    """The generator run frame by frame, each frame conditioned on its previous output.

    :meth:`step` takes one label (and its face box) and returns the frames that are
    finished: the generated frame itself without a face model, or, with one, a
    whole batch of :data:`FACE_BATCH` face-refined frames once that many are waiting
    (an empty list before). :meth:`flush` refines and returns whatever is waiting.
    The recurrence keeps the unrefined output, as in training, and runs across any
    :meth:`flush`: a caller that skips labels (render's person-less frames) conditions
    the next frame on the last generated one.
    """

    def __init__(self, generator: torch.nn.Module, *, device: torch.device, face: Any | None = None,
                 timing: Timing | None = None, precision: str = "fp32") -> None:
        self.generator = generator.eval()
        self.device = device
        self.precision = precision
        self.face = face
        self.timing = timing if timing is not None else Timing()
        self.prev: torch.Tensor | None = None
        self.pending: list[tuple[torch.Tensor, torch.Tensor, Box | None]] = []

    def step(self, label: np.ndarray, box: Box | None = None) -> list[np.ndarray]:
        """Generate the frame for ``label``; return the frames finished so far, in order."""
        with torch.inference_mode():
            x = to_model(label, self.device)
            t0 = time.perf_counter()
            out = next_frame(self.generator, x, self.prev, self.precision)
            _sync(self.device)
            self.timing.generator += time.perf_counter() - t0
            if out.shape != x.shape:
                raise DancepipeError(
                    f"generator returned {tuple(out.shape)} for a label of {tuple(x.shape)}; "
                    "the checkpoint does not match the label size"
                )
            self.prev = out
            self.timing.frames += 1
            if self.face is None:
                return [to_uint8(out)[0]]
            self.pending.append((x, out, box))  # a None box passes through and is counted as skipped
            if len(self.pending) < FACE_BATCH:
                return []
        return self.flush()

    def flush(self) -> list[np.ndarray]:
        """Face-refine and return the frames still waiting (none without a face model)."""
        if not self.pending:
            return []
        with torch.inference_mode():
            images = _refine_batch(self.face, self.pending, self.device, self.timing)
        self.pending = []
        return images


def generate_sequence(
    generator: torch.nn.Module,
    labels: Iterable[np.ndarray],
    *,
    device: torch.device,
    face: Any | None = None,
    boxes: Iterable[Box | None] | None = None,
    timing: Timing | None = None,
    precision: str = "fp32",
) -> Iterator[np.ndarray]:
    """Yield one generated (H, W, 3) uint8 frame per label, sequentially and in order.

    Frame t is ``G(label_t, prev)`` with ``prev`` the generator's own output for t−1
    (zeros for the first frame). When ``face`` (a ``FaceRefiner``) is given, the yielded
    frame has its face refined inside ``boxes[t]`` (skipped where the box is None);
    the recurrence keeps the unrefined output, as in training. Face refinement runs
    on :data:`FACE_BATCH` frames at a time, so with a face model the frames come out
    in bursts, up to that many labels after they were read (see :class:`Recurrence`).
    ``precision`` (fp32, bf16 or fp16) is G's autocast (:func:`dancepipe.model.networks.next_frame`).
    """
    recurrence = Recurrence(generator, device=device, face=face, timing=timing, precision=precision)
    timing = recurrence.timing
    box_iter = iter(boxes) if boxes is not None else None
    label_iter = iter(labels)
    while True:
        t_in = time.perf_counter()
        label = next(label_iter, None)
        timing.wait_input += time.perf_counter() - t_in
        if label is None:
            break
        box = next(box_iter, None) if box_iter is not None else None
        yield from recurrence.step(label, box)
    yield from recurrence.flush()


# ---------------------------------------------------------------------------- render


@dataclasses.dataclass
class RenderResult:
    """What was written and how fast.

    ``frames`` is the output length (the plan's), ``empty`` the person-less labels in
    the input, ``substituted`` the output frames showing a held or blank picture and
    ``trimmed`` the labels dropped from the ends (``empty_rule`` trim only).
    """

    frames: int
    fps: float
    width: int
    height: int
    audio: bool
    face_applied: bool
    face_note: str
    timing: Timing
    outputs: list[str]
    empty_rule: str = "trim"
    empty: int = 0
    substituted: int = 0
    trimmed: int = 0
    audio_start: float = 0.0

    def gaps_summary(self) -> str:
        """One phrase about the person-less labels, for the stage's summary line."""
        if self.empty == 0:
            return "every label shows a person"
        return (f"{self.empty} person-less labels (empty = {self.empty_rule}): {self.substituted} frames "
                f"{'blank' if self.empty_rule == 'blank' else 'held'}, {self.trimmed} trimmed")


def _audio_start(labels: pd.DataFrame, plan: FramePlan, fps: float) -> float:
    """Source time (s after its first frame) of the first output frame: its label's timestamp, else frame / fps."""
    if plan.first == 0:
        return 0.0
    if "timestamp" in labels.columns:
        t = float(labels["timestamp"].iloc[plan.first]) - float(labels["timestamp"].iloc[0])
        if np.isfinite(t) and t >= 0:
            return t
    return float(labels["frame"].iloc[plan.first] - labels["frame"].iloc[0]) / fps


def render_transfer(
    generator: torch.nn.Module,
    *,
    labels_dir: str | Path,
    source_video: str | Path,
    out: str | Path,
    side_by_side_out: str | Path | None = None,
    source_poses: str | Path | None = None,
    face: Any | None = None,
    device: torch.device | str = "cpu",
    crf: int = 18,
    preset: str = "medium",
    empty: str = "trim",
    panel_window: int = 15,
    precision: str = "fp32",
    progress: ProgressFn | None = None,
) -> RenderResult:
    """Render the transfer labels to ``out`` (and optionally the side-by-side video).

    The output frames follow :func:`dancepipe.output.personless.plan_frames` under the ``empty``
    rule: only labels with a person go through the generator (and the face step);
    the others are held, blank or trimmed. The videos run at the source video's frame
    rate with the source's audio (if any), which starts at the source time of the
    first frame kept. ``side_by_side_out`` needs ``source_poses`` (the source's pose
    table): its source panel is cropped around the source subject from
    ``source_video`` and scaled so the dancer is as tall as the stick figure, the crop
    smoothed over ``panel_window`` frames (:mod:`dancepipe.output.sidebyside`). ``precision``
    (fp32, bf16 or fp16) is the generator's autocast (the face GAN stays in fp32).
    """
    device = torch.device(device) if isinstance(device, str) else device
    labels = read_index(labels_dir, "labels")
    plan = plan_for(labels, empty, labels_dir)
    info = probe(source_video)
    if info.fps <= 0:
        raise DancepipeError(f"{source_video}: frame rate is unknown, cannot time the output video")
    if info.frame_count and info.frame_count != len(labels):
        log.warning(
            "%s has %d frames but %s has %d labels; writing frames for the labels",
            source_video, info.frame_count, labels_dir, len(labels),
        )
    first = read_rgb(Path(labels_dir) / labels["file"].iloc[plan.rows[0]])
    h, w = first.shape[:2]
    audio_start = _audio_start(labels, plan, info.fps)
    log.info(
        "%d of %d labels show no person (render.empty = %s): %d output frames, %d generated, %d held/blank, "
        "%d trimmed%s", plan.empty, plan.total, plan.rule, plan.frames, plan.frames - plan.substituted,
        plan.substituted, plan.trimmed, f"; the audio starts at {audio_start:.3f} s" if audio_start else "",
    )

    panels: Iterator[np.ndarray | None] | None = None
    if side_by_side_out is not None:
        if source_poses is None:
            raise DancepipeError("the side-by-side video needs the source pose table (--source-poses)")
        from dancepipe.output.sidebyside import load_track, source_panels

        track = load_track(source_poses, width=w, height=h, labels=labels, window=panel_window)
        panels = source_panels(source_video, track, labels["frame"].to_numpy(np.int64)[plan.rows], w, h)
    boxes = face_boxes(labels)

    def read_inputs() -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        for row in plan.rows:
            name = labels["file"].iloc[row]
            label = read_rgb(Path(labels_dir) / name)
            if label.shape != (h, w, 3):
                raise DancepipeError(f"{Path(labels_dir) / name}: label is {label.shape[1]}x{label.shape[0]}, expected {w}x{h}")
            yield label, (next(panels) if panels is not None else None)

    timing = Timing()
    t_start = time.perf_counter()
    recurrence = Recurrence(generator, device=device, face=face, timing=timing, precision=precision)
    black = np.zeros((h, w, 3), np.uint8)
    # Output frames wait here, in order, until their picture exists: a generated frame
    # until the face step has returned it, a held one until the frame it holds has.
    waiting: collections.deque[tuple[bool, np.ndarray, np.ndarray | None]] = collections.deque()
    done: collections.deque[np.ndarray] = collections.deque()  # generated, not yet written
    last: np.ndarray | None = None
    written = 0

    with contextlib.ExitStack() as stack:
        writers = [stack.enter_context(mp4_writer(
            out, width=w, height=h, fps=info.fps, crf=crf, preset=preset, audio_from=source_video,
            audio_start=audio_start,
        ))]
        if side_by_side_out is not None:
            writers.append(stack.enter_context(mp4_writer(
                side_by_side_out, width=3 * w, height=h, fps=info.fps, crf=crf, preset=preset,
                audio_from=source_video, audio_start=audio_start,
            )))
        background = BackgroundWriter(writers, maxsize=16)

        def write_ready() -> None:
            nonlocal last, written
            while waiting:
                generated, label, src = waiting[0]
                if generated:
                    if not done:
                        return
                    image = last = done.popleft()
                elif plan.rule == "blank":
                    image = black
                elif last is not None:
                    image = last
                elif done:
                    image = done[0]  # person-less frames before the first person show the first generated frame
                else:
                    return
                waiting.popleft()
                item = (image,) if src is None else (image, np.concatenate([src, label, image], axis=1))
                t_out = time.perf_counter()
                background.put(item)
                timing.wait_encode += time.perf_counter() - t_out
                written += 1
                if progress is not None:
                    progress(1)

        inputs = prefetch(read_inputs(), size=16)
        try:
            for row, generated in zip(plan.rows, plan.generated, strict=True):
                t_in = time.perf_counter()
                label, src = next(inputs)
                timing.wait_input += time.perf_counter() - t_in
                waiting.append((bool(generated), label, src))
                if generated:
                    done.extend(recurrence.step(label, boxes[row]))
                else:
                    done.extend(recurrence.flush())  # every frame before the gap is written before it
                write_ready()
            done.extend(recurrence.flush())
            write_ready()
        finally:
            inputs.close()
            background.close()
        timing.encode_thread = background.seconds
        # Checked before the files are renamed into place: a wrong count leaves no output.
        if written != plan.frames or waiting or done:
            raise DancepipeError(f"{out}: wrote {written} frames but the plan has {plan.frames}")
        if timing.frames != plan.frames - plan.substituted:
            raise DancepipeError(f"{out}: generated {timing.frames} frames for {plan.frames - plan.substituted} "
                                 "labels with a person")
    if face is not None and hasattr(face, "summary"):
        log.info("%s", face.summary())
    timing.total = time.perf_counter() - t_start
    return RenderResult(
        frames=written, fps=info.fps, width=w, height=h, audio=info.has_audio,
        face_applied=face is not None, face_note="", timing=timing,
        outputs=[str(out)] + ([str(side_by_side_out)] if side_by_side_out is not None else []),
        empty_rule=plan.rule, empty=plan.empty, substituted=plan.substituted, trimmed=plan.trimmed,
        audio_start=audio_start,
    )


def load_face(path: str | Path | None, enabled: bool, device: torch.device) -> tuple[Any | None, str]:
    """Load the face refiner, or explain in a sentence why face refinement is off."""
    if not enabled:
        return None, "face refinement off: render.face is false"
    if path is None:
        return None, "face refinement off: no face model given"
    from dancepipe.model.face_checkpoint import load_face_model

    model = load_face_model(path, device)
    if model is None:
        return None, f"face refinement off: {path} was trained with train_face.enabled = false"
    return model, f"face refinement on ({path})"


def run_render(
    cfg: RenderConfig,
    *,
    generator_path: str | Path,
    face_path: str | Path | None,
    labels_dir: str | Path,
    source_video: str | Path,
    source_poses: str | Path | None,
    out: str | Path,
    side_by_side_out: str | Path | None,
    progress: ProgressFn | None = None,
) -> RenderResult:
    """The render stage's entry point: load the checkpoints and render (see :func:`render_transfer`)."""
    from dancepipe.model.checkpoint import load_generator

    device = resolve_device(cfg.device, "render.device")
    if not Path(generator_path).is_file():
        raise DancepipeError(f"{generator_path}: generator checkpoint does not exist (run the train stage first)")
    generator, _meta = load_generator(generator_path, device)
    face, note = load_face(face_path, cfg.face, device)
    log.info(note)
    precision = resolve_precision(cfg.precision, device, "render.precision")
    log.info("generator precision: %s (render.precision = %s)", precision, cfg.precision)
    result = render_transfer(
        generator, labels_dir=labels_dir, source_video=source_video, out=out,
        side_by_side_out=side_by_side_out,
        source_poses=source_poses, face=face, device=device, crf=cfg.crf, preset=cfg.preset,
        empty=cfg.empty, panel_window=cfg.panel_window, progress=progress,
        precision=precision,
    )
    result.face_note = note
    return result

"""The render stage: the target person performing the source's motion, as an MP4.

The normalised source labels (``data/labels/transfer``) go through the generator one
frame at a time, each conditioned on the generator's previous output (zeros for the
first frame) exactly as it was trained; the face GAN then refines each frame's face
crop (the recurrence uses the unrefined output, which is what the generator saw in
training). Frames are encoded to H.264 at the source frame rate and the source's audio
track is carried over (:mod:`dancepipe.encode`).

The recurrence makes frame-level batching impossible, so the rest is overlapped with
it instead: label PNGs (and source frames for the side-by-side video) are read by a
background thread (:func:`dancepipe.video.prefetch`) and encoding runs in another
(:class:`dancepipe.encode.BackgroundWriter`), so the main thread only runs networks.
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

import cv2
import numpy as np
import pandas as pd
import torch
from pydantic import Field, field_validator

from dancepipe.config import StageConfig
from dancepipe.encode import BackgroundWriter, mp4_writer
from dancepipe.errors import DancepipeError
from dancepipe.keypoints import read_table
from dancepipe.video import prefetch, probe

log = logging.getLogger(__name__)

ProgressFn = Callable[[int], None]
Box = tuple[int, int, int]

_DEVICE_HELP = "auto, cpu, cuda, cuda:N or mps"


def check_device(value: str) -> str:
    """Validate a device param value (auto, cpu, cuda, cuda:N, mps)."""
    v = value.strip().lower()
    if v in ("auto", "cpu", "cuda", "mps") or (v.startswith("cuda:") and v[5:].isdigit()):
        return v
    raise ValueError(f"must be one of {_DEVICE_HELP}")


def resolve_device(value: str) -> torch.device:
    """Turn a device param into a torch device; ``auto`` picks CUDA when available."""
    v = check_device(value)
    if v == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if v.startswith("cuda") and not torch.cuda.is_available():
        raise DancepipeError(f"device '{value}' was requested but CUDA is not available on this machine")
    return torch.device(v)


class RenderConfig(StageConfig):
    """``render`` section."""

    device: str = Field("auto", description=f"where the networks run: {_DEVICE_HELP}")
    crf: int = Field(18, ge=0, le=51, description="H.264 constant rate factor (lower = better, bigger)")
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower"] = Field(
        "medium", description="x264 speed/size trade-off"
    )
    face: bool = Field(True, description="apply the face GAN when models/face.pt has it enabled")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        return check_device(v)


# ---------------------------------------------------------------------------- inputs


def read_index(directory: str | Path, what: str) -> pd.DataFrame:
    """Read ``<directory>/index.parquet`` (frames or labels), sorted by frame, files checked."""
    d = Path(directory)
    if not d.is_dir():
        raise DancepipeError(f"{d}: {what} directory does not exist (run the stage that writes it first)")
    df, _ = read_table(d / "index.parquet")
    for col in ("frame", "file"):
        if col not in df.columns:
            raise DancepipeError(f"{d / 'index.parquet'}: column '{col}' is missing")
    if len(df) == 0:
        raise DancepipeError(f"{d / 'index.parquet'}: the {what} index is empty")
    df = df.sort_values("frame").reset_index(drop=True)
    missing = [f for f in df["file"] if not (d / f).is_file()]
    if missing:
        raise DancepipeError(f"{d}: {len(missing)} {what} files listed in index.parquet are missing, e.g. {missing[0]}")
    return df


def count_frames(labels_dir: str | Path) -> int | None:
    """Number of rows in a labels index (for a progress bar), None when it cannot be read."""
    try:
        return len(read_table(Path(labels_dir) / "index.parquet")[0])
    except DancepipeError:
        return None


def load_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DancepipeError(f"{path}: not a readable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def face_boxes(df: pd.DataFrame) -> list[Box | None]:
    """Per-row face boxes (x0, y0, size) from a labels index; None where ``face_ok`` is False.

    A labels index without face columns (made before face boxes were recorded) gives no
    boxes at all, so rendering runs without the face step instead of failing.
    """
    if "face_ok" not in df.columns:
        return [None] * len(df)
    from dancepipe.face import boxes_from_index

    return boxes_from_index(df)


def to_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 → (1, 3, H, W) float in [-1, 1] on ``device``."""
    t = torch.from_numpy(np.ascontiguousarray(image)).to(device)
    return t.permute(2, 0, 1).unsqueeze(0).float().div_(127.5).sub_(1.0)


def to_image(t: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) in [-1, 1] → (H, W, 3) uint8."""
    x = t[0].detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return x.permute(1, 2, 0).cpu().numpy()


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
    return [to_image(refined[i:i + 1]) for i in range(len(pending))]


def generate_sequence(
    generator: torch.nn.Module,
    labels: Iterable[np.ndarray],
    *,
    device: torch.device,
    face: Any | None = None,
    boxes: Iterable[Box | None] | None = None,
    timing: Timing | None = None,
) -> Iterator[np.ndarray]:
    """Yield one generated (H, W, 3) uint8 frame per label, sequentially and in order.

    Frame t is ``G(label_t, prev)`` with ``prev`` the generator's own output for t−1
    (zeros for the first frame). When ``face`` (a ``FaceRefiner``) is given, the yielded
    frame has its face refined inside ``boxes[t]`` (skipped where the box is None);
    the recurrence keeps the unrefined output, as in training. Face refinement runs
    on :data:`FACE_BATCH` frames at a time, so with a face model the frames come out
    in bursts, up to that many labels after they were read.
    """
    timing = timing if timing is not None else Timing()
    box_iter = iter(boxes) if boxes is not None else None
    pending: list[tuple[torch.Tensor, torch.Tensor, Box | None]] = []
    prev: torch.Tensor | None = None
    generator.eval()
    label_iter = iter(labels)
    with torch.inference_mode():
        while True:
            t_in = time.perf_counter()
            label = next(label_iter, None)
            timing.wait_input += time.perf_counter() - t_in
            if label is None:
                break
            box = next(box_iter, None) if box_iter is not None else None
            x = to_tensor(label, device)
            if prev is None:
                prev = torch.zeros_like(x)
            t0 = time.perf_counter()
            out = generator(x, prev)
            _sync(device)
            timing.generator += time.perf_counter() - t0
            if out.shape != x.shape:
                raise DancepipeError(
                    f"generator returned {tuple(out.shape)} for a label of {tuple(x.shape)}; "
                    "the checkpoint does not match the label size"
                )
            prev = out
            timing.frames += 1
            if face is None:
                yield to_image(out)
                continue
            pending.append((x, out, box))  # a None box passes through and is counted as skipped
            if len(pending) == FACE_BATCH:
                yield from _refine_batch(face, pending, device, timing)
                pending = []
        if pending:
            yield from _refine_batch(face, pending, device, timing)


# ---------------------------------------------------------------------------- render


@dataclasses.dataclass
class RenderResult:
    """What was written and how fast."""

    frames: int
    fps: float
    width: int
    height: int
    audio: bool
    face_applied: bool
    face_note: str
    timing: Timing
    outputs: list[str]


def _fit_height(image: np.ndarray, height: int) -> np.ndarray:
    h, w = image.shape[:2]
    if h == height:
        return image
    new_w = max(2, int(round(w * height / h)))
    return cv2.resize(image, (new_w, height), interpolation=cv2.INTER_AREA)


def render_transfer(
    generator: torch.nn.Module,
    *,
    labels_dir: str | Path,
    source_video: str | Path,
    out: str | Path,
    side_by_side_out: str | Path | None = None,
    source_frames_dir: str | Path | None = None,
    face: Any | None = None,
    device: torch.device | str = "cpu",
    crf: int = 18,
    preset: str = "medium",
    progress: ProgressFn | None = None,
) -> RenderResult:
    """Render every transfer label to ``out`` (and optionally the side-by-side video).

    Exactly one output frame is written per row of the labels index, at the source
    video's frame rate, with the source's audio (if any). ``side_by_side_out`` needs
    ``source_frames_dir`` (the source's cropped frames, matched to labels by frame index).
    """
    device = torch.device(device) if isinstance(device, str) else device
    labels = read_index(labels_dir, "labels")
    info = probe(source_video)
    if info.fps <= 0:
        raise DancepipeError(f"{source_video}: frame rate is unknown, cannot time the output video")
    if info.frame_count and info.frame_count != len(labels):
        log.warning(
            "%s has %d frames but %s has %d labels; writing one frame per label",
            source_video, info.frame_count, labels_dir, len(labels),
        )
    first = load_rgb(Path(labels_dir) / labels["file"].iloc[0])
    h, w = first.shape[:2]

    src_files: dict[int, Path] = {}
    if side_by_side_out is not None:
        if source_frames_dir is None:
            raise DancepipeError("the side-by-side video needs the source frames directory")
        src_index = read_index(source_frames_dir, "source frames")
        src_files = {int(f): Path(source_frames_dir) / n for f, n in zip(src_index["frame"], src_index["file"], strict=True)}
        missing = [int(f) for f in labels["frame"] if int(f) not in src_files]
        if missing:
            raise DancepipeError(
                f"{source_frames_dir}: no source frame for {len(missing)} label frames, e.g. frame {missing[0]}"
            )

    def read_inputs() -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        for frame, name in zip(labels["frame"], labels["file"], strict=True):
            label = load_rgb(Path(labels_dir) / name)
            if label.shape != (h, w, 3):
                raise DancepipeError(f"{Path(labels_dir) / name}: label is {label.shape[1]}x{label.shape[0]}, expected {w}x{h}")
            src = _fit_height(load_rgb(src_files[int(frame)]), h) if src_files else None
            yield label, src

    timing = Timing()
    t_start = time.perf_counter()
    # The prefetch thread reads labels and source frames ahead; the generator consumes
    # labels while the matching source frames wait in ``queued`` for the side-by-side.
    queued: collections.deque[tuple[np.ndarray, np.ndarray | None]] = collections.deque()

    def labels_only() -> Iterator[np.ndarray]:
        for label, src in prefetch(read_inputs(), size=16):
            queued.append((label, src))
            yield label

    with contextlib.ExitStack() as stack:
        writers = [stack.enter_context(
            mp4_writer(out, width=w, height=h, fps=info.fps, crf=crf, preset=preset, audio_from=source_video)
        )]
        if side_by_side_out is not None:
            src_w = _fit_height(load_rgb(src_files[int(labels["frame"].iloc[0])]), h).shape[1]
            writers.append(stack.enter_context(mp4_writer(
                side_by_side_out, width=src_w + 2 * w, height=h, fps=info.fps, crf=crf, preset=preset,
                audio_from=source_video,
            )))
        background = BackgroundWriter(writers, maxsize=16)
        try:
            frames = generate_sequence(
                generator, labels_only(), device=device, face=face, boxes=face_boxes(labels), timing=timing
            )
            for image in frames:
                label, src = queued.popleft()
                if side_by_side_out is not None:
                    if src.shape[1] != src_w:
                        src = cv2.resize(src, (src_w, h), interpolation=cv2.INTER_AREA)
                    item: tuple[np.ndarray, ...] = (image, np.concatenate([src, label, image], axis=1))
                else:
                    item = (image,)
                t_out = time.perf_counter()
                background.put(item)
                timing.wait_encode += time.perf_counter() - t_out
                if progress is not None:
                    progress(1)
        finally:
            background.close()
        timing.encode_thread = background.seconds
    if face is not None and hasattr(face, "summary"):
        log.info("%s", face.summary())
    timing.total = time.perf_counter() - t_start
    if timing.frames != len(labels):
        raise DancepipeError(f"{out}: wrote {timing.frames} frames for {len(labels)} labels")
    return RenderResult(
        frames=timing.frames, fps=info.fps, width=w, height=h, audio=info.has_audio,
        face_applied=face is not None, face_note="", timing=timing, outputs=[str(out)] + ([str(side_by_side_out)] if side_by_side_out is not None else []),
    )


def load_face(path: str | Path | None, enabled: bool, device: torch.device) -> tuple[Any | None, str]:
    """Load the face refiner, or explain in a sentence why face refinement is off."""
    if not enabled:
        return None, "face refinement off: render.face is false"
    if path is None:
        return None, "face refinement off: no face model given"
    from dancepipe.face import load_face_model

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
    source_frames_dir: str | Path | None,
    out: str | Path,
    side_by_side_out: str | Path | None,
    progress: ProgressFn | None = None,
) -> RenderResult:
    """The render stage's entry point: load the checkpoints and render (see :func:`render_transfer`)."""
    from dancepipe.checkpoint import load_generator

    device = resolve_device(cfg.device)
    if not Path(generator_path).is_file():
        raise DancepipeError(f"{generator_path}: generator checkpoint does not exist (run the train stage first)")
    generator, _meta = load_generator(generator_path, device)
    face, note = load_face(face_path, cfg.face, device)
    log.info(note)
    result = render_transfer(
        generator, labels_dir=labels_dir, source_video=source_video, out=out,
        side_by_side_out=side_by_side_out,
        source_frames_dir=source_frames_dir, face=face, device=device, crf=cfg.crf, preset=cfg.preset,
        progress=progress,
    )
    result.face_note = note
    return result

"""The poses stage: COCO-17 keypoints of every person in a video, once per video.

Frames are decoded in a background thread (overlapping FFmpeg with inference), grouped
into batches and run through the Ultralytics pose model. Only the small per-frame
detections are kept (boxes, scores, keypoints of every person), so memory does not
grow with the video's pixel count. The table is written with
:data:`dancepipe.pose.keypoints.DETECTION_SCHEMA`: original upright pixel coordinates,
decoder timestamps, NaN for missing keypoints (confidence below ``kp_conf``). Which
person is a subject is decided later, per subject, by :mod:`dancepipe.pose.subject`, so
two people of one clip never cost two pose passes.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from dancepipe.config import StageConfig
from dancepipe.errors import DancepipeError
from dancepipe.hardware.devices import check_device, resolve_device
from dancepipe.hardware.precision import Precision, autocast, resolve_precision
from dancepipe.pose.estimator import load_pose_model, model_sha256
from dancepipe.pose.keypoints import COCO_NAMES, DETECTION_SCHEMA, keypoints_to_columns, write_table
from dancepipe.pose.tracks import Detections
from dancepipe.video.decode import DecodeReport, Frame, batched, iter_frames, prefetch, probe

log = logging.getLogger(__name__)

NUM_KP = len(COCO_NAMES)
VERSIONED = ("dancepipe", "ultralytics", "torch", "numpy", "av")


class PosesConfig(StageConfig):
    """``poses`` section: pose model and inference settings."""

    model: str = Field("yolov8n-pose.pt", min_length=1)
    imgsz: int = Field(512, ge=32, le=4096)
    batch: int = Field(8, ge=1, le=256)
    det_conf: float = Field(0.25, ge=0.0, le=1.0)
    kp_conf: float = Field(0.5, ge=0.0, le=1.0)
    device: str = "auto"
    precision: Precision = "auto"

    @field_validator("imgsz")
    @classmethod
    def _multiple_of_32(cls, v: int) -> int:
        if v % 32:
            raise ValueError("must be a multiple of 32")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        return check_device(v)


def mask_keypoints(kps: np.ndarray, kp_conf: float) -> np.ndarray:
    """Set keypoints whose confidence is below ``kp_conf`` (or not finite) to NaN in x, y and conf.

    Ultralytics reports unseen points with tiny confidence and sometimes (0, 0)
    coordinates; masking by confidence means such a point is never stored as a place.
    Works on (..., 17, 3) arrays and returns a float32 copy.
    """
    out = np.array(kps, dtype=np.float32, copy=True)
    conf = out[..., 2]
    bad = ~(conf >= kp_conf) | ~np.isfinite(out[..., 0]) | ~np.isfinite(out[..., 1])
    out[bad] = np.nan
    return out


def _fp32_forward(forward: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a module's forward so it runs in fp32 even inside a bf16/fp16 autocast region."""
    import torch

    def run(x: Any, *args: Any, **kwargs: Any) -> Any:
        dev = x[0].device.type if isinstance(x, (list, tuple)) else x.device.type
        with torch.autocast(dev, enabled=False):
            if isinstance(x, (list, tuple)):
                x = [t.float() for t in x]
            else:
                x = x.float()
            return forward(x, *args, **kwargs)

    return run


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that shape the keypoints."""
    out = {}
    for name in VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "unknown"
    return out


@dataclasses.dataclass(frozen=True)
class Letterbox:
    """Geometry mapping a (height, width) frame into the network input and back.

    The frame is scaled so its long side is ``imgsz`` (aspect kept), then centred and
    padded to the next multiple of the model stride ("rect" letterboxing: no square
    padding, so a portrait 1080×1920 frame becomes 384×640, not 640×640).
    """

    height: int
    width: int
    in_height: int
    in_width: int
    new_height: int
    new_width: int
    top: int
    left: int

    @classmethod
    def fit(cls, height: int, width: int, imgsz: int, stride: int) -> Letterbox:
        """The geometry for frames of ``height`` x ``width`` (same rounding as Ultralytics' LetterBox)."""
        gain = min(imgsz / height, imgsz / width)
        nh, nw = max(round(height * gain), 1), max(round(width * gain), 1)
        ih, iw = math.ceil(nh / stride) * stride, math.ceil(nw / stride) * stride
        return cls(height, width, ih, iw, nh, nw, (ih - nh) // 2, (iw - nw) // 2)

    def to_frame(self, xy: np.ndarray) -> np.ndarray:
        """Map (..., 2) network-input x, y back to frame pixels, clipped to the frame (returns a copy)."""
        out = np.array(xy, dtype=np.float32, copy=True)
        out[..., 0] = (out[..., 0] - self.left) * (self.width / self.new_width)
        out[..., 1] = (out[..., 1] - self.top) * (self.height / self.new_height)
        np.clip(out[..., 0], 0, self.width, out=out[..., 0])
        np.clip(out[..., 1], 0, self.height, out=out[..., 1])
        return out


class PoseRunner:
    """Runs the pose network on batches of RGB frames and returns per-frame detections.

    This drives the fused network directly instead of going through
    ``YOLO.predict``: frames are letterboxed straight into one preallocated NHWC
    batch (which is already the channels-last layout the CPU kernels prefer), the
    batch runs in one forward pass under ``torch.inference_mode``, and Ultralytics'
    own non-maximum suppression picks the detections. Boxes and keypoints are mapped
    back to frame pixels here; no per-frame ``Results`` objects are built.

    With ``precision`` bf16 or fp16 the backbone and neck run under that autocast while the
    head (which decodes box and keypoint coordinates) stays in fp32. The runner takes
    over ``model``: its network is fused and re-laid-out in place.
    """

    #: NMS IoU used by ``YOLO.predict`` by default, kept so results match it.
    NMS_IOU = 0.7

    def __init__(self, model: Any, cfg: PosesConfig, device: str) -> None:
        import torch

        self.cfg = cfg
        self.device = torch.device(device)
        self.net = model.model.fuse(verbose=False).eval().to(self.device)
        self.channels_last = self.device.type == "cpu"
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.stride = int(max(self.net.stride))
        self.num_classes = len(self.net.names)
        self.end2end = bool(getattr(self.net, "end2end", False))
        self.kpt_shape = tuple(self.net.kpt_shape)
        self.precision = resolve_precision(cfg.precision, device, "poses.precision")
        if self.precision != "fp32":
            head = self.net.model[-1]
            head.forward = _fp32_forward(head.forward)
        if self.kpt_shape != (NUM_KP, 3):
            raise DancepipeError(
                f"{cfg.model}: model predicts keypoints of shape {self.kpt_shape}, but COCO-17 (17, 3) is needed"
            )
        self._boxes: dict[tuple[int, int], Letterbox] = {}

    def letterbox(self, shape: tuple[int, ...]) -> Letterbox:
        key = (int(shape[0]), int(shape[1]))
        if key not in self._boxes:
            self._boxes[key] = Letterbox.fit(key[0], key[1], self.cfg.imgsz, self.stride)
        return self._boxes[key]

    def __call__(self, images: list[np.ndarray]) -> list[Detections]:
        """images: (H, W, 3) uint8 RGB frames → one :class:`Detections` per frame."""
        out: list[Detections | None] = [None] * len(images)
        groups: dict[Letterbox, list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault(self.letterbox(img.shape), []).append(i)
        for lb, idx in groups.items():
            for i, det in zip(idx, self._run(lb, [images[i] for i in idx]), strict=True):
                out[i] = det
        return out  # type: ignore[return-value]

    def _run(self, lb: Letterbox, images: list[np.ndarray]) -> list[Detections]:
        import cv2
        import torch
        from ultralytics.utils.nms import non_max_suppression

        buf = np.full((len(images), lb.in_height, lb.in_width, 3), 114, dtype=np.uint8)
        for b, img in zip(buf, images, strict=True):
            b[lb.top:lb.top + lb.new_height, lb.left:lb.left + lb.new_width] = cv2.resize(
                img, (lb.new_width, lb.new_height), interpolation=cv2.INTER_LINEAR
            )
        with torch.inference_mode(), autocast(self.device, self.precision):
            x = torch.from_numpy(buf).to(self.device).permute(0, 3, 1, 2)  # (B, 3, H, W), NHWC memory
            if not self.channels_last:
                x = x.contiguous()
            x = x.float().div_(255.0)
            preds = self.net(x)
            preds = preds[0] if isinstance(preds, (list, tuple)) else preds
            kept = non_max_suppression(
                preds, self.cfg.det_conf, self.NMS_IOU, classes=[0], nc=self.num_classes, end2end=self.end2end,
            )
        result = []
        for det in kept:
            det = det.float().cpu().numpy()
            if len(det) == 0:
                result.append(Detections.empty(NUM_KP))
                continue
            boxes = lb.to_frame(det[:, :4].reshape(-1, 2, 2)).reshape(-1, 4)
            kps = det[:, 6:6 + NUM_KP * 3].reshape(-1, NUM_KP, 3).copy()
            kps[..., :2] = lb.to_frame(kps[..., :2])
            result.append(Detections(boxes, det[:, 4].astype(np.float32), kps))
        return result


def detect_frames(
    frames: Iterable[Frame], runner: Callable[[list[np.ndarray]], list[Detections]], batch: int,
    progress: Callable[[int], None] | None = None,
) -> Iterator[tuple[int, float, Detections]]:
    """Run ``runner`` over ``frames`` in batches, yielding (index, timestamp, detections) per frame.

    Images are dropped as soon as their batch is detected, so memory stays bounded by
    the batch (plus whatever the frame source buffers).
    """
    for chunk in batched(frames, batch):
        dets = runner([f.image for f in chunk])
        for f, d in zip(chunk, dets, strict=True):
            yield f.index, f.timestamp, d
        if progress is not None:
            progress(len(chunk))


def detection_table(
    indices: list[int], timestamps: list[float], detections: list[Detections], kp_conf: float,
) -> pd.DataFrame:
    """Every person of every frame as rows of :data:`DETECTION_SCHEMA` (keypoints masked by ``kp_conf``)."""
    frame, ts, person, boxes, scores, kps = [], [], [], [], [], []
    for index, t, det in zip(indices, timestamps, detections, strict=True):
        n = len(det)
        frame += [index] * max(n, 1)
        ts += [t] * max(n, 1)
        if n == 0:
            person.append(-1)
            boxes.append(np.full((1, 4), np.nan, np.float32))
            scores.append(np.full(1, np.nan, np.float32))
            kps.append(np.full((1, NUM_KP, 3), np.nan, np.float32))
        else:
            person += range(n)
            boxes.append(np.asarray(det.boxes, np.float32))
            scores.append(np.asarray(det.scores, np.float32))
            kps.append(np.stack([mask_keypoints(k, kp_conf) for k in det.keypoints]))
    box = np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32)
    data: dict[str, Any] = {
        "frame": np.asarray(frame, dtype=np.int64),
        "timestamp": np.asarray(ts, dtype=np.float64),
        "person": np.asarray(person, dtype=np.int32),
        "box_x0": box[:, 0], "box_y0": box[:, 1], "box_x1": box[:, 2], "box_y1": box[:, 3],
        "score": np.concatenate(scores) if scores else np.zeros(0, np.float32),
    }
    data.update(keypoints_to_columns(np.concatenate(kps) if kps else np.zeros((0, NUM_KP, 3), np.float32)))
    return pd.DataFrame(data, columns=DETECTION_SCHEMA.names)


def extract_poses(
    video: str | Path, out: str | Path, cfg: PosesConfig, progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Detect every person's pose in ``video`` and write the detection table to ``out``.

    Returns a summary (frames, frames with a person, most people in one frame, decode
    errors, frames/s, weights used). Raises :class:`DancepipeError` when the video cannot be read or has
    no person in any frame; nothing is written then.
    """
    video = Path(video)
    info = probe(video)
    device = str(resolve_device(cfg.device, "poses.device"))
    model = load_pose_model(cfg.model, device, "poses.device")
    weights = Path(model.ckpt_path)
    runner = PoseRunner(model, cfg, device)

    report = DecodeReport()
    indices: list[int] = []
    timestamps: list[float] = []
    detections: list[Detections] = []
    start = time.perf_counter()
    frames = prefetch(iter_frames(video, report=report), size=2 * cfg.batch)
    for index, ts, det in detect_frames(frames, runner, cfg.batch, progress):
        indices.append(index)
        timestamps.append(ts)
        detections.append(det)
    elapsed = time.perf_counter() - start

    if not detections:
        raise DancepipeError(f"{video}: no frame could be decoded")
    if report.errors:
        log.warning("%s: %d packet(s) could not be decoded; %d frames were read", video, report.errors, len(indices))
    if not any(len(d) for d in detections):
        raise DancepipeError(f"{video}: no person was detected in any of its {len(detections)} frames")

    df = detection_table(indices, timestamps, detections, cfg.kp_conf)
    metadata = {
        "video": str(video),
        "width": info.width,
        "height": info.height,
        "fps": info.fps,
        "frame_count": len(detections),
        "decode_errors": report.errors,
        "model": cfg.model,
        "model_file": str(weights),
        "model_name": weights.name,
        "model_sha256": model_sha256(weights),
        "precision": runner.precision,
        "params": cfg.model_dump(),
        "versions": library_versions(),
    }
    write_table(df, out, metadata, schema=DETECTION_SCHEMA)
    found = sum(1 for d in detections if len(d))
    summary = {
        "frames": len(detections),
        "frames_with_person": found,
        "most_people": max(len(d) for d in detections),
        "decode_errors": report.errors,
        "seconds": elapsed,
        "fps": len(detections) / elapsed if elapsed > 0 else float("nan"),
        "weights": str(weights),
        "device": device,
        "precision": runner.precision,
    }
    log.info(
        "%s: %d frames, a person found in %d, %.1f frames/s with %s on %s (%s)",
        video, summary["frames"], found, summary["fps"], weights.name, device, runner.precision,
    )
    return summary

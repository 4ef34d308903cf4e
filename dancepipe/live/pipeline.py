"""One camera frame through the pipeline's method, causally: pose, label, generator, face.

The offline pipeline sees a whole video before it draws a label; live, only the frames
filmed so far exist. Each step is therefore either the pipeline's own code run on one
frame, or a causal stand-in for a step that looks ahead:

=================  ========================================================================
pose               the pipeline's pose model and runner (:class:`dancepipe.pose.detect.PoseRunner`),
                   at a small inference size (``--pose-size``)
subject            :class:`dancepipe.live.follow.SubjectFollower` (the subject rule, online)
facing, head,      the transfer chain's own steps (:data:`dancepipe.transfer.chain.STEPS`), which
facing_drawn, legs look at one frame at a time, run on this frame
gaps               :class:`dancepipe.live.filters.GapHold` instead of interpolation
smoothing          :class:`dancepipe.live.filters.OneEuroFilter` instead of a centred window
normalise          the normfit mapping calibrated live (:mod:`dancepipe.live.calibrate`), each frame
                   anchored at its own ankles and hips, or the last ones seen
retarget           the bone ratios of the live calibration (the pipeline's :func:`retarget`)
label              the target's crop transform and the pipeline's stick figure and face box
generator, face    :func:`dancepipe.model.networks.next_frame` on the previous output, then the
                   face GAN on this frame's face box (no batching: that would add latency)
empty label        never drawn by the generator: the last generated frame is held (``render.empty: hold``)
=================  ========================================================================

A step added to the transfer chain that this table does not know stops the live mirror
at start (:func:`check_chain`): it has to be classified as per-frame or given a causal
stand-in, never run silently on a one-frame "video".
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from dancepipe.errors import DancepipeError
from dancepipe.hardware.devices import resolve_device
from dancepipe.hardware.precision import resolve_precision
from dancepipe.live.calibrate import LiveCalibration
from dancepipe.live.config import LiveConfig, MethodParams, TargetFiles
from dancepipe.live.filters import GapHold, OneEuroFilter
from dancepipe.live.follow import SubjectFollower
from dancepipe.model.networks import next_frame, to_model, to_uint8
from dancepipe.pose.detect import PoseRunner, mask_keypoints
from dancepipe.pose.keypoints import read_keypoints
from dancepipe.pose.skeleton import DrawStyle, draw_skeleton, visible_mask
from dancepipe.pose.tracks import Detections
from dancepipe.transfer.chain import STEPS, TargetSpace
from dancepipe.transfer.facebox import compute_face_boxes
from dancepipe.transfer.facing import dominant_facing
from dancepipe.transfer.head import FACE
from dancepipe.transfer.normalize import SubjectStats, ankle_positions, apply_mapping, fit_subject, hip_x
from dancepipe.transfer.profile import read_profile
from dancepipe.transfer.retarget import bone_caps, check_target_bones, retarget
from dancepipe.video.crop import CropTransform, full_frame_transform

# The transfer chain's steps that need no other frame than their own, and those replaced here.
PER_FRAME = ("facing", "head", "facing_drawn", "legs")
CAUSAL = ("gaps", "smoothing", "normalise", "retarget")
Box = tuple[int, int, int]


def check_chain() -> None:
    """Fail when the transfer chain has a step the live mirror has not classified (see the module docstring)."""
    unknown = [s.name for s in STEPS if s.name not in PER_FRAME + CAUSAL]
    if unknown:
        raise DancepipeError(f"the transfer chain step {unknown[0]!r} has no live counterpart; classify it in "
                             "dancepipe.live.pipeline (PER_FRAME or CAUSAL)")


@dataclasses.dataclass
class StepTimes:
    """Milliseconds one frame spent in each step."""

    decode: float = 0.0
    pose: float = 0.0
    label: float = 0.0
    generator: float = 0.0
    face: float = 0.0
    encode: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 2) for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass(frozen=True)
class LabelFrame:
    """One frame's stick figure in the target's label space."""

    label: np.ndarray  # (H, W, 3) uint8; black when no person is drawn
    found: bool  # a person is drawn (enough visible joints, as the labels stage counts them)
    box: Box | None  # the face box for the face GAN (x0, y0, size), None without a face
    keypoints: np.ndarray  # (17, 3) in label pixels, NaN where not drawn


class LiveTarget:
    """A trained target as the live mirror needs it: statistics, profile, crop transform and style."""

    def __init__(self, files: TargetFiles, method: MethodParams) -> None:
        check_chain()
        self.files, self.method = files, method
        self.transform = CropTransform.load(files.transform)
        self.width, self.height = self.transform.width, self.transform.height
        self.stats: SubjectStats = fit_subject(read_keypoints(files.poses), method.normfit, name=str(files.poses))
        cfg = method.labels.transfer
        profile = read_profile(files.profile)
        # what dancepipe.transfer.labels.target_space reads of the profile; the mapping comes live
        self.bones = check_target_bones(profile["bones"], profile["person_frames"], str(files.profile)) \
            if cfg.retarget == "bones" else None
        self.facing = dominant_facing(profile["facing"]) if cfg.facing == "target" else None
        self.head = profile["head"] if cfg.head != "source" else None
        draw = method.labels.draw
        self.style = DrawStyle.for_height(self.height, draw.line_width, draw.joint_radius, draw.min_conf)

    def space(self, mapping: Any) -> TargetSpace:
        return TargetSpace(mapping=mapping, bones=self.bones, facing=self.facing, head=self.head)


class Labeler:
    """Pose detections of one frame → the stick figure in the target's space (per-session state)."""

    def __init__(self, target: LiveTarget, cfg: LiveConfig) -> None:
        self.target, self.cfg = target, cfg
        method = target.method
        self.follower = SubjectFollower(method.tracking.iou, method.tracking.max_gap)
        self.hold = GapHold(method.labels.transfer.gap_max)
        self.smoother = OneEuroFilter(cfg.min_cutoff, cfg.beta, cfg.d_cutoff)
        self.calibration = LiveCalibration(target.stats, method.normfit, bones=target.bones,
                                           keep=cfg.calibration_keep, refit_every=cfg.calibration_refit)
        self.reset()

    def reset(self) -> None:
        """A new person (or the same one, recalibrated): forget every state."""
        self.follower.reset()
        self.hold.reset()
        self.smoother.reset()
        self.calibration.reset()
        self.anchor = np.full(2, np.nan)  # last ankle y and hip x seen (the causal normalise anchor)

    def subject(self, det: Detections) -> np.ndarray:
        """The subject's (17, 3) camera-pixel keypoints, masked by ``poses.kp_conf``; all NaN when not seen."""
        k = self.follower(det)
        if k < 0:
            return np.full((17, 3), np.nan)
        return mask_keypoints(det.keypoints[k], self.target.method.poses.kp_conf).astype(np.float64)

    def __call__(self, det: Detections, t: float, frame_height: int) -> LabelFrame:
        """The label of one frame whose detections are ``det``, filmed at ``t`` seconds."""
        raw = self.subject(det)
        self.calibration.add(raw)
        mapping = self.calibration.mapping
        target = self.target
        blank = np.zeros((target.height, target.width, 3), np.uint8)
        if mapping is None:
            return LabelFrame(blank, False, None, np.full((17, 3), np.nan))
        space, cfg = target.space(mapping), target.method.labels.transfer
        kps = raw[None]
        headed = np.zeros(1, dtype=bool)
        for step in STEPS:
            if not step.runs(cfg, space):
                continue
            if step.name == "gaps":
                kps = self.hold(kps[0])[None]
            elif step.name == "smoothing":
                self.smoother.scale = float(frame_height)
                kps = kps.copy()
                kps[0, :, :2] = self.smoother(kps[0, :, :2], t)
            elif step.name == "normalise":
                kps = self._normalise(kps, mapping)
            elif step.name == "retarget":
                ratios = self.calibration.ratios
                if ratios is not None and target.bones is not None:
                    kps = retarget(kps, ratios, bone_caps(target.bones))
            else:
                change = step.apply(kps, cfg, space)
                kps = change.kps
                if step.name == "head" and change.frames is not None:
                    headed = change.frames
        return self._draw(kps[0], raw, bool(headed[0]))

    def _normalise(self, kps: np.ndarray, mapping: Any) -> np.ndarray:
        here = np.array([ankle_positions(kps)[1][0], hip_x(kps)[0]])
        self.anchor = np.where(np.isfinite(here), here, self.anchor)
        return apply_mapping(kps, mapping, ankle_y=self.anchor[:1], body_x=self.anchor[1:])

    def _draw(self, target_px: np.ndarray, raw: np.ndarray, headed: bool) -> LabelFrame:
        """Label pixels, the labels stage's person rule, the stick figure and the face box."""
        target, draw = self.target, self.target.method.labels.draw
        w, h, style = target.width, target.height, target.style
        kps = target_px.copy()
        kps[:, :2] = target.transform.apply_points(target_px[:, :2])
        visible = visible_mask(kps, style.min_conf)
        if headed:  # the target's head never makes a person: count the face points the camera saw
            visible[list(FACE)] = visible_mask(raw[list(FACE)], style.min_conf)
        if visible.sum() < draw.min_joints:
            return LabelFrame(np.zeros((h, w, 3), np.uint8), False, None, np.full((17, 3), np.nan))
        faces = compute_face_boxes(kps[None], w, h, fraction=draw.face_box_fraction, min_conf=style.min_conf)
        row = faces.iloc[0]
        box = (int(row["face_x0"]), int(row["face_y0"]), int(row["face_size"])) if bool(row["face_ok"]) else None
        return LabelFrame(draw_skeleton(kps, w, h, style), True, box, kps)


class LiveGenerator:
    """The generator conditioned on its own previous output, then the face GAN (per-session state)."""

    def __init__(self, generator: torch.nn.Module, face: Any | None, device: torch.device, precision: str) -> None:
        self.generator, self.face, self.device, self.precision = generator, face, device, precision
        self.reset()

    def reset(self) -> None:
        self.prev: torch.Tensor | None = None
        self.last: np.ndarray | None = None  # the last frame shown, held over frames without a person

    def __call__(self, frame: LabelFrame, times: StepTimes) -> np.ndarray:
        """The generated (H, W, 3) uint8 frame for ``frame``; the held one (or black) when it shows nobody."""
        if not frame.found:
            return self.last if self.last is not None else np.zeros_like(frame.label)
        with torch.inference_mode():
            t0 = time.perf_counter()
            x = to_model(frame.label, self.device)
            out = next_frame(self.generator, x, self.prev, self.precision)
            self.prev = out
            if self.face is not None and frame.box is not None:
                image = to_uint8(out)[0]  # syncs the device, so the face time below is the face's own
                t1 = time.perf_counter()
                image = to_uint8(self.face.refine(x, out, [frame.box]))[0]
                times.face += (time.perf_counter() - t1) * 1e3
                times.generator += (t1 - t0) * 1e3
            else:
                image = to_uint8(out)[0]
                times.generator += (time.perf_counter() - t0) * 1e3
        self.last = image
        return image


class Models:
    """What a live server loads once: the pose runner, the generator, the face GAN and the target."""

    def __init__(self, files: TargetFiles, method: MethodParams, cfg: LiveConfig) -> None:
        from dancepipe.model.checkpoint import load_generator
        from dancepipe.output.render import load_face
        from dancepipe.pose.estimator import load_pose_model

        self.cfg, self.files = cfg, files
        self.device = resolve_device(cfg.device, "--device")
        self.precision = resolve_precision(cfg.precision, self.device, "--precision")
        self.target = LiveTarget(files, method)
        poses = method.poses.model_copy(update={"imgsz": cfg.pose_size, "device": str(self.device),
                                                "precision": self.precision})
        self.pose = PoseRunner(load_pose_model(poses.model, str(self.device), "--device"), poses, str(self.device))
        self.generator, self.generator_meta = load_generator(files.generator, self.device)
        self.generator.eval().requires_grad_(False)
        if cfg.compile:
            # compiled on the first frame (_check_size below, so before the page connects)
            self.generator = torch.compile(self.generator)
        self.face, self.face_note = load_face(files.face, files.face is not None, self.device) \
            if files.face is not None else (None, "face refinement off: --no-face")
        self._check_size()

    def _check_size(self) -> None:
        """The generator must produce the label size of the target's crop transform."""
        t = self.target
        with torch.inference_mode():
            x = torch.zeros(1, 3, t.height, t.width, device=self.device)
            out = next_frame(self.generator, x, None, self.precision)
        if tuple(out.shape) != tuple(x.shape):
            raise DancepipeError(f"{self.files.generator}: generates {tuple(out.shape[2:])} frames but the target's "
                                 f"labels are {(t.height, t.width)} ({self.files.transform}); rerun the train stage")


class Compositor:
    """camera | stick figure | generated, side by side, at the label height."""

    def __init__(self, width: int, height: int, aspect: float) -> None:
        self.width, self.height = width, height
        self.camera_width = max(2, int(round(height * aspect / 2)) * 2)
        self._transforms: dict[tuple[int, int], CropTransform] = {}

    @property
    def size(self) -> tuple[int, int]:
        return self.camera_width + 2 * self.width, self.height

    def __call__(self, camera: np.ndarray, label: np.ndarray, generated: np.ndarray) -> np.ndarray:
        h, w = camera.shape[:2]
        tr = self._transforms.get((w, h))
        if tr is None:  # the whole camera frame, letterboxed (a camera keeps its size; one entry in practice)
            tr = self._transforms[(w, h)] = full_frame_transform(w, h, self.camera_width, self.height)
        return np.concatenate([tr.apply_image(camera), label, generated], axis=1)


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """(H, W, 3) RGB uint8 → JPEG bytes."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise DancepipeError("could not encode a frame as JPEG")
    return buf.tobytes()


def describe(models: Models) -> dict[str, Any]:
    """The facts the page and the logs show about a loaded target."""
    return {"target": models.files.name, "device": str(models.device), "precision": models.precision,
            "width": models.target.width, "height": models.target.height, "pose_size": models.cfg.pose_size,
            "face": models.face is not None, "generator": str(Path(models.files.generator))}

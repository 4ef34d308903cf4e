"""The source-to-label transform: one ordered chain of named steps.

A transfer label is the source's keypoints carried into the target's space and then
corrected where the generator would otherwise be asked for a view of the target it
never saw. Every step takes the keypoints (N, 17, 3) and returns them with the frames
it changed and anything worth recording; :data:`STEPS` is the one order they run in
(why each step is where it is: docs/labels.md, "The transfer chain"), and
:class:`ChainRecord` is the one account of what they did, which the labels stage logs
and writes into the label index (where the metrics read it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from dancepipe.config import StageConfig
from dancepipe.errors import DancepipeError
from dancepipe.pose.smoothing import SMOOTHERS, interpolate_gaps, smooth
from dancepipe.transfer.facing import Facing, match_facing
from dancepipe.transfer.head import complete_heads
from dancepipe.transfer.legs import uncross_legs
from dancepipe.transfer.normalize import NormMapping, ankle_positions, apply_mapping, hip_x
from dancepipe.transfer.retarget import bone_caps, bone_ratios, retarget


class TransferLabelsConfig(StageConfig):
    """``labels.transfer``: the settings of the transfer chain (:data:`STEPS`)."""

    contact_sheet_frames: int = Field(4, ge=0, le=32)
    gap_max: int = Field(5, ge=0, le=1000)
    smoothing: Literal["savgol", "median", "none"] = "savgol"
    window: int = Field(5, ge=1, le=301)
    polyorder: int = Field(2, ge=0, le=10)
    # The corrections of the chain (:data:`STEPS`); what each does and why: docs/labels.md.
    retarget: Literal["none", "bones"] = Field("bones", description="bones: the target's bone lengths; none: skip")
    head: Literal["target", "lost", "source"] = Field(
        "target", description="target: the target's head where the source's is lost or turned; lost: only lost "
                              "heads; source: skip")
    facing: Literal["target", "source"] = Field(
        "target", description="target: mirror frames facing the other way from the target; source: skip")
    legs: Literal["uncross", "source"] = Field(
        "uncross", description="uncross: name crossed legs by their side of the hips; source: skip")

    @model_validator(mode="after")
    def _check(self) -> TransferLabelsConfig:
        if self.smoothing not in SMOOTHERS:
            raise ValueError(f"unknown smoothing '{self.smoothing}'")
        if self.smoothing != "none" and self.window % 2 == 0:
            raise ValueError("window must be odd")
        if self.smoothing == "savgol" and self.polyorder >= self.window:
            raise ValueError("polyorder must be smaller than window")
        return self


@dataclasses.dataclass(frozen=True)
class TargetSpace:
    """What the chain needs to know of the target: the normfit mapping and its profile."""

    mapping: NormMapping
    bones: dict[str, dict[str, Any]] | None = None  # :func:`dancepipe.transfer.retarget.bone_stats`
    facing: Facing | None = None  # the one way the target faced the camera, if it did
    head: dict[str, Any] | None = None  # :func:`dancepipe.transfer.head.head_shape`


@dataclasses.dataclass(frozen=True)
class Change:
    """One step's output: the keypoints, the (N,) frames it changed (None: every frame) and its notes."""

    kps: np.ndarray
    frames: np.ndarray | None = None
    info: dict[str, Any] = dataclasses.field(default_factory=dict)


StepFn = Callable[[np.ndarray, "TransferLabelsConfig", TargetSpace], Change]


@dataclasses.dataclass(frozen=True)
class Step:
    """A named step, the condition under which it runs, and what it does."""

    name: str
    runs: Callable[[TransferLabelsConfig, TargetSpace], bool]
    apply: StepFn


def _fill_in_time(values: np.ndarray) -> np.ndarray | None:
    """Linear interpolation over NaN, nearest value held at the ends; None if all NaN."""
    ok = np.isfinite(values)
    if not ok.any():
        return None
    idx = np.arange(len(values))
    return np.interp(idx, idx[ok], values[ok])


def _facing(kps: np.ndarray, cfg: TransferLabelsConfig, target: TargetSpace) -> Change:
    out, mirrored = match_facing(kps, target.facing)
    return Change(out, mirrored)


def _gaps(kps: np.ndarray, cfg: TransferLabelsConfig, target: TargetSpace) -> Change:
    return Change(interpolate_gaps(kps, cfg.gap_max))


def _head(kps: np.ndarray, cfg: TransferLabelsConfig, target: TargetSpace) -> Change:
    assert target.head is not None
    out, headed = complete_heads(kps, target.head, turned=cfg.head == "target")
    return Change(out, headed)


def _smooth(kps: np.ndarray, cfg: TransferLabelsConfig, target: TargetSpace) -> Change:
    return Change(smooth(kps, cfg.smoothing, cfg.window, cfg.polyorder))


def _normalise(kps: np.ndarray, cfg: TransferLabelsConfig, target: TargetSpace) -> Change:
    # a frame without ankles takes the ankle height interpolated from its neighbours in
    # time, so its scale and place follow the dance instead of jumping to the medians
    return Change(apply_mapping(kps, target.mapping, ankle_y=_fill_in_time(ankle_positions(kps)[1]),
                                body_x=_fill_in_time(hip_x(kps))))


def _retarget(kps: np.ndarray, cfg: TransferLabelsConfig, target: TargetSpace) -> Change:
    if target.bones is None:
        raise DancepipeError("labels.transfer.retarget = bones needs the target's bone lengths (its profile)")
    ratios = bone_ratios(target.bones, kps)
    return Change(retarget(kps, ratios, bone_caps(target.bones)), info={"bone_ratios": ratios})


def _facing_drawn(kps: np.ndarray, cfg: TransferLabelsConfig, target: TargetSpace) -> Change:
    out, mirrored = match_facing(kps, target.facing, body_only=True)
    return Change(out, mirrored)


def _legs(kps: np.ndarray, cfg: TransferLabelsConfig, target: TargetSpace) -> Change:
    out, crossed = uncross_legs(kps)
    return Change(out, crossed)


def _always(cfg: TransferLabelsConfig, target: TargetSpace) -> bool:
    return True


STEPS: tuple[Step, ...] = (
    Step("facing", lambda cfg, t: cfg.facing == "target", _facing),
    Step("gaps", _always, _gaps),
    Step("head", lambda cfg, t: cfg.head != "source" and t.head is not None, _head),
    Step("smoothing", _always, _smooth),
    Step("normalise", _always, _normalise),
    Step("retarget", lambda cfg, t: cfg.retarget == "bones", _retarget),
    Step("facing_drawn", lambda cfg, t: cfg.facing == "target", _facing_drawn),
    Step("legs", lambda cfg, t: cfg.legs == "uncross", _legs),
)


@dataclasses.dataclass(frozen=True)
class ChainRecord:
    """What each step that ran did, in the order it ran: name → :class:`Change` (without the keypoints)."""

    frames: int
    changes: dict[str, Change]

    def ran(self, name: str) -> bool:
        return name in self.changes

    def changed(self, name: str) -> np.ndarray:
        """The (N,) frames a step changed; none where it did not run."""
        c = self.changes.get(name)
        if c is None:
            return np.zeros(self.frames, dtype=bool)
        return np.ones(self.frames, dtype=bool) if c.frames is None else c.frames

    @property
    def mirrored(self) -> np.ndarray:
        """Frames whose sides were exchanged, before smoothing or on the figure as drawn."""
        return self.changed("facing") | self.changed("facing_drawn")

    @property
    def bone_ratios(self) -> dict[str, float] | None:
        c = self.changes.get("retarget")
        return None if c is None else c.info["bone_ratios"]


def transfer_keypoints(
    kps: np.ndarray, cfg: TransferLabelsConfig, target: TargetSpace,
) -> tuple[np.ndarray, ChainRecord]:
    """Source keypoints (N, 17, 3, source pixels) → target pixels, through every step of :data:`STEPS` that runs."""
    changes: dict[str, Change] = {}
    for step in STEPS:
        if step.runs(cfg, target):
            change = step.apply(kps, cfg, target)
            kps = change.kps
            changes[step.name] = dataclasses.replace(change, kps=np.empty(0))
    return kps, ChainRecord(len(kps), changes)

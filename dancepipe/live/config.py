"""The live mirror's settings and the trained target's files.

Two kinds of settings drive a live session. The *method* is the pipeline's: the pose
model, the subject rule, normfit's percentiles and the label chain are read from the
params file the target was built with (:class:`MethodParams`), so the live figure is drawn
the way the target's training labels were. What only a live run has (pose inference
size, smoothing, threads, the wire limits) is :class:`LiveConfig`, set by the command's
options.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dancepipe.catalog import TrackingConfig
from dancepipe.errors import DancepipeError
from dancepipe.hardware.devices import DEVICE_HELP, check_device
from dancepipe.hardware.precision import PRECISION_HELP, Precision
from dancepipe.pose.detect import PosesConfig
from dancepipe.transfer.labels import LabelsConfig
from dancepipe.transfer.normalize import NormfitConfig

NAME = re.compile(r"^[A-Za-z0-9_]+$")


class LiveConfig(BaseModel):
    """What only a live run sets (the ``dancepipe live`` options)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pose_size: int = Field(256, ge=64, le=1280, description="pose model inference size (long side, multiple of 32)")
    device: str = Field("auto", description=f"where the networks run: {DEVICE_HELP}")
    precision: Precision = Field("auto", description=f"the networks' precision: {PRECISION_HELP}")
    pipelined: bool = Field(True, description="pose and generator on two threads, so consecutive frames overlap")
    threads: int = Field(1, ge=1, le=256, description="torch threads per worker thread (CPU)")
    face: bool = Field(True, description="apply the face GAN")
    compile: bool = Field(False, description="torch.compile the generator (a minute or more at start)")
    min_cutoff: float = Field(1.0, gt=0, description="One Euro filter: cut-off of a still joint (Hz)")
    beta: float = Field(20.0, ge=0, description="One Euro filter: cut-off increase per frame height per second")
    d_cutoff: float = Field(1.0, gt=0, description="One Euro filter: cut-off of the speed estimate (Hz)")
    calibration_keep: int = Field(600, ge=10, le=100000, description="usable frames the live calibration keeps")
    calibration_refit: int = Field(10, ge=1, le=10000, description="refit the calibration every this many usable frames")
    jpeg_quality: int = Field(85, ge=30, le=100, description="quality of the frames sent to the page")
    max_message_bytes: int = Field(2_000_000, ge=10_000, le=64_000_000, description="largest message the page may send")
    max_image_side: int = Field(2048, ge=64, le=8192, description="largest camera frame side accepted (pixels)")
    camera_panel_aspect: float = Field(4 / 3, gt=0.2, le=5, description="width / height of the camera panel")
    record_fps: float = Field(15.0, gt=0, le=120, description="frame rate of the --record video")

    @field_validator("pose_size")
    @classmethod
    def _multiple_of_32(cls, v: int) -> int:
        if v % 32:
            raise ValueError("must be a multiple of 32")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        return check_device(v)


@dataclasses.dataclass(frozen=True)
class MethodParams:
    """The pipeline's settings the live method reuses, from the target's params file."""

    poses: PosesConfig
    tracking: TrackingConfig
    normfit: NormfitConfig
    labels: LabelsConfig

    @classmethod
    def load(cls, params_path: str | Path | None) -> MethodParams:
        """The ``poses``, ``tracking``, ``normfit`` and ``labels`` sections; the defaults without a file."""
        if params_path is None or not Path(params_path).is_file():
            return cls(PosesConfig(), TrackingConfig(), NormfitConfig(), LabelsConfig())
        from dancepipe.catalog import load_tracking
        from dancepipe.config import load_config
        from dancepipe.transfer.labels import load_labels_config

        poses = load_config("poses", params_path)
        normfit = load_config("normfit", params_path)
        assert isinstance(poses, PosesConfig) and isinstance(normfit, NormfitConfig)
        return cls(poses, load_tracking(params_path), normfit, load_labels_config("transfer", params_path))


@dataclasses.dataclass(frozen=True)
class TargetFiles:
    """Where the pipeline wrote what the live mirror reads of one target."""

    name: str
    generator: Path  # models/<t>/generator.pt (train)
    face: Path | None  # models/<t>/face.pt (train_face); None with the face GAN off
    poses: Path  # data/subjects/<t>/poses.parquet (subject): normfit's statistics of the target
    profile: Path  # data/profiles/<t>.json (profile): bones, facing, head
    transform: Path  # data/frames/<t>/transform.json (frames): target pixels -> label pixels

    @classmethod
    def locate(cls, name: str, models_dir: str | Path = "models", data_dir: str | Path = "data",
               face: bool = True) -> TargetFiles:
        """The files of target ``name`` in the pipeline's layout, each checked; a missing one names its stage."""
        if not NAME.match(name):
            raise DancepipeError(f"target name {name!r} must be letters, digits and underscores, as in params.yaml")
        models, data = Path(models_dir) / name, Path(data_dir)
        files = cls(
            name=name, generator=models / "generator.pt", face=models / "face.pt" if face else None,
            poses=data / "subjects" / name / "poses.parquet", profile=data / "profiles" / f"{name}.json",
            transform=data / "frames" / name / "transform.json",
        )
        if not files.generator.is_file():
            raise DancepipeError(f"{files.generator} does not exist: the target '{name}' has no trained model, "
                                 f"so run `dvc repro train@{name}` first")
        needs = [(files.face, f"train_face@{name}", "face model"), (files.poses, f"subject@{name}", "keypoint table"),
                 (files.profile, f"profile@{name}", "profile"), (files.transform, f"frames@{name}", "crop transform")]
        for path, stage, what in needs:
            if path is not None and not path.is_file():
                raise DancepipeError(f"{path} does not exist: the target '{name}' has no {what}, so run "
                                     f"`dvc repro {stage}` first")
        return files

"""The per-subject crop/resize transform shared by frames and labels.

A subject's video is cropped to one fixed box (``x0, y0, crop_w, crop_h`` in original
upright pixels; it may extend past the frame, the outside is black) and scaled by
``scale`` to ``width x height``. Keypoints stay in original pixels in the pose table;
this transform maps them into frame/label pixels, so frames and labels always agree.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dancepipe.errors import DancepipeError
from dancepipe.pose.keypoints import read_index


@dataclasses.dataclass(frozen=True)
class CropTransform:
    """original pixel (x, y) → output pixel ((x - x0) * scale, (y - y0) * scale)."""

    x0: float
    y0: float
    crop_w: float
    crop_h: float
    width: int
    height: int
    src_width: int
    src_height: int

    @property
    def scale(self) -> float:
        return self.width / self.crop_w

    def apply_points(self, xy: np.ndarray) -> np.ndarray:
        """Map (..., 2) original-pixel coordinates to output pixels; NaN stays NaN."""
        xy = np.asarray(xy, dtype=np.float64)
        out = np.empty_like(xy)
        out[..., 0] = (xy[..., 0] - self.x0) * (self.width / self.crop_w)
        out[..., 1] = (xy[..., 1] - self.y0) * (self.height / self.crop_h)
        return out

    def invert_points(self, uv: np.ndarray) -> np.ndarray:
        """Map output pixels back to original-pixel coordinates."""
        uv = np.asarray(uv, dtype=np.float64)
        out = np.empty_like(uv)
        out[..., 0] = uv[..., 0] * (self.crop_w / self.width) + self.x0
        out[..., 1] = uv[..., 1] * (self.crop_h / self.height) + self.y0
        return out

    def matrix(self) -> np.ndarray:
        """2x3 affine matrix for ``cv2.warpAffine`` (original → output)."""
        sx, sy = self.width / self.crop_w, self.height / self.crop_h
        return np.array([[sx, 0.0, -self.x0 * sx], [0.0, sy, -self.y0 * sy]], dtype=np.float64)

    def apply_image(self, image: np.ndarray, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
        """Crop and resize one (H, W, C) image; area outside the source is black.

        Crops inside the frame use a slice + ``cv2.resize`` (INTER_AREA antialiases
        when shrinking); crops past the border are padded first.
        """
        h, w = image.shape[:2]
        if (w, h) != (self.src_width, self.src_height):
            raise DancepipeError(
                f"frame is {w}x{h} but the transform was fitted for {self.src_width}x{self.src_height}"
            )
        x0, y0 = int(round(self.x0)), int(round(self.y0))
        x1, y1 = int(round(self.x0 + self.crop_w)), int(round(self.y0 + self.crop_h))
        px0, py0, px1, py1 = max(0, -x0), max(0, -y0), max(0, x1 - w), max(0, y1 - h)
        crop = image[max(0, y0):min(h, y1), max(0, x0):min(w, x1)]
        if px0 or py0 or px1 or py1:
            crop = cv2.copyMakeBorder(crop, py0, py1, px0, px1, cv2.BORDER_CONSTANT, value=0)
        return cv2.resize(crop, (self.width, self.height), interpolation=interpolation)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CropTransform:
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> CropTransform:
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except FileNotFoundError as e:
            raise DancepipeError(f"{path}: crop transform does not exist (run the frames stage first)") from e


def full_frame_transform(src_width: int, src_height: int, width: int, height: int) -> CropTransform:
    """Letterbox the whole frame into ``width x height`` (centred, aspect kept)."""
    aspect = width / height
    if src_width / src_height > aspect:
        crop_w, crop_h = float(src_width), src_width / aspect
    else:
        crop_w, crop_h = src_height * aspect, float(src_height)
    return CropTransform(
        x0=(src_width - crop_w) / 2, y0=(src_height - crop_h) / 2, crop_w=crop_w, crop_h=crop_h,
        width=width, height=height, src_width=src_width, src_height=src_height,
    )


def fit_crop(
    boxes: np.ndarray, src_width: int, src_height: int, width: int, height: int,
    padding: float = 0.1, percentile: float = 2.0,
) -> CropTransform:
    """Fit one subject-centred crop for a whole video from the subject's boxes.

    ``boxes`` is (N, 4) x0, y0, x1, y1 with NaN rows for frames without the subject.
    The union is taken robustly (``percentile`` / ``100 - percentile`` of the edges, so a
    single bad detection does not blow up the box), padded by ``padding`` of its size,
    grown to the output aspect ratio, and shifted to stay inside the frame where the
    frame is large enough.
    """
    b = np.asarray(boxes, dtype=np.float64)
    b = b[np.all(np.isfinite(b), axis=1)]
    if len(b) == 0:
        raise DancepipeError("cannot fit a crop: the subject was not found in any frame")
    x0 = np.percentile(b[:, 0], percentile)
    y0 = np.percentile(b[:, 1], percentile)
    x1 = np.percentile(b[:, 2], 100 - percentile)
    y1 = np.percentile(b[:, 3], 100 - percentile)
    bw, bh = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    bw, bh = bw * (1 + 2 * padding), bh * (1 + 2 * padding)
    aspect = width / height
    if bw / bh > aspect:
        bh = bw / aspect
    else:
        bw = bh * aspect
    nx0, ny0 = cx - bw / 2, cy - bh / 2

    def _shift(start: float, size: float, limit: int) -> float:
        if size >= limit:
            return (limit - size) / 2  # larger than the frame: centre it
        return float(min(max(start, 0.0), limit - size))

    nx0 = _shift(nx0, bw, src_width)
    ny0 = _shift(ny0, bh, src_height)
    return CropTransform(
        x0=float(nx0), y0=float(ny0), crop_w=float(bw), crop_h=float(bh),
        width=int(width), height=int(height), src_width=int(src_width), src_height=int(src_height),
    )


TRANSFORM_NAME = "transform.json"


def load_frames_dir(frames_dir: str | Path, what: str = "frames", check_files: bool = True) -> tuple[Any, CropTransform]:
    """A frames directory's index (sorted by frame, see :func:`dancepipe.pose.keypoints.read_index`) and crop transform."""
    d = Path(frames_dir)
    index = read_index(d, what, check_files=check_files)
    return index, CropTransform.load(d / TRANSFORM_NAME)

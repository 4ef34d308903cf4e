"""Reading the pipeline's image files (frames, labels, faces) as RGB arrays: one reader, one error."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from dancepipe.errors import DancepipeError


def read_rgb(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The image at ``path`` as (H, W, 3) uint8 RGB.

    OpenCV reads BGR and answers a missing or corrupt file with None rather than an
    exception; both become one :class:`DancepipeError` sentence naming the file. With
    ``shape`` (height, width), an image of any other size is refused too.
    """
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DancepipeError(f"{path}: not a readable image (missing, empty or corrupt)")
    if shape is not None and img.shape[:2] != tuple(shape):
        raise DancepipeError(f"{path}: image is {img.shape[1]}x{img.shape[0]}, expected {shape[1]}x{shape[0]}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

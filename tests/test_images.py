"""The one image reader: RGB order, a one-sentence error for a bad file, the size check."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dancepipe.errors import DancepipeError
from dancepipe.video.images import read_rgb


def test_reads_rgb_not_opencvs_bgr(tmp_path):
    rgb = np.zeros((6, 4, 3), np.uint8)
    rgb[..., 0] = 200  # red
    rgb[2:4, 1:3, 2] = 90  # some blue
    cv2.imwrite(str(tmp_path / "a.png"), rgb[..., ::-1])  # OpenCV writes BGR
    np.testing.assert_array_equal(read_rgb(tmp_path / "a.png"), rgb)
    np.testing.assert_array_equal(read_rgb(tmp_path / "a.png", shape=(6, 4)), rgb)


@pytest.mark.parametrize("content", [None, b"", b"\x89PNG\r\n\x1a\n" + bytes(100)])
def test_a_missing_empty_or_corrupt_file_is_one_sentence(tmp_path, content):
    path = tmp_path / "x.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DancepipeError, match=r"x\.png: not a readable image \(missing, empty or corrupt\)$"):
        read_rgb(path)


def test_another_size_is_refused_when_a_shape_is_asked_for(tmp_path):
    cv2.imwrite(str(tmp_path / "b.jpg"), np.zeros((8, 5, 3), np.uint8))
    with pytest.raises(DancepipeError, match=r"b\.jpg: image is 5x8, expected 4x6"):
        read_rgb(tmp_path / "b.jpg", shape=(6, 4))

"""``--record``: what the page showed, written to an H.264 MP4 as it happens.

Frames come out of a live session at whatever rate the machine manages, with gaps where
frames were dropped. The video has a fixed frame rate, so each shown frame is written
until the next one is shown: video frame k holds the picture that was on screen at its
time k / fps (a picture replaced within one frame period is never written), so the file
plays back in real time, as it was seen. Encoding runs on the pipeline's
background writer thread (:class:`dancepipe.video.encode.BackgroundWriter`) and the file
is written under a temporary name and renamed into place when the server stops
(:func:`dancepipe.video.encode.mp4_writer`); a session that showed nothing leaves no file.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from pathlib import Path

import numpy as np

from dancepipe.errors import DancepipeError
from dancepipe.video.encode import BackgroundWriter, mp4_writer

log = logging.getLogger(__name__)


class Recorder:
    """Writes shown frames to ``path`` at ``fps``, in real time (see the module docstring)."""

    def __init__(self, path: str | Path, fps: float = 15.0, crf: int = 20, preset: str = "veryfast") -> None:
        self.path, self.fps, self.crf, self.preset = Path(path), float(fps), crf, preset
        self._stack = contextlib.ExitStack()
        self._background: BackgroundWriter | None = None
        self._size: tuple[int, int] | None = None
        self._start: float | None = None
        self._last: np.ndarray | None = None  # the picture on screen, written once the next one comes
        self._lock = threading.Lock()
        self.written = 0  # video frames written (repeats included)
        self.shown = 0  # distinct frames offered

    def show(self, image: np.ndarray, now: float | None = None) -> None:
        """Record ``image`` (H, W, 3 uint8) as shown from ``now`` (``time.monotonic()`` seconds) on."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._background is None:
                h, w = image.shape[:2]
                writer = self._stack.enter_context(mp4_writer(self.path, width=w, height=h, fps=self.fps,
                                                              crf=self.crf, preset=self.preset))
                self._background = BackgroundWriter([writer], maxsize=32)
                self._size, self._start = (w, h), now
            if image.shape[:2] != (self._size[1], self._size[0]):  # type: ignore[index]
                raise DancepipeError(f"{self.path}: a {image.shape[1]}x{image.shape[0]} frame in a "
                                     f"{self._size[0]}x{self._size[1]} recording")  # type: ignore[index]
            # video frame k is the picture on screen at start + k / fps: every frame before ``now``
            # shows the previous picture, and this one is on screen from ``now`` until the next
            due = math.ceil((now - self._start) * self.fps - 1e-9)  # type: ignore[operator]
            if self._last is not None:
                for _ in range(due - self.written):
                    self._background.put((self._last,))
                self.written = max(self.written, due)
            self._last = image
            self.shown += 1

    def close(self) -> Path | None:
        """Finish the file and rename it into place; None (and no file) when nothing was shown."""
        with self._lock:
            if self._background is None:
                log.info("--record: nothing was shown, so %s was not written", self.path)
                self._stack.close()
                return None
            background, self._background = self._background, None
            background.put((self._last,))  # the last picture shown, once
            self.written += 1
            try:
                background.close()
            except BaseException as e:
                # the writer's context sees the failure, so the partial file is removed, not renamed
                self._stack.__exit__(type(e), e, e.__traceback__)
                raise
            self._stack.close()
            log.info("--record: wrote %s (%d frames shown, %d video frames at %g fps)", self.path, self.shown,
                     self.written, self.fps)
            return self.path

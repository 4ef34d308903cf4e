"""The subject rule, online: follow one person from frame to frame as the camera films.

Offline, :func:`dancepipe.pose.tracks.select_subject` links every detection of a video
into tracks and picks the track that dominates it (the largest sum of box area × score).
Live there is no whole video to weigh, so the same two ideas are applied causally:

* **continuity**: while the subject is seen, the detection that overlaps its last box
  best (box IoU at least ``tracking.iou``, the pipeline's threshold) is the subject in
  this frame; anyone else, however large, is a bystander;
* **dominance**: only when the subject has been missing for more than ``tracking.max_gap``
  frames (or before anyone was seen) does a new subject get picked, and it is the
  detection with the largest box area × score, the single-frame share of the offline weight.

So a bystander walking in front never takes over a subject that stays in view, and
someone stepping out and back in (a miss longer than the gap) is picked up again.
"""

from __future__ import annotations

import numpy as np

from dancepipe.pose.tracks import Detections, box_iou


class SubjectFollower:
    """Which detection of each frame is the subject (-1: not seen); see the module docstring."""

    def __init__(self, iou_threshold: float = 0.2, max_gap: int = 15) -> None:
        self.iou_threshold = float(iou_threshold)
        self.max_gap = int(max_gap)
        self.reset()

    def reset(self) -> None:
        self.box: np.ndarray | None = None  # the subject's last box (xyxy)
        self.missed = 0  # frames since the subject was last seen
        self.switches = 0  # times a new subject was picked after the first

    def __call__(self, det: Detections) -> int:
        """The index of the subject's detection in ``det``, -1 where the subject is not in it."""
        if self.box is not None and self.missed <= self.max_gap and len(det):
            iou = box_iou(self.box[None], det.boxes)[0]
            best = int(np.argmax(iou))
            if iou[best] >= self.iou_threshold and iou[best] > 0:
                return self._seen(det, best)
        if self.box is None or self.missed > self.max_gap:
            if len(det):
                boxes = np.asarray(det.boxes, dtype=np.float64)
                area = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
                if self.box is not None:
                    self.switches += 1
                return self._seen(det, int(np.argmax(area * np.asarray(det.scores, dtype=np.float64))))
        self.missed += 1
        return -1

    def _seen(self, det: Detections, k: int) -> int:
        self.box = np.asarray(det.boxes[k], dtype=np.float64)
        self.missed = 0
        return k

"""Main-person selection: follow one subject through a video.

Per-frame detections (boxes, scores, keypoints: a few hundred bytes each) are linked
into tracks by box overlap between consecutive sightings, with an optimal one-to-one
assignment per frame so two people crossing keep their identities. A track may skip
up to ``max_gap`` frames where its person was not detected.

By default (``auto``) the subject is the track that dominates the video: the largest
sum over its frames of box area × detection score. A bystander in the background (small
box) or someone walking through briefly (few frames) cannot outweigh the person the
video is about. When that is the wrong person, the subject can be chosen as the largest
or the longest-seen track, or as the person standing at a point of the first frames.
Tracks broken by a long miss are stitched back onto the subject when they do not
overlap it in time and their boxes continue its last (or next) box.

Frames where the subject is not detected get index -1: the caller records them as
"no person", never borrows another person's detection for them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment


@dataclasses.dataclass(frozen=True)
class Detections:
    """All people detected in one frame.

    boxes: (N, 4) float xyxy pixels; scores: (N,); keypoints: (N, 17, 3) x, y, conf.
    """

    boxes: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.boxes)
        if self.boxes.shape != (n, 4) or self.scores.shape != (n,) or len(self.keypoints) != n:
            raise ValueError(
                f"inconsistent detections: boxes {self.boxes.shape}, scores {self.scores.shape}, "
                f"keypoints {self.keypoints.shape}"
            )

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls, num_keypoints: int = 17) -> Detections:
        return cls(
            np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, num_keypoints, 3), np.float32)
        )


@dataclasses.dataclass
class Track:
    """One person's sightings: parallel lists of frame positions and detection indices."""

    frames: list[int]
    dets: list[int]
    boxes: list[np.ndarray]
    weight: float = 0.0

    @property
    def first(self) -> int:
        return self.frames[0]

    @property
    def last(self) -> int:
        return self.frames[-1]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between (N, 4) and (M, 4) xyxy boxes → (N, M)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou


def _area(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0))


def link_tracks(frames: Sequence[Detections], iou_threshold: float, max_gap: int) -> list[Track]:
    """Link detections into tracks by box IoU with each track's most recent box.

    A detection joins a track when their IoU is at least ``iou_threshold`` and the track
    was last seen at most ``max_gap`` + 1 frames earlier; assignment per frame is the
    one-to-one matching that maximises total IoU. Unmatched detections start tracks.
    """
    tracks: list[Track] = []
    active: list[int] = []  # indices into tracks that may still be extended
    for t, det in enumerate(frames):
        active = [k for k in active if t - tracks[k].last <= max_gap + 1]
        matched_dets: set[int] = set()
        if active and len(det):
            last_boxes = np.stack([tracks[k].boxes[-1] for k in active])
            iou = box_iou(last_boxes, det.boxes)
            rows, cols = linear_sum_assignment(-iou)
            for r, c in zip(rows, cols, strict=True):
                if iou[r, c] >= iou_threshold and iou[r, c] > 0:
                    tr = tracks[active[r]]
                    tr.frames.append(t)
                    tr.dets.append(int(c))
                    tr.boxes.append(np.asarray(det.boxes[c], dtype=np.float64))
                    tr.weight += _area(det.boxes[c]) * float(det.scores[c])
                    matched_dets.add(int(c))
        for c in range(len(det)):
            if c not in matched_dets:
                box = np.asarray(det.boxes[c], dtype=np.float64)
                tracks.append(Track([t], [c], [box], _area(box) * float(det.scores[c])))
                active.append(len(tracks) - 1)
    return tracks


def _stitch(subject: list[Track], others: list[Track], iou_threshold: float) -> list[Track]:
    """Greedily add tracks that continue the subject across long misses (no time overlap)."""
    chosen = list(subject)
    for cand in sorted(others, key=lambda tr: -tr.weight):
        occupied = sorted((tr.first, tr.last) for tr in chosen)
        if any(not (cand.last < a or cand.first > b) for a, b in occupied):
            continue
        before = [tr for tr in chosen if tr.last < cand.first]
        after = [tr for tr in chosen if tr.first > cand.last]
        ok = False
        if before:
            prev = max(before, key=lambda tr: tr.last)
            ok = box_iou(prev.boxes[-1], cand.boxes[0])[0, 0] >= iou_threshold
        if not ok and after:
            nxt = min(after, key=lambda tr: tr.first)
            ok = box_iou(cand.boxes[-1], nxt.boxes[0])[0, 0] >= iou_threshold
        if ok:
            chosen.append(cand)
    return chosen


# How the subject's track is chosen among all tracks (see select_subject).
RULES = ("auto", "largest", "longest")
# A subject point must fall inside the person's box within this many first frames.
POINT_FRAMES = 30


def _pick_at_point(tracks: list[Track], point: tuple[float, float], within: int) -> int:
    """The track whose box contains ``point`` (pixels) earliest in the first ``within`` frames.

    Several at once: the one with the smallest box there (the person standing at the
    point, not someone large behind it). Raises ValueError when nobody is there.
    """
    x, y = point
    best: tuple[int, float, int] | None = None
    for k, tr in enumerate(tracks):
        for t, box in zip(tr.frames, tr.boxes, strict=True):
            if t >= within:
                break
            if box[0] <= x <= box[2] and box[1] <= y <= box[3]:
                key = (t, _area(box), k)
                best = key if best is None or key < best else best
                break
    if best is None:
        raise ValueError(f"no detected person covers the point ({x:.0f}, {y:.0f}) px in the first {within} frames")
    return best[2]


def select_subject(
    frames: Sequence[Detections], iou_threshold: float = 0.2, max_gap: int = 15, rule: str = "auto",
    point: tuple[float, float] | None = None, point_frames: int = POINT_FRAMES,
) -> np.ndarray:
    """Index of the subject's detection in every frame, -1 where the subject is not seen.

    The subject's track is, by ``rule``: ``auto`` the largest sum of box area × score
    over its frames (the person the video is about), ``largest`` the largest median
    box (the person nearest the camera), ``longest`` the most frames. With ``point``
    (x, y in pixels) the rule is ignored: the subject is the person whose box covers
    that point earliest within the first ``point_frames`` frames (ValueError when
    nobody does). Returns an int64 array of length ``len(frames)``.
    """
    if rule not in RULES:
        raise ValueError(f"unknown subject rule '{rule}'; choose one of {', '.join(RULES)}")
    out = np.full(len(frames), -1, dtype=np.int64)
    tracks = link_tracks(frames, iou_threshold, max_gap)
    if not tracks:
        if point is not None:
            raise ValueError("no person is detected in any frame, so no subject point can be matched")
        return out
    if point is not None:
        best = _pick_at_point(tracks, point, point_frames)
    else:
        def score(k: int) -> tuple[float, int]:
            tr = tracks[k]
            if rule == "largest":
                value = float(np.median([_area(b) for b in tr.boxes]))
            elif rule == "longest":
                value = float(len(tr.frames))
            else:
                value = tr.weight
            return value, -tr.first

        best = max(range(len(tracks)), key=score)
    others = [tr for k, tr in enumerate(tracks) if k != best]
    for tr in _stitch([tracks[best]], others, iou_threshold):
        out[tr.frames] = tr.dets
    return out

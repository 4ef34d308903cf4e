"""Training data: target frames + their label images, split in time, served as pairs.

The split is by order: the first ``1 - holdout_fraction`` of the frames train, the
tail is held out for evaluation and never trained on. A training sample is a pair of
consecutive frames (t, t+1) inside the training part, both with a detected person
(a pair whose label is blank would teach the generator to invent a person from
nothing). Frames are small, so all of them are decoded once into uint8 tensors; a
batch is a gather from memory, turned into floats on the training device.

Batches are a pure function of (seed, step): a permutation of the pairs per epoch,
cut into consecutive global batches, each rank taking its own contiguous share. So a
resumed run sees exactly the batches an uninterrupted one would, and N ranks with
batch b see the same samples as one process with batch N·b.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from dancepipe.errors import DancepipeError
from dancepipe.model.split import split_point
from dancepipe.pose.keypoints import read_index
from dancepipe.video.images import read_rgb

log = logging.getLogger(__name__)

MIN_TRAIN_FRAMES = 4


@dataclasses.dataclass
class TrainingData:
    """All frames of the target clip in memory, with the time split and the training pairs."""

    frames: list[int]          # frame index of each row, ascending
    labels: torch.Tensor       # (N, 3, H, W) uint8 label images
    images: torch.Tensor       # (N, 3, H, W) uint8 real frames
    n_train: int               # rows [0, n_train) train, the rest is held out
    pairs: np.ndarray          # row i such that (i, i + gaps[k]) is training pair k
    fingerprint: str           # sha256 of the index tables and every image file
    gaps: np.ndarray | None = None  # (P,) frames between a pair's two rows; None: all 1

    @property
    def split(self) -> dict[str, list[int]]:
        return {"train_frames": self.frames[: self.n_train], "holdout_frames": self.frames[self.n_train:]}

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the images."""
        return int(self.images.shape[2]), int(self.images.shape[3])


def load_training_data(frames_dir: str | Path, labels_dir: str | Path, holdout_fraction: float,
                       max_gap: int = 1) -> TrainingData:
    """Read ``data/frames/<target>`` + ``data/labels/<target>/train`` and split them in time.

    Pairs are (t, t + g) for every gap g in 1..``max_gap``, both frames inside the
    training part and showing a person, with every frame between them present.
    """
    frames_dir, labels_dir = Path(frames_dir), Path(labels_dir)
    fdf = read_index(frames_dir, "frames", check_files=False)  # each image is read (and checked) below
    ldf = read_index(labels_dir, "labels", check_files=False)
    merged = fdf[["frame", "file"]].merge(
        ldf[["frame", "file", "person_found"]], on="frame", suffixes=("_img", "_lbl"), validate="one_to_one",
    ).sort_values("frame", kind="stable").reset_index(drop=True)
    n = len(merged)
    n_train = split_point(n, holdout_fraction)
    if n_train < MIN_TRAIN_FRAMES:
        raise DancepipeError(
            f"{frames_dir}: clip too short to train on: {n} frames with labels leave {n_train} training frames "
            f"after holding out train.holdout_fraction={holdout_fraction} (need at least {MIN_TRAIN_FRAMES})"
        )
    digest = hashlib.sha256()
    for d in (frames_dir, labels_dir):
        digest.update((d / "index.parquet").read_bytes())
    images, labels, shape = [], [], None
    for row in merged.itertuples(index=False):
        for col, out in (("file_img", images), ("file_lbl", labels)):
            path = (frames_dir if col == "file_img" else labels_dir) / getattr(row, col)
            arr = read_rgb(path, shape)
            shape = arr.shape[:2]
            out.append(arr)
            digest.update(path.read_bytes())
    frames = merged["frame"].astype(int).tolist()
    found = merged["person_found"].fillna(False).astype(bool).to_numpy()
    index = np.asarray(frames)
    firsts, gaps = [], []
    for gap in range(1, max_gap + 1):
        if n_train <= gap:
            break
        ok = (index[gap:n_train] - index[: n_train - gap] == gap) & found[: n_train - gap] & found[gap:n_train]
        firsts.append(np.flatnonzero(ok))
        gaps.append(np.full(len(firsts[-1]), gap))
    pairs = np.concatenate(firsts) if firsts else np.zeros(0, dtype=np.int64)
    gap_of = np.concatenate(gaps) if gaps else np.zeros(0, dtype=np.int64)
    if not (gap_of == 1).any():
        raise DancepipeError(
            f"{labels_dir}: clip too short to train on: no two consecutive training frames both show a person"
        )
    log.info("training data: %d frames (%d train, %d held out), %d training pairs%s",
             n, n_train, n - n_train, len(pairs), f" (gaps 1 to {max_gap} frames)" if max_gap > 1 else "")

    def stack(arrs: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous()

    return TrainingData(frames=frames, labels=stack(labels), images=stack(images), n_train=n_train,
                        pairs=pairs, fingerprint=digest.hexdigest(), gaps=gap_of if max_gap > 1 else None)


def batch_indices(step: int, global_batch: int, n_pairs: int, seed: int) -> np.ndarray:
    """Pair numbers of global batch ``step`` (0-based): consecutive cuts of per-epoch permutations."""
    start = step * global_batch
    out = []
    for epoch in range(start // n_pairs, (start + global_batch - 1) // n_pairs + 1):
        perm = np.random.default_rng([seed, epoch]).permutation(n_pairs)
        lo = max(start - epoch * n_pairs, 0)
        hi = min(start + global_batch - epoch * n_pairs, n_pairs)
        out.append(perm[lo:hi])
    return np.concatenate(out)


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class PairBatches(IterableDataset):
    """This rank's share of the global batches for steps [start, stop): uint8 (label_t, label_t1, img_t, img_t1).

    With loader workers, worker w produces the steps congruent to w modulo the worker
    count; the DataLoader interleaves workers round-robin, so the order is unchanged.
    """

    def __init__(self, data: TrainingData, start: int, stop: int, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1) -> None:
        self.data, self.start, self.stop = data, start, stop
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size

    def batch(self, step: int) -> Batch:
        idx = batch_indices(step, self.batch_size * self.world_size, len(self.data.pairs), self.seed)
        mine = idx[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
        d = self.data
        rows = torch.from_numpy(d.pairs[mine])
        nxt = rows + (1 if d.gaps is None else torch.from_numpy(d.gaps[mine]))
        return d.labels[rows], d.labels[nxt], d.images[rows], d.images[nxt]

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        for step in range(self.start + wid, self.stop, nw):
            yield self.batch(step)


def make_loader(batches: PairBatches, workers: int, pin_memory: bool) -> DataLoader | PairBatches:
    """A DataLoader with workers/pinned memory, or the plain iterable when neither is wanted."""
    if workers == 0 and not pin_memory:
        return batches
    return DataLoader(batches, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                      persistent_workers=False, prefetch_factor=4 if workers else None)


def to_model_range(x: torch.Tensor, device: torch.device, memory_format: torch.memory_format) -> torch.Tensor:
    """uint8 (B, 3, H, W) → float in [-1, 1] on ``device`` (non-blocking from pinned memory)."""
    x = x.to(device, non_blocking=True).to(memory_format=memory_format)
    return x.float().div_(127.5).sub_(1.0)

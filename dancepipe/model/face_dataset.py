"""Face GAN training data: label, main-generator and real face crops of the training split.

The frozen main generator runs over the training frames conditioned on its own
previous output exactly as rendering does (:func:`dancepipe.model.networks.next_frame`), in
:data:`CHAINS` lockstep chains, and the face crops are cut with the boxes the labels
stage recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from dancepipe.errors import DancepipeError
from dancepipe.model.face_networks import Box, check_box, crop, freeze
from dancepipe.model.networks import next_frame, to_model, to_uint8
from dancepipe.pose.keypoints import read_index
from dancepipe.video.images import read_rgb

BOX_COLUMNS = ("face_x0", "face_y0", "face_size", "face_ok")
Progress = Callable[[int], None]


def boxes_from_index(index: pd.DataFrame) -> list[Box | None]:
    """Face boxes of a labels ``index.parquet`` → one ``(x0, y0, size)`` or None per row."""
    missing = [c for c in BOX_COLUMNS if c not in index.columns]
    if missing:
        raise DancepipeError(
            f"labels index has no face box columns ({', '.join(missing)}); re-run the labels stage"
        )
    return [
        (int(x0), int(y0), int(s)) if ok else None
        for x0, y0, s, ok in zip(index["face_x0"], index["face_y0"], index["face_size"], index["face_ok"],
                                  strict=True)
    ]


@dataclass
class FaceCrops:
    """Training faces: uint8 (N, S, S, 3) crops of the label, main output and real frame."""

    frames: np.ndarray
    label: np.ndarray
    main: np.ndarray
    real: np.ndarray
    total: int  # training frames considered
    skipped: int  # of those, frames without a usable face box

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def size(self) -> int:
        return int(self.label.shape[1])


def _frame_table(frames_dir: Path, labels_dir: Path) -> pd.DataFrame:
    """Labels (with their face boxes) joined to the target frames on the frame number."""
    frames = read_index(frames_dir, "frames", check_files=False)  # each image is read (and checked) later
    labels = read_index(labels_dir, "labels", check_files=False)
    missing = [c for c in BOX_COLUMNS if c not in labels.columns]
    if missing:
        raise DancepipeError(f"{labels_dir / 'index.parquet'}: missing column(s) {', '.join(missing)}; "
                             "re-run the labels stage")
    table = labels[["frame", "file", *BOX_COLUMNS]].merge(
        frames[["frame", "file"]], on="frame", suffixes=("_label", "_frame"), how="inner"
    )
    return table.sort_values("frame").reset_index(drop=True)


# Training frames are cut into this many chains that run through the generator side by
# side, one batch per step. On the 1,413 training frames of the demo dancer, one chain
# (batch 1) took most of this stage's time; 16 chains measured 1.8x faster per frame.
CHAINS = 16


def chain_segments(frames: np.ndarray, chains: int) -> list[tuple[int, int]]:
    """Cut rows of sorted ``frames`` into at most about ``chains`` runs of consecutive frames.

    Returns (start, stop) row ranges covering every row once, in order. A break in the
    frame numbers always starts a new run, so the recurrence never spans a gap.
    """
    n = len(frames)
    if n == 0:
        return []
    breaks = [0, *(np.flatnonzero(np.diff(frames) != 1) + 1).tolist(), n]
    target = max(1, -(-n // max(1, chains)))
    out = []
    for lo, hi in zip(breaks[:-1], breaks[1:], strict=True):
        pieces = -(-(hi - lo) // target)
        edges = np.linspace(lo, hi, pieces + 1).round().astype(int)
        out += [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
    return out


def collect_face_crops(
    generator: nn.Module,
    frames_dir: str | Path,
    labels_dir: str | Path,
    frames: Sequence[int] | None = None,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    chains: int = CHAINS,
    precision: str = "fp32",
) -> FaceCrops:
    """Run the frozen main generator over the training frames and cut the face crops.

    Each frame is conditioned on the previous generated frame, as in rendering; a
    chain starts from zeros (as rendering does at its first frame). The frames are
    cut into ``chains`` runs (:func:`chain_segments`) that advance in lockstep as one
    batch, so the recurrence is kept while the generator sees batches. ``frames``
    restricts to the generator's training split; frames whose label has no usable face
    box are counted in ``skipped`` and produce no crop. The generator is frozen first
    (eval mode, no gradients) and never modified. ``precision`` (fp32, bf16 or fp16) is
    the autocast it runs under (:func:`dancepipe.model.networks.next_frame`).
    """
    freeze(generator)
    frames_dir, labels_dir = Path(frames_dir), Path(labels_dir)
    table = _frame_table(frames_dir, labels_dir)
    if frames is not None:
        table = table[table["frame"].isin(set(int(f) for f in frames))].reset_index(drop=True)
    if table.empty:
        raise DancepipeError(f"{labels_dir / 'index.parquet'}: no frame of the generator's training split "
                             f"has both a label and a target frame")
    device = torch.device(device)
    index = str(labels_dir / "index.parquet")
    segments = chain_segments(table["frame"].to_numpy(), chains)
    rows = list(table.itertuples(index=False))
    found: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # row -> (label, main, real) crops
    size: int | None = None
    prev: dict[int, torch.Tensor] = {}  # segment -> its last generated frame
    skipped = 0
    with torch.inference_mode():
        for t in range(max(b - a for a, b in segments)):
            active = [k for k, (a, b) in enumerate(segments) if a + t < b]
            batch_rows = [segments[k][0] + t for k in active]
            label_np = np.stack([read_rgb(labels_dir / rows[r].file_label) for r in batch_rows])
            label = to_model(label_np, device)
            fake = next_frame(generator, label, torch.cat([prev[k] for k in active]) if t else None, precision)
            if fake.shape != label.shape:
                raise DancepipeError(f"main generator returned {tuple(fake.shape)} for a label of {tuple(label.shape)}")
            for j, k in enumerate(active):
                prev[k] = fake[j:j + 1]
            h, w = label_np.shape[1:3]
            for j, r in enumerate(batch_rows):
                row = rows[r]
                if not row.face_ok:
                    skipped += 1
                    continue
                box = (int(row.face_x0), int(row.face_y0), int(row.face_size))
                check_box(box, w, h, index)
                real_np = read_rgb(frames_dir / row.file_frame)
                if real_np.shape != label_np[j].shape:
                    raise DancepipeError(f"{frames_dir / row.file_frame}: frame is {real_np.shape[1]}x"
                                         f"{real_np.shape[0]} but its label is {w}x{h}")
                x0, y0, s = box
                if size is not None and s != size:
                    raise DancepipeError(f"{index}: face boxes of different sizes ({size} and {s} px); "
                                         f"re-run the labels stage")
                size = s
                found[r] = (label_np[j, y0:y0 + s, x0:x0 + s], to_uint8(crop(fake[j:j + 1], [box]))[0],
                            real_np[y0:y0 + s, x0:x0 + s])
            if progress is not None:
                progress(len(batch_rows))
    if not found:
        raise DancepipeError(f"{index}: none of the {len(table)} training frames has a "
                             f"usable face box; set train_face.enabled: false or check the poses")
    order = sorted(found)
    return FaceCrops(
        frames=np.array([int(rows[r].frame) for r in order], dtype=np.int64),
        label=np.stack([found[r][0] for r in order]), main=np.stack([found[r][1] for r in order]),
        real=np.stack([found[r][2] for r in order]), total=len(table), skipped=skipped,
    )

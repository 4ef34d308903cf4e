"""The time split of a target's frames: the first part trains, the tail is held out.

Torch-free, so the transfer labels (which measure a dance's coverage against the
training part, :mod:`dancepipe.advice.coverage`) split exactly as training does without
importing the trainer.
"""

from __future__ import annotations

import numpy as np


def split_point(n: int, holdout_fraction: float) -> int:
    """Number of leading frames used for training out of ``n``."""
    return int(np.floor(n * (1.0 - holdout_fraction) + 1e-9))

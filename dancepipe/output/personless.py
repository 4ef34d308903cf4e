"""What to show for source frames with no person: the ``render.empty`` rule.

A label with no person on it is a black picture; fed to the generator it paints
blotches, never the target. So such a frame is never generated. The rule decides what
the output shows instead, and both render (which writes the video) and evaluate
(which reads it back and must know which label each video frame came from) follow
the one plan made here.

* ``hold``: show the last generated frame (frames before the first person show the
  first generated frame);
* ``trim``: drop the leading and trailing person-less frames (the audio is cut to
  match), hold across gaps inside;
* ``blank``: a plain black frame.

The generator's recurrence skips the person-less frames in every case: the frame
after a gap is conditioned on the last generated frame.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from dancepipe.errors import DancepipeError

EmptyRule = Literal["hold", "trim", "blank"]
EMPTY_RULES: tuple[str, ...] = ("hold", "trim", "blank")


@dataclasses.dataclass(frozen=True)
class FramePlan:
    """Which label rows become output frames, and which of them are generated.

    ``rows[j]`` is the label row shown as output frame ``j``; ``generated[j]`` says
    whether frame ``j`` is the generator's output for that label (False: held or
    blank, per ``rule``). ``first``/``stop`` bound the kept rows (trim drops the rest).
    """

    rule: str
    rows: np.ndarray        # (M,) int label-row index per output frame
    generated: np.ndarray   # (M,) bool
    empty: int              # person-less labels in the whole input
    first: int              # first label row kept
    stop: int               # one past the last label row kept
    total: int              # label rows in the input

    @property
    def frames(self) -> int:
        return len(self.rows)

    @property
    def substituted(self) -> int:
        """Output frames that show a held or blank picture instead of a generated one."""
        return int((~self.generated).sum())

    @property
    def trimmed(self) -> int:
        """Label rows dropped from the ends (trim only)."""
        return self.total - (self.stop - self.first)


def plan_frames(person_found: np.ndarray | list[bool], rule: str) -> FramePlan:
    """Plan the output frames for labels whose ``person_found`` flags are given, under ``rule``.

    Raises :class:`DancepipeError` when no label shows a person (there is nothing to
    render) or the rule is unknown.
    """
    if rule not in EMPTY_RULES:
        raise DancepipeError(f"render.empty = {rule!r}: choose one of {', '.join(EMPTY_RULES)}")
    found = np.asarray(person_found, dtype=bool)
    n = len(found)
    hits = np.flatnonzero(found)
    if len(hits) == 0:
        raise DancepipeError(f"none of the {n} labels shows a person: there is nothing to render")
    first, stop = (int(hits[0]), int(hits[-1]) + 1) if rule == "trim" else (0, n)
    rows = np.arange(first, stop)
    return FramePlan(rule=rule, rows=rows, generated=found[first:stop].copy(), empty=int((~found).sum()),
                     first=first, stop=stop, total=n)

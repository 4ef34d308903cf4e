"""The hand-over between the live threads: a slot that holds only the newest item.

A live pipeline must never fall behind the camera. A queue would: when a step is
slower than the camera, frames pile up and every frame shown is older than the last.
A :class:`NewestSlot` holds one item; putting a new one while the old one is still
waiting replaces it, and the replaced item is counted as dropped. The consumer always
gets the newest frame, and the drop count says how many it never saw.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class SlotClosed(Exception):
    """Raised by :meth:`NewestSlot.get` once the slot is closed and empty."""


class NewestSlot(Generic[T]):
    """A one-item mailbox between threads: ``put`` never blocks, ``get`` takes the newest item."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._full = False
        self._closed = False
        self.put_count = 0  # items offered
        self.dropped = 0  # items replaced before anyone took them

    def put(self, item: T) -> bool:
        """Offer ``item``; returns False (and counts a drop) when it replaced a waiting one."""
        with self._cond:
            if self._closed:
                return False
            replaced = self._full
            if replaced:
                self.dropped += 1
            self._item, self._full = item, True
            self.put_count += 1
            self._cond.notify()
            return not replaced

    def get(self, timeout: float | None = None) -> T | None:
        """The newest item, waiting up to ``timeout`` s (None: forever); None on timeout.

        Raises :class:`SlotClosed` once the slot is closed and nothing is waiting.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._full or self._closed, timeout):
                return None
            if not self._full:
                raise SlotClosed
            item, self._item, self._full = self._item, None, False
            self._cond.notify_all()  # a producer in wait_empty may go on
            return item

    def wait_empty(self, timeout: float | None = None) -> bool:
        """Wait until the waiting item has been taken (or the slot closed); False on timeout.

        The producer of a pipeline calls this before starting its next item, so it never
        works on a frame that would only be replaced before the consumer is free.
        """
        with self._cond:
            return self._cond.wait_for(lambda: not self._full or self._closed, timeout)

    def close(self) -> None:
        """Wake every waiting ``get``; later ``put`` calls are ignored."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

"""What each worker process tells the supervisor, through shared memory rather than messages.

One slot of doubles per worker: the last heartbeat of its consume loop (`time.monotonic()`, one
clock for all processes on Linux) and whether its source answered the last receive. Reading it
needs no thread in the supervisor and no protocol, and a worker that dies mid-write leaves at
worst one stale number, which the next heartbeat of its replacement overwrites.
"""

from __future__ import annotations

import time
from typing import Any

BEAT = 0
CONNECTED = 1
STARTED = 2
FIELDS = 3


class Slot:
    """One worker's view of its slot in a shared `RawArray('d', n * FIELDS)`."""

    def __init__(self, array: Any, index: int) -> None:
        self._array = array
        self._base = index * FIELDS

    def reset(self) -> None:
        """Before a (re)start: not connected, no heartbeat yet."""
        for field in range(FIELDS):
            self._array[self._base + field] = 0.0
        self._array[self._base + STARTED] = time.monotonic()

    def beat(self) -> None:
        self._array[self._base + BEAT] = time.monotonic()

    def connected(self, up: bool) -> None:
        self._array[self._base + CONNECTED] = 1.0 if up else 0.0
        self.beat()

    @property
    def is_connected(self) -> bool:
        return bool(self._array[self._base + CONNECTED])

    def silent_for(self, now: float | None = None) -> float:
        """Seconds since the last heartbeat (since the start while there was none)."""
        now = time.monotonic() if now is None else now
        last = self._array[self._base + BEAT] or self._array[self._base + STARTED]
        return float(now - last)


__all__ = ["Slot"]

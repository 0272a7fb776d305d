"""What the push listener may hold in memory: the bytes of the bodies it is receiving or has in
hand, across every queue, given back to the system after a burst."""

from __future__ import annotations

import asyncio
import ctypes
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Gauge

BODY_BYTES_IN_FLIGHT = Gauge(
    "consumer_push_body_bytes_in_flight",
    "Bytes of push bodies held by the listener (being received, waiting or committing)",
    multiprocess_mode="livesum",
)


class BodyBudget:
    """Bytes of push bodies held at once, across every queue of the listener.

    Taken chunk by chunk as a body arrives (what is counted is what is held in memory, so a
    sender that announces a large body and sends nothing holds nothing) and given back when the
    request is answered. A chunk that would pass the limit is refused: that request gets 503.
    The event loop is the only user, so no lock.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._since_trim = 0  # bytes taken since the memory was last given back

    def hold(self) -> Held:
        """One request's share, given back when its `with` block ends (a plain context manager,
        not an `asynccontextmanager`: nothing here awaits, and that generator machinery was ~4%
        of the event loop's CPU per request in a profile)."""
        return Held(self)

    def release(self, held: Held) -> None:
        self.used -= held.size
        self._since_trim += held.size
        if held.size:
            BODY_BYTES_IN_FLIGHT.dec(held.size)
        if not self.used and self._since_trim >= _TRIM_AFTER:
            self._since_trim = 0
            # once this request's frames are gone too
            asyncio.get_running_loop().call_soon(_return_memory)


@dataclass(slots=True)
class Held:
    """One request's share of the `BodyBudget`."""

    budget: BodyBudget
    size: int = 0

    def __enter__(self) -> Held:
        return self

    def __exit__(self, *exc: object) -> None:
        self.budget.release(self)

    def take(self, size: int) -> bool:
        if self.budget.used + size > self.budget.limit:
            return False
        self.budget.used += size
        self.size += size
        BODY_BYTES_IN_FLIGHT.inc(size)
        return True


def _return_memory() -> None:
    """Give freed heap pages back to the system (glibc keeps them otherwise, and the listener's
    resident size stays at its peak after a burst of large bodies)."""
    if _TRIM is not None:
        _TRIM(0)


def _malloc_trim() -> Callable[[int], object] | None:
    try:
        trim: Callable[[int], object] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return trim


_TRIM = _malloc_trim()
_TRIM_AFTER = 4 * 1_048_576  # a trim costs a walk of the heap: not after every small body


__all__ = ["BODY_BYTES_IN_FLIGHT", "BodyBudget", "Held"]

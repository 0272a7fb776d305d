"""What a database error means for the batch and for the connection that raised it.

Each backend keeps one table from its own error codes (SQLite result codes, PostgreSQL
SQLSTATEs) to a `Fault`; message text is never consulted. The rule that makes recovery work:
after any fault except plain lock contention the connection is thrown away, because a
connection opened during a fault (files read-only, a standby answering, a half-dead socket) can
stay in that state after the fault has gone.
"""

from __future__ import annotations

from enum import Enum


class Fault(Enum):
    """The four things an error can be, with whether the connection is reused after it."""

    BUSY = ("transient", True)
    """Contention (a lock, a serialization conflict): retry on the same connection."""
    OUTAGE = ("transient", False)
    """The storage or server cannot write now (read-only, full, I/O, gone): retry on a new one."""
    REJECTED = ("rejected", True)
    """The database refuses a value of the batch: isolate the message that holds it."""
    BUG = ("bug", False)
    """Corruption or a mistake in the sink: loud, nothing acknowledged; the connection goes."""

    def __init__(self, kind: str, keep_connection: bool) -> None:
        self.kind = kind
        self.keep_connection = keep_connection

    @property
    def transient(self) -> bool:
        return self.kind == "transient"


__all__ = ["Fault"]

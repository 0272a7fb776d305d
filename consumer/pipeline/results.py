"""What became of each message: the answer a source turns into ack, reject, 200 or 503."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from consumer.sources.base import Message


class Disposition(StrEnum):
    STORED = "stored"
    """Every event of the message is committed: acknowledge it (HTTP 200)."""
    DEAD_LETTERED = "dead_lettered"
    """Quarantined in `dead_letters` with its raw bytes, committed: acknowledge it (HTTP 200)."""
    TRANSIENT = "transient"
    """Nothing of it is committed; retry later: reject it (HTTP 503)."""

    @property
    def committed(self) -> bool:
        return self is not Disposition.TRANSIENT


@dataclass(frozen=True, slots=True)
class Result:
    message: Message
    disposition: Disposition
    events: int = 0
    """Events committed for the message (0 unless stored)."""
    reason: str | None = None
    """The dead-letter reason code, or `transient`."""
    error: str | None = None
    """What went wrong, for dead letters and transient failures."""

    @property
    def committed(self) -> bool:
        return self.disposition.committed


__all__ = ["Disposition", "Result"]

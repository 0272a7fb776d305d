"""What the pipeline needs from a store: one idempotent transaction per batch.

The contract (Redpanda Connect's): `store` returns only after everything it was given is durably
committed, or raises and committed nothing. Storing the same event twice is a no-op, so an
at-least-once source never produces duplicate rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from consumer.model import Normalized


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A normalized event with where and when it was received (`call_events` columns)."""

    normalized: Normalized
    queue: str
    message_id: str
    received_at: datetime


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A quarantined message: its raw bytes exactly as received, and why."""

    queue: str
    message_id: str
    reason: str
    error: str
    payload: bytes
    attempts: int
    seen_at: datetime


@dataclass(frozen=True, slots=True)
class NonceClaim:
    """A signed push's nonce, to be remembered (`push_nonces`) with the message that carried it.

    `key` identifies the credential and nonce (a digest: fixed width, never the raw header);
    `expires_at` (epoch seconds) is when the request's `Created` can no longer pass, after which
    the row may go.
    """

    message_id: str
    queue: str
    key: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    """A `dead_letters` row as listed by `consumer dead-letters list`."""

    id: int
    queue: str
    message_id: str
    reason: str
    error: str
    payload: bytes
    attempts: int
    first_seen: datetime
    last_seen: datetime


class Sink(Protocol):
    def migrate(self) -> None:
        """Create or upgrade the schema (versioned migrations); safe to run from many workers."""

    def store(self, events: Sequence[StoredEvent], dead_letters: Sequence[DeadLetter]) -> None:
        """Commit all of it in one transaction, idempotently, then return.

        Raises `TransientError` when the database cannot be reached or is locked; then nothing
        was committed and the caller retries.
        """

    def dead_letters(self, ids: Sequence[int] = ()) -> list[DeadLetterRow]:
        """The quarantined messages, all or those with the given ids."""

    def discard_dead_letters(self, ids: Sequence[int]) -> None:
        """Remove dead letters that a replay has stored for good."""

    def close(self) -> None: ...

"""A sink test double that keeps the `Sink` contract (consumer/sinks/base.py) in memory, and a
fault-injecting wrapper that works over any sink (the double or a real one).

The double is atomic (a failed `store` commits nothing) and idempotent (an event is keyed by its
`event_id`, a dead letter by queue and message id).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from consumer.errors import RejectedData, TransientError
from consumer.sinks.base import DeadLetter, DeadLetterRow, Sink, StoredEvent


class RefusedRow(RejectedData):
    """What a sink raises for data the database will never accept (not transient)."""


@dataclass
class SinkDouble:
    events: dict[str, StoredEvent] = field(default_factory=dict)
    letters: dict[int, DeadLetterRow] = field(default_factory=dict)
    commits: int = 0
    closed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next_id: int = 1

    def migrate(self) -> None:
        pass

    def store(self, events: Sequence[StoredEvent], dead_letters: Sequence[DeadLetter]) -> None:
        with self._lock:
            for event in events:
                self.events.setdefault(event.normalized.event.event_id, event)
            for letter in dead_letters:
                self._upsert(letter)
            self.commits += 1

    def _upsert(self, letter: DeadLetter) -> None:
        for row_id, row in self.letters.items():
            if (row.queue, row.message_id) == (letter.queue, letter.message_id):
                self.letters[row_id] = DeadLetterRow(
                    row_id, row.queue, row.message_id, letter.reason, letter.error,
                    row.payload, max(row.attempts, letter.attempts), row.first_seen, letter.seen_at,
                )  # fmt: skip
                return
        self.letters[self._next_id] = DeadLetterRow(
            self._next_id, letter.queue, letter.message_id, letter.reason, letter.error,
            letter.payload, letter.attempts, letter.seen_at, letter.seen_at,
        )  # fmt: skip
        self._next_id += 1

    def dead_letters(self, ids: Sequence[int] = ()) -> list[DeadLetterRow]:
        with self._lock:
            return [row for row_id, row in sorted(self.letters.items()) if not ids or row_id in ids]

    def discard_dead_letters(self, ids: Sequence[int]) -> None:
        with self._lock:
            for row_id in ids:
                self.letters.pop(row_id, None)

    def close(self) -> None:
        self.closed = True

    def stored_event_ids(self) -> list[str]:
        with self._lock:
            return list(self.events)


@dataclass
class FaultySink:
    """Wraps a sink with the failures the pipeline must survive; faults fire before the inner
    sink is touched, so a failed call commits nothing."""

    inner: Sink
    outage: bool = False
    """While True every `store` raises TransientError (database down)."""
    lock_errors: int = 0
    """The next N `store` calls raise TransientError (database locked), then it recovers."""
    refuse: Callable[[StoredEvent], bool] | None = None
    """A batch holding an event for which this is True raises `RefusedRow`."""
    calls: int = 0

    def migrate(self) -> None:
        self.inner.migrate()

    def store(self, events: Sequence[StoredEvent], dead_letters: Sequence[DeadLetter]) -> None:
        self.calls += 1
        if self.outage:
            raise TransientError("database is down (injected outage)")
        if self.lock_errors > 0:
            self.lock_errors -= 1
            raise TransientError("database is locked (injected)")
        for event in events:
            if self.refuse is not None and self.refuse(event):
                raise RefusedRow(f"value refused for event {event.normalized.event.event_id}")
        self.inner.store(events, dead_letters)

    def dead_letters(self, ids: Sequence[int] = ()) -> list[DeadLetterRow]:
        return self.inner.dead_letters(ids)

    def discard_dead_letters(self, ids: Sequence[int]) -> None:
        self.inner.discard_dead_letters(ids)

    def close(self) -> None:
        self.inner.close()

"""Durable replay protection for signed pushes: the nonce is stored with the request's events.

Huawei's AK/SK signature covers the nonce and `Created`, not the body, so a captured request
replayed with a forged body verifies as long as its `Created` is fresh. The per-process
`NonceCache` refuses that within one process; this wrapper makes the refusal survive a restart
and hold at every daemon on the same database. The listener registers each signed request's
nonce under its message id; when the pipeline stores the message, the nonce goes into
`push_nonces` in the same transaction (`SqlSink.store_claimed`). So a request is remembered
exactly when it is stored (a 503 remembers nothing and the sender's retry is not a replay), and
a replay is refused inside the transaction: none of its events or dead letters are written.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from consumer.sinks.base import DeadLetter, DeadLetterRow, NonceClaim, Sink, StoredEvent


@runtime_checkable
class ClaimingSink(Protocol):
    def store_claimed(
        self,
        events: Sequence[StoredEvent],
        dead_letters: Sequence[DeadLetter],
        claims: Sequence[NonceClaim],
    ) -> set[str]: ...


class NonceLedger:
    """A `Sink` for one push queue's pipeline that stores each message with its nonce claim.

    `expect` before the message is submitted, `settle` once its result is in: True means the
    message was refused as a replay (nothing of it stored). Thread-safe: the listener's event
    loop registers, the pipeline's thread stores. The wrapped sink belongs to its opener.
    """

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.durable = isinstance(sink, ClaimingSink)
        self._lock = threading.Lock()
        self._claims: dict[str, NonceClaim] = {}
        self._refused: set[str] = set()

    def expect(self, claim: NonceClaim) -> None:
        with self._lock:
            self._claims[claim.message_id] = claim

    def settle(self, message_id: str) -> bool:
        """Forget the message's claim; whether its nonce was found already used."""
        with self._lock:
            self._claims.pop(message_id, None)
            if message_id in self._refused:
                self._refused.discard(message_id)
                return True
            return False

    # -- Sink --------------------------------------------------------------------------------

    def migrate(self) -> None:
        self.sink.migrate()

    def store(self, events: Sequence[StoredEvent], dead_letters: Sequence[DeadLetter]) -> None:
        ids = {e.message_id for e in events} | {d.message_id for d in dead_letters}
        with self._lock:
            claims = [self._claims[i] for i in ids if i in self._claims]
        if not claims or not isinstance(self.sink, ClaimingSink):
            self.sink.store(events, dead_letters)
            return
        refused = self.sink.store_claimed(events, dead_letters, claims)
        if refused:
            with self._lock:
                self._refused.update(refused)

    def dead_letters(self, ids: Sequence[int] = ()) -> list[DeadLetterRow]:
        return self.sink.dead_letters(ids)

    def discard_dead_letters(self, ids: Sequence[int]) -> None:
        self.sink.discard_dead_letters(ids)

    def close(self) -> None:
        """Nothing: the wrapped sink is closed by whoever opened it."""


__all__ = ["ClaimingSink", "NonceLedger"]

"""An in-memory queue with real broker semantics, for tests and the demo.

`MemoryQueue` is the broker (it outlives sources); `MemorySource` is one consumer connected to
it. A "restart" is a new `MemorySource` over the same queue: what the old one received and never
settled stays invisible until its visibility lapses, exactly as on MNS or RocketMQ.
Every receive issues a new handle, so a handle from an earlier delivery can no longer settle the
message (as MNS receipt handles).
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from consumer.errors import TransientError
from consumer.sources.base import Message

Clock = Callable[[], float]


@dataclass(slots=True)
class _Entry:
    id: str
    body: bytes
    visible_at: float
    deliveries: int = 0
    handle: str | None = None


class MemoryQueue:
    """The broker side: published messages until one is acknowledged with its current handle.

    `clock` is injectable so that tests can make visibility lapse without sleeping; with a fake
    clock, `receive` does not block (pass `wait=0`).
    """

    def __init__(self, visibility_timeout: float = 30.0, clock: Clock = time.monotonic) -> None:
        if visibility_timeout <= 0:
            raise ValueError(f"visibility_timeout must be positive, got {visibility_timeout}")
        self.visibility_timeout = visibility_timeout
        self._clock = clock
        self._entries: dict[str, _Entry] = {}  # insertion order = FIFO order
        self._handles = itertools.count(1)
        self._changed = threading.Condition()
        self.unavailable = False
        """A knob for tests: while True every operation raises `TransientError`."""

    def publish(self, body: bytes, message_id: str | None = None) -> str:
        """Enqueue a body; returns its transport id (a UUID unless given)."""
        message_id = message_id or uuid.uuid4().hex
        with self._changed:
            if message_id in self._entries:
                raise ValueError(f"message id {message_id!r} is already queued")
            self._entries[message_id] = _Entry(message_id, bytes(body), self._clock())
            self._changed.notify_all()
        return message_id

    def __len__(self) -> int:
        """Messages not yet acknowledged, visible or in flight."""
        with self._changed:
            return len(self._entries)

    def drained(self) -> bool:
        return len(self) == 0

    def in_flight(self) -> int:
        """Messages received and neither acknowledged nor visible again."""
        now = self._clock()
        with self._changed:
            return sum(1 for entry in self._entries.values() if entry.visible_at > now)

    def delivery_count(self, message_id: str) -> int:
        with self._changed:
            return self._entries[message_id].deliveries

    def expire_in_flight(self) -> None:
        """Make every in-flight message visible now, as if its visibility had lapsed."""
        now = self._clock()
        with self._changed:
            for entry in self._entries.values():
                entry.visible_at = min(entry.visible_at, now)
            self._changed.notify_all()

    # The consumer side, used through MemorySource.

    def _check(self) -> None:
        if self.unavailable:
            raise TransientError("memory queue is unavailable")

    def _take(self, max_count: int, visibility: float) -> list[Message]:
        now = self._clock()
        taken: list[Message] = []
        for entry in self._entries.values():
            if len(taken) == max_count:
                break
            if entry.visible_at > now:
                continue
            entry.deliveries += 1
            entry.visible_at = now + visibility
            entry.handle = f"{entry.id}#{next(self._handles)}"
            taken.append(Message(entry.id, entry.body, entry.deliveries, entry.handle))
        return taken

    def _next_visible_in(self) -> float | None:
        now = self._clock()
        future = [entry.visible_at - now for entry in self._entries.values()]
        return max(0.0, min(future)) if future else None

    def receive(self, max_count: int, wait: float, visibility: float) -> list[Message]:
        if max_count < 1:
            raise ValueError(f"max_count must be at least 1, got {max_count}")
        deadline = time.monotonic() + max(0.0, wait)
        with self._changed:
            while True:
                self._check()
                taken = self._take(max_count, visibility)
                remaining = deadline - time.monotonic()
                if taken or remaining <= 0:
                    return taken
                next_visible = self._next_visible_in()
                timeout = remaining if next_visible is None else min(remaining, next_visible)
                self._changed.wait(max(timeout, 0.001))

    def _current(self, message: Message) -> _Entry | None:
        entry = self._entries.get(message.id)
        if entry is None or entry.handle != message.handle:
            return None  # acknowledged already, or redelivered since: a stale handle
        return entry

    def ack(self, messages: Sequence[Message]) -> None:
        with self._changed:
            self._check()
            for message in messages:
                if self._current(message) is not None:
                    del self._entries[message.id]

    def set_visibility(self, messages: Sequence[Message], seconds: float) -> None:
        with self._changed:
            self._check()
            now = self._clock()
            for message in messages:
                entry = self._current(message)
                if entry is not None:
                    entry.visible_at = now + max(0.0, seconds)
            self._changed.notify_all()


class MemorySource:
    """One consumer of a `MemoryQueue`; implements `consumer.sources.base.Source`."""

    concurrent_settle = False
    """Settled under the worker's io lock, like most SDK clients."""

    def __init__(self, queue: MemoryQueue, visibility_timeout: float | None = None) -> None:
        self._queue = queue
        self._visibility = visibility_timeout or queue.visibility_timeout
        self._closed = False

    @property
    def visibility_timeout(self) -> float:
        return self._visibility

    def _open(self) -> MemoryQueue:
        if self._closed:
            raise RuntimeError("this MemorySource is closed; open a new one over the queue")
        return self._queue

    def receive(self, max_count: int, wait: float) -> list[Message]:
        return self._open().receive(max_count, wait, self._visibility)

    def ack(self, messages: Sequence[Message]) -> None:
        self._open().ack(messages)

    def reject(self, messages: Sequence[Message], delay: float) -> None:
        self._open().set_visibility(messages, delay)

    def extend(self, messages: Sequence[Message], seconds: float) -> None:
        self._open().set_visibility(messages, seconds)

    def close(self) -> None:
        self._closed = True


__all__ = ["MemoryQueue", "MemorySource"]

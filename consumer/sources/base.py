"""What the pipeline needs from a message source (MNS, RocketMQ, HTTP push, in-memory).

The contract is Redpanda Connect's batch input: read a batch, then settle every message of it,
either `ack` (after the sink committed what the message yields) or `reject` (it comes back).
A message that is never settled comes back by itself when its visibility lapses, so a crash
anywhere loses nothing; the pipeline's idempotent sink absorbs the duplicates.

Rules every source keeps:

- `receive` returns `[]` when nothing arrived within `wait`; it raises `TransientError` when
  the broker cannot be reached (the loop backs off and tries again). Any other exception is a bug.
- `ack`, `reject` and `extend` never raise for a stale or unknown handle (acknowledged twice,
  visibility already lapsed, a restart in between): the message is, or will be, redelivered and
  deduplicated. They may raise `TransientError` when the broker cannot be reached; the pipeline
  logs it and moves on, leaving the message to redelivery.
- `Message.handle` belongs to the source. A broker that issues a new receipt handle when the
  visibility changes (MNS `ChangeMessageVisibility`, RocketMQ `change_invisible_duration`) keeps a
  mutable holder in `handle` and updates it, so `ack` after `extend` uses the newest handle.
- `ack`, `reject` and `extend` are only called from one thread at a time, never concurrently
  with `receive` (SDK clients such as MNS's are not thread-safe), unless the source declares
  `concurrent_settle = True` (MNS settles on a second connection): then the worker may
  acknowledge one batch while a receive for the next is waiting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Message:
    """One received message, exactly as the transport delivered it."""

    id: str
    """The transport's id (MNS `MessageId`, RocketMQ `message_id`, an HTTP request id); it is
    stored as `call_events.message_id`, never used as the event's identity."""
    body: bytes
    """The raw body; the format decodes it (base64, JSON) and dead letters keep it unchanged."""
    delivery_count: int = 1
    """1 on the first delivery (MNS `DequeueCount`, RocketMQ `delivery_attempt`); past the
    queue's `max_deliveries` the message is quarantined without being parsed."""
    handle: object = None
    """Whatever the source needs to settle the message (receipt handle, future, ...)."""


@runtime_checkable
class Source(Protocol):
    """A batch-pull view of a queue; push sources queue their requests behind the same calls."""

    @property
    def concurrent_settle(self) -> bool:
        """Whether `ack` and `reject` may run while a `receive` or `extend` is in progress (on a
        second connection, as MNS does); only then does the worker prefetch. A capability
        declared by the class (`concurrent_settle = True`), not probed."""
        ...

    @property
    def visibility_timeout(self) -> float | None:
        """Seconds a received message stays invisible before it is redelivered.

        The pipeline's budget for a batch: it extends the visibility before this runs out.
        `None` means no limit (an HTTP push holds the request until it is settled).
        """
        ...

    def receive(self, max_count: int, wait: float) -> list[Message]:
        """Up to `max_count` messages, waiting at most `wait` seconds for the first one."""
        ...

    def ack(self, messages: Sequence[Message]) -> None:
        """Remove messages for good: only ever called after their results are committed."""
        ...

    def reject(self, messages: Sequence[Message], delay: float) -> None:
        """Give messages back: they are redelivered after about `delay` seconds.

        A source that cannot shorten the visibility lets it lapse instead.
        """
        ...

    def extend(self, messages: Sequence[Message], seconds: float) -> None:
        """Keep in-flight messages invisible for `seconds` more, counted from now."""
        ...

    def close(self) -> None:
        """Release connections; unsettled messages come back when their visibility lapses."""
        ...


__all__ = ["Message", "Source"]

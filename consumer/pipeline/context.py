"""Log context for one message: every line about it carries the same keys.

The keys are `consumer.logs.MESSAGE_KEYS` (queue, provider, kind, call_id, event_id, message_id).
kind, call_id and event_id come from the message's event when it yielded exactly one; a message
with several events keeps the call_id they share, if any. Bodies are never bound.
"""

from __future__ import annotations

from collections.abc import Sequence

from consumer.sinks.base import StoredEvent


def message_fields(
    queue: str, provider: str, message_id: str, events: Sequence[StoredEvent] = ()
) -> dict[str, str | None]:
    fields: dict[str, str | None] = {
        "queue": queue,
        "provider": provider,
        "message_id": message_id,
    }
    if len(events) == 1:
        event = events[0].normalized.event
        fields.update(kind=str(event.kind), call_id=event.call_id, event_id=event.event_id)
    elif events:
        call_ids = {stored.normalized.event.call_id for stored in events}
        if len(call_ids) == 1:
            fields["call_id"] = call_ids.pop()
    return fields


__all__ = ["message_fields"]

"""Message to storable unit: the events it yields, or the dead letter it becomes.

Nothing here touches the sink. A permanent problem (the message's own fault, or a bug in the
format module) becomes a `DeadLetter` holding the raw bytes, so it can be replayed after a fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import structlog

from consumer.errors import DETAIL_LIMIT, InvalidMessage, Reason, clip, describe
from consumer.formats import Format
from consumer.logs import message_context
from consumer.sinks.base import DeadLetter, StoredEvent
from consumer.sources.base import Message

log = structlog.get_logger("consumer.pipeline")


@dataclass(frozen=True, slots=True)
class Unit:
    """What one message puts in the sink's transaction."""

    message: Message
    events: tuple[StoredEvent, ...] = ()
    dead_letter: DeadLetter | None = None


def dead_letter(
    queue: str, message: Message, reason: str, error: str, seen_at: datetime
) -> DeadLetter:
    """The dead letter of `message`; `error` may quote the body (a format bug's exception, a
    value the database refused), so it is cut to `DETAIL_LIMIT` characters with its size."""
    return DeadLetter(
        queue=queue,
        message_id=message.id,
        reason=reason,
        error=clip(error, DETAIL_LIMIT, quote=False),
        payload=message.body,
        attempts=message.delivery_count,
        seen_at=seen_at,
    )


def prepare(
    message: Message,
    *,
    queue: str,
    fmt: Format,
    max_deliveries: int | None,
    received_at: datetime,
) -> Unit:
    """Parse a message into a unit; never raises for anything the message or format does.

    `max_deliveries=None` parses whatever the count (a replay is an operator's decision).
    The count is judged before parsing (a body that kills the process must stop coming back);
    a neighbour cannot raise it, since the keepalive never waits on normalization
    (`keepalive.KeepaliveThread`).
    """
    if max_deliveries is not None and message.delivery_count > max_deliveries:
        # Checked before parsing: a body that crashes the process must stop coming back.
        error = (
            f"delivered {message.delivery_count} times, more than max_deliveries {max_deliveries}"
        )
        letter = dead_letter(queue, message, Reason.MAX_DELIVERIES, error, received_at)
        return Unit(message, dead_letter=letter)
    try:
        normalized = fmt.parse(message.body)
        if not normalized:
            raise ValueError("the format returned no events")
    except InvalidMessage as exc:
        return Unit(
            message, dead_letter=dead_letter(queue, message, exc.reason, exc.detail, received_at)
        )
    except Exception as exc:  # a bug in a format module must not stop the queue
        with message_context(queue=queue, provider=str(fmt.provider), message_id=message.id):
            log.exception("format module failed: quarantining the message", format=fmt.name)
        error = f"{fmt.name}: {describe(exc)}"
        return Unit(
            message,
            dead_letter=dead_letter(queue, message, Reason.NORMALIZER_ERROR, error, received_at),
        )
    events = tuple(  # from a list: a generator costs more for the one event of most messages
        [
            StoredEvent(
                normalized=item, queue=queue, message_id=message.id, received_at=received_at
            )
            for item in normalized
        ]
    )
    return Unit(message, events=events)


__all__ = ["Unit", "dead_letter", "prepare"]

"""What formats of several providers share about events (`_decode.py` decodes bytes and fields)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from consumer.errors import InvalidMessage
from consumer.formats import _decode
from consumer.model import JsonObject, Kind, Normalized

STATE_TIME_FIELD: Mapping[Kind, str] = {
    Kind.CALL_INITIATED: "started_at",
    Kind.CALL_RINGING: "ringing_at",
    Kind.CALL_ANSWERED: "answered_at",
    Kind.CALL_ENDED: "ended_at",
}
"""The `*_at` field a call state's own time also fills: the moment the state began."""


def each_record(
    value: Any,
    parse_record: Callable[[JsonObject], Iterable[Normalized]],
    element: str = "record [{}]",
) -> list[Normalized]:
    """The events of a body holding one record or an array of them, in order.

    An error in one element of an array names the element (`element` spells it), so a dead
    letter says which.
    """
    events: list[Normalized] = []
    for index, record in enumerate(_decode.objects(value)):
        try:
            events.extend(parse_record(record))
        except InvalidMessage as exc:
            if isinstance(value, list):
                raise InvalidMessage(exc.reason, f"{element.format(index)}: {exc.detail}") from None
            raise
    return events

"""What the format modules share: body decoding, fields, times, and building the event.

The helpers live by job in `_bodies.py` (bytes to JSON within bounds), `_fields.py` (text,
numbers, objects) and `_times.py`; this module names them all for the format modules
(`_decode.text`, ...) and builds the event. Every helper raises `InvalidMessage` (never
`KeyError`, `ValueError`, ...) so that a format module built from them has exactly one failure
mode, which the pipeline turns into a dead letter.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any

from pydantic import ValidationError

from consumer.errors import InvalidMessage, Reason, clip
from consumer.formats._bodies import (
    MAX_BODY_BYTES,
    MAX_CONTAINERS,
    bounded,
    check_size,
    form_fields,
    load_json,
    load_mns_json,
    sound_json,
    unquote_plus,
)
from consumer.formats._fields import (
    compact,
    first,
    integer,
    lookup,
    obj,
    objects,
    required_text,
    text,
    type_name,
)
from consumer.formats._times import (
    SHANGHAI,
    epoch_auto,
    epoch_millis,
    plus_millis,
    read_utc_wall_time,
    shanghai_time,
    utc_wall_time,
)
from consumer.model import CallEvent

# The model's own validator: what `CallEvent(**fields)` runs, less __init__'s Python around
# it (a quarter of the event's validation, callgrind). Same events, same ValidationError.
_VALIDATE_EVENT = CallEvent.__pydantic_validator__.validate_python


def build(factory: Callable[..., CallEvent] = CallEvent, /, **fields: Any) -> CallEvent:
    """Build an event; a value the model refuses is the message's fault, so it is InvalidMessage."""
    try:
        if factory is CallEvent:
            event: CallEvent = _VALIDATE_EVENT(fields)
            return event
        return factory(**fields)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise InvalidMessage(
            Reason.BAD_FIELD, f"{clip(where, quote=False)}: {problem['msg']}"
        ) from None


def storable(event: CallEvent) -> CallEvent:
    """`event` if it serializes: pydantic refuses values nested deeper than ~250 levels."""
    if _plainly_serializable(event):
        return event
    try:
        event.model_dump_json()
    except ValueError as exc:  # PydanticSerializationError is a ValueError
        raise InvalidMessage(Reason.BAD_FIELD, f"event cannot be serialized: {exc}") from None
    return event


_EVENT_TEXTS = attrgetter(
    "event_id", "call_id", "caller", "callee", "provider_status", "recording_url", "correlation_id"
)
_SCALARS = (int, float, bool, type(None))


def _plainly_serializable(event: CallEvent) -> bool:
    """True when `model_dump_json` cannot fail: text encodes, extras hold only scalars.

    The check most events pass at a fraction of a serialization's cost; anything nested or
    unusual is left to the serialization itself.
    """
    texts = [text for text in _EVENT_TEXTS(event) if text is not None]
    texts += event.refs.keys()
    texts += event.refs.values()
    for key, value in event.extras.items():
        texts.append(key)
        if isinstance(value, str):
            texts.append(value)
        elif not isinstance(value, _SCALARS):
            return False
    joined = "".join(texts)  # one test in C: a lone surrogate stays one when joined
    return joined.isascii() or _encodes(joined)


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


__all__ = [
    "MAX_BODY_BYTES",
    "MAX_CONTAINERS",
    "SHANGHAI",
    "bounded",
    "build",
    "check_size",
    "compact",
    "epoch_auto",
    "epoch_millis",
    "first",
    "form_fields",
    "integer",
    "load_json",
    "load_mns_json",
    "lookup",
    "obj",
    "objects",
    "plus_millis",
    "read_utc_wall_time",
    "required_text",
    "shanghai_time",
    "sound_json",
    "storable",
    "text",
    "type_name",
    "unquote_plus",
    "utc_wall_time",
]

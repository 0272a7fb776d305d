"""One 7moor push record into one event (docs/formats.md F4.3-4.5), read by field group.

Every field a group maps is marked as taken; the record's other fields go to extras under their
own name, so nothing the vendor sends is lost.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from consumer.errors import InvalidMessage, Reason
from consumer.formats import _decode as d
from consumer.formats._common import STATE_TIME_FIELD
from consumer.formats.moor7_codes import (
    DURATION_EXTRAS,
    REFS,
    TIME_EXTRAS,
    call_direction,
    cdr_outcome,
    event_kind,
    hangup_by,
)
from consumer.model import (
    Direction,
    JsonObject,
    Kind,
    Normalized,
    Outcome,
    Provider,
    event_id,
    rfc3339,
)

FORMAT_NAME = "moor7.event"

# Agent pushes are about an agent, not a call: they need no call id.
_AGENT_KINDS = frozenset({Kind.AGENT_STATUS, Kind.AGENT_SESSION})

# Who the caller and the callee are, per direction: the first present of each tuple's keys.
_PARTIES: Mapping[Direction, tuple[tuple[str, ...], tuple[str, ...]]] = {
    Direction.OUTBOUND: (("displayNumber", "virtualNumber"), ("customerNumber",)),
    Direction.INBOUND: (("customerNumber",), ("trunkNumber", "hotLineNumber")),
}
# Which leg's start and answer are the call's ringing and answer, per direction.
_LEG_TIMES: Mapping[Direction, tuple[str, str]] = {
    Direction.OUTBOUND: ("customerStartTime", "customerAnswerTime"),
    Direction.INBOUND: ("agentStartTime", "agentAnswerTime"),
}

# A readable event id is used when its parts cannot contain the separator.
_ID_TOKEN = re.compile(r"[A-Za-z0-9_.]{1,64}")
_PART_TOKEN = re.compile(r"[A-Za-z0-9_.]{0,40}")


class _Reader:
    """A record's fields, remembering the ones taken by an event field."""

    def __init__(self, record: JsonObject) -> None:
        self.record = record
        self.used: set[str] = {"pushType", "callEvent"}

    def text(self, key: str) -> str | None:
        self.used.add(key)
        return d.text(self.record, key)

    def first(self, keys: tuple[str, ...]) -> str | None:
        """The first present of `keys`, taking them all."""
        return d.first(*[self.text(key) for key in keys])

    def time(self, key: str) -> datetime | None:
        self.used.add(key)
        return d.epoch_auto(self.record, key)

    def integer(self, key: str) -> int | None:
        self.used.add(key)
        return d.integer(self.record, key)


def parse_record(original: JsonObject) -> list[Normalized]:
    """The event of one push; the original (still wrapped) record is its payload."""
    record = _unwrap(original)
    kind = event_kind(record)
    reader = _Reader(record)
    push_type = reader.text("pushType")
    call_event = reader.text("callEvent")
    event_key, call_id, refs = _ids(reader, kind)
    direction = call_direction(reader.text("callType"))
    caller = callee = None
    if direction is not None:
        caller_keys, callee_keys = _PARTIES[direction]
        caller, callee = reader.first(caller_keys), reader.first(callee_keys)
    fields = _call_fields(reader, direction)
    occurred = _status(reader, kind, push_type, fields)
    event = d.build(
        event_id=_event_id(event_key, push_type, call_event, record),
        provider=Provider.MOOR7,
        kind=kind,
        call_id=call_id,
        # No time at all (the mediaFailreason sample has none): the moment we read it.
        occurred_at=occurred or datetime.now(UTC).replace(microsecond=0),
        caller=caller,
        callee=callee,
        direction=direction,
        refs=d.compact(refs),
        extras=_extras(reader, push_type, call_event),
        **fields,
    )
    return [Normalized(d.storable(event), original)]


def _unwrap(record: JsonObject) -> JsonObject:
    """The customer-answered sample's `{"content": {...}, "uniqueId": ...}` as one flat record.

    Inner keys win; outer ones (the `uniqueId` that stands for the event id) are added.
    """
    content = record.get("content")
    if not isinstance(content, dict):
        return record
    merged = dict(content)
    for key, item in record.items():
        if key != "content" and key not in merged:
            merged[key] = item
    return merged


def _ids(reader: _Reader, kind: Kind) -> tuple[str | None, str | None, dict[str, Any]]:
    """The provider's event id, the call id and the refs (F4.3-4.5)."""
    event_key = reader.first(("eventUniqueId", "uniqueId"))
    unique_id = d.text(reader.record, "uniqueId")
    super_unique_id = reader.text("superUniqueId")
    call_id = d.first(reader.text("callUniqueId"), super_unique_id)
    if call_id is None and kind not in _AGENT_KINDS:
        # Every call push of the document carries callUniqueId; without it the event would be a
        # call event of no call, merging into nothing (strict shapes).
        raise InvalidMessage(
            Reason.MISSING_FIELD,
            f"callUniqueId is missing or empty in a {kind} push (a call event)",
        )
    refs: dict[str, Any] = {
        # whichever of them is not already the event id or the call id
        "unique_id": unique_id if unique_id != event_key else None,
        "super_unique_id": super_unique_id if super_unique_id != call_id else None,
    }
    for key, name in REFS.items():
        refs[name] = reader.text(key)
    refs["group_ids"] = _joined(reader.record, "groupIdList")
    reader.used.add("groupIdList")
    return event_key, call_id, refs


def _call_fields(reader: _Reader, direction: Direction | None) -> dict[str, Any]:
    """The call's times, its duration and who hung up: the fields every kind may carry."""
    fields: dict[str, Any] = {
        "started_at": reader.time("startTime"),
        "ended_at": reader.time("hangupTime"),
        "duration_seconds": reader.integer("bridgeDuration"),
        "recording_url": reader.text("recordFileUrl"),
        "correlation_id": reader.text("actionId"),
    }
    if direction is not None:
        ringing, answered = _LEG_TIMES[direction]
        fields["ringing_at"] = reader.time(ringing)
        fields["answered_at"] = reader.time(answered)
    fields["hangup_by"] = hangup_by(d.text(reader.record, "hangUpSide"), direction)
    if fields["hangup_by"] is not None:
        reader.used.add("hangUpSide")
    return fields


def _status(
    reader: _Reader, kind: Kind, push_type: str | None, fields: dict[str, Any]
) -> datetime | None:
    """Adds the outcome and provider status to `fields`; returns when the event occurred."""
    status_time = reader.time("statusTime")
    if kind is Kind.CALL_RECORD:
        status = reader.text("status")
        fields["outcome"] = cdr_outcome(status, d.text(reader.record, "failureReason"))
        fields["provider_status"] = status
        return d.first(
            reader.time("endTime"), fields["ended_at"], fields["started_at"], status_time
        )
    if kind is Kind.AGENT_STATUS:
        fields["provider_status"] = reader.text("statusNumber")
    elif kind is Kind.AGENT_SESSION:
        fields["provider_status"] = push_type
    elif kind is Kind.CALL_ENDED and push_type and push_type.casefold() == "mediafailreason":
        reason = reader.text("preMediaFailureReason")
        fields["provider_status"] = reason
        fields["outcome"] = Outcome.BUSY if reason == "onThePhone" else Outcome.UNKNOWN
    elif kind is Kind.CALL_ANSWERED:
        fields["outcome"] = Outcome.ANSWERED
    # the push's own time is the moment of the state it reports
    moment = STATE_TIME_FIELD.get(kind)
    if moment is not None and fields.get(moment) is None:
        fields[moment] = status_time
    return status_time


def _extras(reader: _Reader, push_type: str | None, call_event: str | None) -> dict[str, Any]:
    """Ours first; then every field not taken, and the push's custom `extras`, never over ours."""
    record = reader.record
    extras: dict[str, Any] = {"pushType": push_type, "callEvent": call_event}
    if "statusName" in record:
        reader.used.add("statusName")
        extras["status_name"] = d.text(record, "statusName")
    for key, item in _other_extras(record, reader.used).items():
        extras[f"unknown.{key}" if key in extras else key] = item  # never hide one of ours
    extras = d.compact(extras)
    for key, item in _custom_extras(record.get("extras")).items():
        if item not in (None, "", [], {}):
            extras[f"extras.{key}" if key in extras else key] = item
    return extras


def _other_extras(record: JsonObject, used: set[str]) -> dict[str, Any]:
    """Every field not mapped above, under its own name: times as RFC 3339, durations as ints."""
    extras: dict[str, Any] = {}
    for key, item in record.items():
        if key in used or key == "extras":
            continue
        if key in TIME_EXTRAS:
            moment = d.epoch_auto(record, key)
            extras[key] = None if moment is None else rfc3339(moment)
        elif key in DURATION_EXTRAS:
            extras[key] = d.integer(record, key)
        else:
            extras[key] = item
    return extras


def _custom_extras(value: Any) -> dict[str, Any]:
    """The push's own `extras` (custom outbound parameters): an object, or `""` when none."""
    if isinstance(value, dict):
        return value
    return {"extras": value}


def _event_id(key: str | None, push_type: str | None, call_event: str | None, record: Any) -> str:
    """`moor7-<eventUniqueId>-<pushType>-<callEvent>` (F0.2, F4.3), else a hash.

    The vendor reuses one `eventUniqueId` for the inbound ring and hangup samples, so the id
    alone would merge two events. Parts that could hold the `-` separator are hashed instead.
    """
    parts = (push_type or "", call_event or "")
    if key is not None and _ID_TOKEN.fullmatch(key) and all(map(_PART_TOKEN.fullmatch, parts)):
        return f"moor7-{key}-{parts[0]}-{parts[1]}"
    if key is not None:
        return "moor7-" + event_id(FORMAT_NAME, "event", key, *parts)
    # No provider id at all: the fields that tell two pushes of one call apart.
    content = (
        d.text(record, "callUniqueId") or d.text(record, "superUniqueId"),
        d.text(record, "agentNumber"),
        d.text(record, "statusTime"),
        d.text(record, "statusNumber"),
        d.text(record, "endTime"),
        d.text(record, "status"),
    )
    return "moor7-" + event_id(FORMAT_NAME, "content", *parts, *content)


def _joined(record: Mapping[str, Any], key: str) -> str | None:
    """A string array (`groupIdList`) as one comma-separated ref; `[""]` counts as absent."""
    value = record.get(key)
    if value is None or value == "":
        return None
    items = value if isinstance(value, list) else [value]
    texts = [d.text({key: item}, key) for item in items]
    return ",".join(text for text in texts if text is not None) or None

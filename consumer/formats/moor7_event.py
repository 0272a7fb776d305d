"""`moor7.event`: 7moor (容联七陌) v7 event push, every `pushType` (docs/formats.md F4).

The vendor's samples are uneven: some lack `pushType`, one is wrapped in `content`, one names the
call `superUniqueId`, and two different events share one `eventUniqueId`. So the kind falls back
to `callEvent`, the wrapper is opened, and the event id keeps `pushType` and `callEvent` with the
provider's id.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from consumer.errors import InvalidMessage, Reason, clip
from consumer.formats import Format
from consumer.formats import _decode as d
from consumer.model import (
    Direction,
    HangupBy,
    JsonObject,
    Kind,
    Normalized,
    Outcome,
    Provider,
    event_id,
    rfc3339,
)

FORMAT_NAME = "moor7.event"

PUSH_KINDS: dict[str, Kind] = {
    "dialoutring": Kind.CALL_RINGING,
    "dialouthangup": Kind.CALL_ENDED,
    "callstatus": Kind.AGENT_STATUS,
    "cdr": Kind.CALL_RECORD,
    "mediafailreason": Kind.CALL_ENDED,
    "login": Kind.AGENT_SESSION,
    "logout": Kind.AGENT_SESSION,
}
CALL_EVENT_KINDS: dict[str, Kind] = {
    "calling": Kind.CALL_INITIATED,
    "ring": Kind.CALL_RINGING,
    "link": Kind.CALL_ANSWERED,
    "hangup": Kind.CALL_ENDED,
}
STATUS_OUTCOMES: dict[str, Outcome] = {
    "ANSWER": Outcome.ANSWERED,
    "CALL_TRANSFER": Outcome.ANSWERED,
    "CUSTOMER_NO_ANSWER": Outcome.NO_ANSWER,
    "AGENT_NO_ANSWER": Outcome.NO_ANSWER,
    "QUEUE_ABANDON": Outcome.CANCELLED,
    "IVR": Outcome.CANCELLED,
}
FAILURE_OUTCOMES: dict[str, Outcome] = {
    "forbidden": Outcome.BLOCKED,
    "serviceunavailable": Outcome.FAILED,
    "cancel": Outcome.CANCELLED,
    "requesttimeout": Outcome.NO_ANSWER,
    "decline": Outcome.REJECTED,
    "unknow": Outcome.UNKNOWN,
}

# Agent pushes are about an agent, not a call: they need no call id.
_AGENT_KINDS = frozenset({Kind.AGENT_STATUS, Kind.AGENT_SESSION})

# Ids copied to refs (F4.3–4.5), under our snake_case names.
REFS: dict[str, str] = {
    "accountId": "account_id",
    "agentNumber": "agent_number",
    "agentId": "agent_id",
    "queueNumber": "queue_number",
    "taskId": "task_id",
    "ivrId": "ivr_id",
    "satisfyIvrId": "satisfy_ivr_id",
    "customerId": "customer_id",
    "_id": "record_id",
    "id": "row_id",
    "callId": "channel_call_id",
    "relativeCallUniqueId": "relative_call_id",
}
# Wall times (or epoch values) kept in extras, converted to RFC 3339 UTC.
TIME_EXTRAS = frozenset(
    {
        "createTime",
        "saveTime",
        "ivrTime",
        "joinQueueTime",
        "satisfyStartTime",
        "satisfyEndTime",
        "systemAnswerTime",
        "bridgeTime",
        "customerStartTime",
        "customerAnswerTime",
        "agentStartTime",
        "agentAnswerTime",
        "startTime",
        "hangupTime",
        "endTime",
        "statusTime",
    }
)
DURATION_EXTRAS = frozenset(
    {
        "totalDuration",
        "waitDuration",
        "agentRingDuration",
        "customerRingDuration",
        "playNumberDuration",
        "satisfyDuration",
        "recordingDuration",
    }
)
# A readable event id is used when its parts cannot contain the separator.
_ID_TOKEN = re.compile(r"[A-Za-z0-9_.]{1,64}")
_PART_TOKEN = re.compile(r"[A-Za-z0-9_.]{0,40}")
_FORM_FIELD = re.compile(r"[A-Za-z0-9_.~*%+\[\]-]+=")


def parse(body: bytes) -> list[Normalized]:
    """One push (or an array of them) into one event each."""
    value = _load(body)
    events: list[Normalized] = []
    for index, record in enumerate(d.objects(value)):
        try:
            events.append(_parse_record(record))
        except InvalidMessage as exc:
            if isinstance(value, list):
                raise InvalidMessage(exc.reason, f"record [{index}]: {exc.detail}") from None
            raise
    return events


FORMAT = Format(name=FORMAT_NAME, provider=Provider.MOOR7, parse=parse, accepts_form=True)


def _load(body: bytes) -> Any:
    """JSON (or base64 of JSON), else a form body whose single field holds JSON (F4.1)."""
    try:
        return d.load_mns_json(body)
    except InvalidMessage:
        form = _form_text(body)
        if form is None:
            raise
    return _load_form(form)


def _form_text(body: bytes) -> str | None:
    """The body as text if it looks like `application/x-www-form-urlencoded`, else None."""
    stripped = body.strip()
    if not stripped or stripped[:1] in b'{["':
        return None
    try:
        text = stripped.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _FORM_FIELD.match(text) or text[:3].upper() in ("%7B", "%5B"):
        return text
    return None


def _load_form(text: str) -> Any:
    try:
        if "=" in text:
            count, pairs = d.form_fields(text)
        else:  # `%7B...%7D` alone: the JSON itself, urlencoded, with no field name
            count, pairs = 1, [("", d.unquote_plus(text))]
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidMessage(  # parse_qsl's error quotes the whole field
            Reason.NOT_JSON, f"body is neither JSON nor a form: {clip(str(exc), quote=False)}"
        ) from None
    if count != 1:
        names = ", ".join(clip(name) for name, _ in pairs)
        raise InvalidMessage(
            Reason.BAD_FORM, f"form body has {count} fields ({names}); expected one holding JSON"
        )
    name, raw = pairs[0]
    try:
        return d.load_json(raw.encode("utf-8", "surrogatepass"))
    except InvalidMessage as exc:
        raise InvalidMessage(exc.reason, f"form field {clip(name)}: {exc.detail}") from None


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


def _kind(record: JsonObject) -> Kind:
    push_type = d.text(record, "pushType")
    call_event = d.text(record, "callEvent")
    if push_type is not None:
        kind = PUSH_KINDS.get(push_type.casefold())
        if kind is None and call_event is not None:
            kind = CALL_EVENT_KINDS.get(call_event.casefold())
        if kind is None:
            raise InvalidMessage(
                Reason.UNKNOWN_EVENT_TYPE,
                f"pushType {clip(push_type)} is not one of {', '.join(PUSH_KINDS)}"
                + ("" if call_event is None else f", and callEvent {clip(call_event)} is unknown"),
            )
        return kind
    if call_event is not None:
        kind = CALL_EVENT_KINDS.get(call_event.casefold())
        if kind is None:
            raise InvalidMessage(
                Reason.UNKNOWN_EVENT_TYPE,
                f"callEvent {clip(call_event)} is not one of {', '.join(CALL_EVENT_KINDS)}",
            )
        return kind
    if d.text(record, "cdrType") is not None:
        return Kind.CALL_RECORD
    raise InvalidMessage(Reason.MISSING_FIELD, "neither pushType nor callEvent is present")


def _parse_record(original: JsonObject) -> Normalized:
    record = _unwrap(original)
    kind = _kind(record)
    used: set[str] = {"pushType", "callEvent"}

    def take(key: str) -> str | None:
        used.add(key)
        return d.text(record, key)

    def time(key: str) -> datetime | None:
        used.add(key)
        return d.epoch_auto(record, key)

    push_type = take("pushType")
    call_event = take("callEvent")
    event_key = d.first(take("eventUniqueId"), take("uniqueId"))
    unique_id = d.text(record, "uniqueId")
    call_unique_id = take("callUniqueId")
    super_unique_id = take("superUniqueId")
    call_id = d.first(call_unique_id, super_unique_id)
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
        refs[name] = take(key)
    refs["group_ids"] = _joined(record, "groupIdList")
    used.add("groupIdList")

    direction = _direction(take("callType"))
    caller = callee = None
    if direction is Direction.OUTBOUND:
        caller = d.first(take("displayNumber"), take("virtualNumber"))
        callee = take("customerNumber")
    elif direction is Direction.INBOUND:
        caller = take("customerNumber")
        callee = d.first(take("trunkNumber"), take("hotLineNumber"))

    fields: dict[str, Any] = {
        "started_at": time("startTime"),
        "ended_at": time("hangupTime"),
        "duration_seconds": _integer(record, "bridgeDuration", used),
        "recording_url": take("recordFileUrl"),
        "correlation_id": take("actionId"),
    }
    if direction is Direction.OUTBOUND:
        fields["ringing_at"] = time("customerStartTime")
        fields["answered_at"] = time("customerAnswerTime")
    elif direction is Direction.INBOUND:
        fields["ringing_at"] = time("agentStartTime")
        fields["answered_at"] = time("agentAnswerTime")

    hangup_side = d.text(record, "hangUpSide")
    fields["hangup_by"] = _hangup_by(hangup_side, direction)
    if fields["hangup_by"] is not None:
        used.add("hangUpSide")

    status_time = time("statusTime")
    extras: dict[str, Any] = {"pushType": push_type, "callEvent": call_event}
    if kind is Kind.CALL_RECORD:
        status = take("status")
        failure = d.text(record, "failureReason")
        fields["outcome"] = _cdr_outcome(status, failure)
        fields["provider_status"] = status
        occurred = d.first(time("endTime"), fields["ended_at"], fields["started_at"], status_time)
    else:
        occurred = status_time
        if kind is Kind.AGENT_STATUS:
            fields["provider_status"] = take("statusNumber")
        elif kind is Kind.AGENT_SESSION:
            fields["provider_status"] = push_type
        elif kind is Kind.CALL_ENDED and push_type and push_type.casefold() == "mediafailreason":
            reason = take("preMediaFailureReason")
            fields["provider_status"] = reason
            fields["outcome"] = Outcome.BUSY if reason == "onThePhone" else Outcome.UNKNOWN
        elif kind is Kind.CALL_ANSWERED:
            fields["outcome"] = Outcome.ANSWERED
        # the push's own time is the moment of the state it reports
        moment = {
            Kind.CALL_INITIATED: "started_at",
            Kind.CALL_RINGING: "ringing_at",
            Kind.CALL_ANSWERED: "answered_at",
            Kind.CALL_ENDED: "ended_at",
        }.get(kind)
        if moment is not None and fields.get(moment) is None:
            fields[moment] = status_time
    if "statusName" in record:
        used.add("statusName")
        extras["status_name"] = d.text(record, "statusName")
    for key, item in _other_extras(record, used).items():
        extras[f"unknown.{key}" if key in extras else key] = item  # never hide one of ours
    extras = d.compact(extras)
    for key, item in _custom_extras(record.get("extras")).items():
        if item not in (None, "", [], {}):
            extras[f"extras.{key}" if key in extras else key] = item

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
        extras=extras,
        **fields,
    )
    return Normalized(d.storable(event), original)


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


def _direction(call_type: str | None) -> Direction | None:
    if call_type is None:
        return None
    return Direction.INBOUND if call_type.casefold() == "incoming" else Direction.OUTBOUND


def _hangup_by(side: str | None, direction: Direction | None) -> HangupBy | None:
    folded = (side or "").casefold()
    if folded == "agent":
        return HangupBy.AGENT
    if folded == "customer" and direction is not None:
        return HangupBy.CALLEE if direction is Direction.OUTBOUND else HangupBy.CALLER
    return None


def _cdr_outcome(status: str | None, failure: str | None) -> Outcome:
    """F4.5: `status` decides; `failureReason` refines a no-answer, or stands in for `status`."""
    outcome = STATUS_OUTCOMES.get((status or "").upper())
    refined = None if failure is None else FAILURE_OUTCOMES.get(failure.casefold())
    if outcome is Outcome.NO_ANSWER or (status is None and outcome is None):
        return refined or outcome or Outcome.UNKNOWN
    return outcome or Outcome.UNKNOWN


def _integer(record: Mapping[str, Any], key: str, used: set[str]) -> int | None:
    used.add(key)
    return d.integer(record, key)


def _joined(record: Mapping[str, Any], key: str) -> str | None:
    """A string array (`groupIdList`) as one comma-separated ref; `[""]` counts as absent."""
    value = record.get(key)
    if value is None or value == "":
        return None
    items = value if isinstance(value, list) else [value]
    texts = [d.text({key: item}, key) for item in items]
    return ",".join(text for text in texts if text is not None) or None

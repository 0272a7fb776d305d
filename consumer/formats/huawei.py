"""What Huawei Voice Call and Private Number share (docs/formats.md F3).

Both products run on the same CallEnabler platform: the same two envelopes (F3.2), the same UTC
clock (F0.1), the same Q.850 and SIP vocabularies (F3.8) and the same fee-record layout (F3.5).
They differ in their code tables and in which leg of a fee record is the call's caller, callee
and answer; each product module states those in a `Product` and this module does the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from consumer.errors import InvalidMessage, Reason, clip
from consumer.formats import _decode
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

PUSH_ANSWER = b'{"resultcode":"0","resultdesc":"Success"}'
"""The 200 body of a stored push: Voice Call fee judges success by resultcode "0"; the other
Huawei pushes ignore the body."""

# F3.3 eventType → kind (proposal). `fee` is handled apart: one call.record per feeLst entry.
STATUS_KINDS: Mapping[str, Kind] = {
    "callin": Kind.CALL_INITIATED,
    "callout": Kind.CALL_INITIATED,
    "alerting": Kind.CALL_RINGING,
    "answer": Kind.CALL_ANSWERED,
    "disconnect": Kind.CALL_ENDED,
    "collectInfo": Kind.CALL_INPUT,
}
FEE = "fee"

# statusInfo keys that become normalized fields; every other key is kept in extras.
_STATUS_NORMALIZED = frozenset(
    {"sessionId", "timestamp", "stateCode", "caller", "called", "digitInfo", "userData"}
    | {"subscriptionId"}
)

# Which `*_at` field a status event's timestamp also fills.
_STATUS_TIME_FIELD: Mapping[Kind, str] = {
    Kind.CALL_INITIATED: "started_at",
    Kind.CALL_RINGING: "ringing_at",
    Kind.CALL_ANSWERED: "answered_at",
    Kind.CALL_ENDED: "ended_at",
}

# F3.8 Q.850 (proposal). 0 (not applicable), 16 and 31 (normal clearing) decide nothing; any
# other cause in the standard's range 1-127 is a network or resource failure.
Q850_NEXT_RULE = frozenset({0, 16, 31})
Q850: Mapping[int, Outcome] = {
    17: Outcome.BUSY,
    18: Outcome.NO_ANSWER,
    19: Outcome.NO_ANSWER,
    20: Outcome.UNREACHABLE,
    21: Outcome.REJECTED,
    1: Outcome.INVALID_NUMBER,
    22: Outcome.INVALID_NUMBER,
    28: Outcome.INVALID_NUMBER,
    27: Outcome.UNREACHABLE,
}
_Q850_RANGE = range(1, 128)

# A fee push merges at most 50 CDRs (Voice Call and Private Number fee-notification pages).
MAX_FEE_RECORDS = 50

# F3.8 SIP final codes (proposal); any other 400-699 is a failure, anything else decides nothing.
SIP: Mapping[int, Outcome] = {
    486: Outcome.BUSY,
    600: Outcome.BUSY,
    480: Outcome.UNREACHABLE,
    404: Outcome.INVALID_NUMBER,
    484: Outcome.INVALID_NUMBER,
    604: Outcome.INVALID_NUMBER,
    603: Outcome.REJECTED,
    487: Outcome.CANCELLED,
    408: Outcome.NO_ANSWER,
    403: Outcome.BLOCKED,
}
SIP_FAILURES = range(400, 700)

# F3.3 callRelDirection (Private Number, when Huawei support enables it).
CALL_REL_DIRECTION: Mapping[str, HangupBy] = {"1": HangupBy.CALLER, "2": HangupBy.CALLEE}

# F3.5 serviceType of each product, to refuse a record pushed to the other product's queue.
SERVICE_TYPES: Mapping[str, str] = {
    "001": "Voice Call notify / verification code",
    "002": "Voice Call callback",
    "003": "Private Number AX",
    "004": "Private Number AXB or X",
    "005": "Private Number AXE",
    "007": "Private Number AXYB",
}

# Fee fields every product maps the same way (F3.5): record key → refs key.
FEE_REFS: Mapping[str, str] = {
    "spId": "sp_id",
    "appKey": "app_key",
    "icid": "icid",
    "bindNum": "bind_num",
    "subscriptionId": "subscription_id",
}

_MAX_CODE_DIGITS = 9


def code(value: str | None) -> int | None:
    """A numeric provider code from its text, or None when it is absent or not a whole number.

    A code that is not a number is an unknown code, which gives `unknown`, never an error.
    """
    if value is None:
        return None
    digits = value[1:] if value[:1] in "+-" else value
    if not (digits.isascii() and digits.isdigit()) or len(digits) > _MAX_CODE_DIGITS:
        return None
    return int(value)


def q850_outcome(cause: int | None) -> Outcome | None:
    """F3.8: the outcome a Q.850 cause implies, None to go on to the next rule."""
    if cause is None or cause in Q850_NEXT_RULE or cause not in _Q850_RANGE:
        return None
    return Q850.get(cause, Outcome.FAILED)


def sip_outcome(status: int | None) -> Outcome | None:
    """F3.8: the outcome a SIP final code implies, None to go on to the next rule."""
    if status is None or status not in SIP_FAILURES:
        return None
    return SIP.get(status, Outcome.FAILED)


def huawei_time(record: Mapping[str, Any], key: str) -> datetime | None:
    """A Huawei time: a UTC `yyyy-MM-dd HH:mm:ss`, double spaces allowed (F0.1).

    The status `timestamp` is documented as a "UNIX timestamp" although every sample is the
    wall-time form; 10 or 13 digits are read as epoch seconds or milliseconds just in case.
    """
    raw = _decode.text(record, key)
    if raw is not None and raw.isascii() and raw.isdigit() and len(raw) in (10, 13):
        return _decode.epoch_millis({key: raw if len(raw) == 13 else raw + "000"}, key)
    return _decode.utc_wall_time(record, key)


def _required_time(record: Mapping[str, Any], key: str) -> datetime:
    value = huawei_time(record, key)
    if value is None:
        raise InvalidMessage(Reason.MISSING_FIELD, f"{key} is missing or empty")
    return value


@dataclass(frozen=True, slots=True)
class Legs:
    """How one fee record reads for its product: which keys are the call's parties and times."""

    caller: str | None = None
    callee: str | None = None
    direction: Direction | None = None
    # Keys for started_at, first present wins.
    started: tuple[str, ...] = ()
    ringing: str | None = None
    answered: str | None = None
    # Q.850 causes of the failed leg, most relevant first (F3.5 rule 2).
    q850: tuple[str, ...] = ()
    # The key that stands for refs.bind_num when bindNum is absent (Private Number: calleeNum).
    bind_fallback: str | None = None


@dataclass(frozen=True, slots=True)
class Product:
    """The product-specific half of a Huawei format (docs/formats.md F3.5-3.7)."""

    format_name: str
    provider: Provider
    service_types: frozenset[str]
    # The direction of every status event, when the product has only one (Voice: outbound).
    status_direction: Direction | None
    # stateCode → outcome (F3.6 / F3.7); None for a code the table does not know.
    state_outcome: Callable[[int], Outcome | None]
    # ulFailReason → outcome; None for a code the table does not know.
    fail_outcome: Callable[[int], Outcome | None]
    # ulFailReason → who hung up (Voice 1001-1004), None otherwise.
    fail_hangup_by: Callable[[int], HangupBy | None]
    legs: Callable[[JsonObject], Legs]


def parse(product: Product, body: bytes) -> list[Normalized]:
    """One push body: a status event, or a fee push giving one `call.record` per record."""
    envelope = _decode.load_mns_json(body)
    if not isinstance(envelope, dict):
        raise InvalidMessage(
            Reason.NOT_OBJECT,
            f"body is {_decode.type_name(envelope)}; Huawei pushes one "
            '{"eventType": ..., "statusInfo" | "feeLst": ...} object',
        )
    event_type = _decode.required_text(envelope, "eventType")
    if event_type == FEE:
        return _fee_push(product, envelope)
    kind = STATUS_KINDS.get(event_type)
    if kind is None:
        raise InvalidMessage(
            Reason.UNKNOWN_EVENT_TYPE,
            f"eventType {clip(event_type)} is not one of {', '.join([*STATUS_KINDS, FEE])}",
        )
    status = _decode.obj(envelope, "statusInfo")
    try:
        return [_status_event(product, envelope, event_type, kind, status)]
    except InvalidMessage as exc:
        raise InvalidMessage(exc.reason, f"statusInfo.{exc.detail}") from None


def _envelope_extras(
    envelope: JsonObject, keys: tuple[str, ...], taken: Mapping[str, Any]
) -> dict[str, Any]:
    """Undocumented envelope keys, kept under their own name unless the record has it too."""
    extras: dict[str, Any] = {}
    for key, value in envelope.items():
        if key in keys:
            continue
        extras[f"envelope.{key}" if key in taken else key] = value
    return extras


def _status_event(
    product: Product, envelope: JsonObject, event_type: str, kind: Kind, status: JsonObject
) -> Normalized:
    session_id = _decode.required_text(status, "sessionId")
    occurred = _required_time(status, "timestamp")
    state_code = _decode.text(status, "stateCode")
    caller = _decode.text(status, "caller")
    callee = _decode.text(status, "called")
    digits = _decode.text(status, "digitInfo")
    rel_direction = _decode.text(status, "callRelDirection")
    outcome = None
    if state_code is not None:
        number = code(state_code)
        known = None if number is None else product.state_outcome(number)
        outcome = known or Outcome.UNKNOWN

    extras: dict[str, Any] = {"eventType": event_type}
    extras.update({key: value for key, value in status.items() if key not in _STATUS_NORMALIZED})
    extras["dtmf"] = digits
    extras.update(_envelope_extras(envelope, ("eventType", "statusInfo"), extras))
    times = {_STATUS_TIME_FIELD[kind]: occurred} if kind in _STATUS_TIME_FIELD else {}
    # Extended beyond F3.2's key: caller/called split the A- and B-leg events of a callback that
    # share a second, digitInfo splits two inputs in one second. A re-push repeats all of them.
    key = ("status", session_id, event_type, rfc3339(occurred), state_code, caller, callee, digits)
    event = _decode.build(
        event_id=event_id(product.format_name, *key),
        provider=product.provider,
        kind=kind,
        call_id=session_id,
        occurred_at=occurred,
        caller=caller,
        callee=callee,
        direction=product.status_direction,
        outcome=outcome,
        provider_status=state_code,
        hangup_by=_decode.lookup(CALL_REL_DIRECTION, rel_direction, None),
        correlation_id=_decode.text(status, "userData"),
        refs=_decode.compact({"subscription_id": _decode.text(status, "subscriptionId")}),
        extras=_decode.compact(extras),
        **times,
    )
    return Normalized(event=_decode.storable(event), payload=envelope)


def _fee_push(product: Product, envelope: JsonObject) -> list[Normalized]:
    if "feeLst" not in envelope or envelope["feeLst"] is None:
        raise InvalidMessage(Reason.MISSING_FIELD, "feeLst is missing in a fee push")
    # Documented as a list of 1 to 50 records (both products' fee pages; the official demos
    # check feeLst.length): an object or a longer list contradicts the document.
    value = envelope["feeLst"]
    if not isinstance(value, list):
        raise InvalidMessage(
            Reason.NOT_OBJECT,
            f"feeLst must be an array of 1 to 50 records, not {_decode.type_name(value)}",
        )
    if len(value) > MAX_FEE_RECORDS:
        raise InvalidMessage(
            Reason.BAD_FIELD, f"feeLst holds {len(value)} records; the document allows at most 50"
        )
    records = _decode.objects(value, "feeLst")
    events = []
    for index, record in enumerate(records):
        try:
            events.append(_fee_record(product, envelope, record))
        except InvalidMessage as exc:
            raise InvalidMessage(exc.reason, f"feeLst[{index}].{exc.detail}") from None
    return events


def _check_product(product: Product, record: JsonObject) -> None:
    service_type = _decode.text(record, "serviceType")
    if (
        service_type is not None
        and service_type in SERVICE_TYPES
        and service_type not in product.service_types
    ):
        raise InvalidMessage(
            Reason.WRONG_PRODUCT,
            f"serviceType {service_type} is a {SERVICE_TYPES[service_type]} record, "
            f"not {product.format_name}; check the queue's format",
        )


def fee_outcome(
    product: Product, record: JsonObject, legs: Legs, answered: datetime | None
) -> tuple[Outcome, str | None]:
    """F3.5: answer time, then Q.850, then SIP, then ulFailReason / stateCode, then unknown.

    Returns the outcome and the key of the provider status (ulFailReason, else stateCode).
    """
    fail_reason = _decode.text(record, "ulFailReason")
    state_code = _decode.text(record, "stateCode")
    status_key = (
        "ulFailReason"
        if fail_reason is not None
        else "stateCode"
        if state_code is not None
        else None
    )
    if answered is not None:
        return Outcome.ANSWERED, status_key
    for key in legs.q850:
        outcome = q850_outcome(code(_decode.text(record, key)))
        if outcome is not None:
            return outcome, status_key
    outcome = sip_outcome(code(_decode.text(record, "sipStatusCode")))
    if outcome is not None:
        return outcome, status_key
    for value, table in ((fail_reason, product.fail_outcome), (state_code, product.state_outcome)):
        number = code(value)
        outcome = None if number is None else table(number)
        if outcome is not None:
            return outcome, status_key
    return Outcome.UNKNOWN, status_key


def _fee_record(product: Product, envelope: JsonObject, record: JsonObject) -> Normalized:
    session_id = _decode.required_text(record, "sessionId")
    _check_product(product, record)
    legs = product.legs(record)
    used = {"sessionId", "callEndTime", "userData", "recordFileDownloadUrl", *FEE_REFS}

    def take(key: str | None) -> str | None:
        if key is None:
            return None
        used.add(key)
        return _decode.text(record, key)

    def take_time(key: str | None) -> datetime | None:
        if key is None:
            return None
        used.add(key)
        return huawei_time(record, key)

    ended = huawei_time(record, "callEndTime")
    # failTime is otherwise an extra, kept as sent: read it only when it has to stand in.
    occurred = ended if ended is not None else huawei_time(record, "failTime")
    if occurred is None:
        raise InvalidMessage(
            Reason.MISSING_FIELD, "callEndTime is missing or empty (and no failTime)"
        )
    started_key = next((key for key in legs.started if huawei_time(record, key)), None)
    started = take_time(started_key)
    ringing = take_time(legs.ringing)
    answered = take_time(legs.answered)
    outcome, status_key = fee_outcome(product, record, legs, answered)
    provider_status = take(status_key)

    duration = None
    if answered is not None and ended is not None:
        seconds = int((ended - answered).total_seconds())
        duration = seconds if seconds >= 0 else None

    fail_code = code(_decode.text(record, "ulFailReason"))
    hangup_by = _decode.first(
        None if fail_code is None else product.fail_hangup_by(fail_code),
        _decode.lookup(CALL_REL_DIRECTION, _decode.text(record, "callRelDirection"), None),
    )

    refs = {ref: _decode.text(record, key) for key, ref in FEE_REFS.items()}
    if refs["bind_num"] is None:
        refs["bind_num"] = take(legs.bind_fallback)
    caller = take(legs.caller)
    callee = take(legs.callee)
    extras: dict[str, Any] = {key: value for key, value in record.items() if key not in used}
    extras.update(_envelope_extras(envelope, ("eventType", "feeLst"), extras))

    icid = refs["icid"]
    # F3.2 proposal; the separate slots keep an icid from ever equalling an end time.
    key = ("fee", session_id, icid, None if icid else rfc3339(occurred))
    event = _decode.build(
        event_id=event_id(product.format_name, *key),
        provider=product.provider,
        kind=Kind.CALL_RECORD,
        call_id=session_id,
        occurred_at=occurred,
        caller=caller,
        callee=callee,
        direction=legs.direction,
        started_at=started,
        ringing_at=ringing,
        answered_at=answered,
        ended_at=ended,
        duration_seconds=duration,
        outcome=outcome,
        provider_status=provider_status,
        hangup_by=hangup_by,
        recording_url=_decode.text(record, "recordFileDownloadUrl"),
        correlation_id=_decode.text(record, "userData"),
        refs=_decode.compact(refs),
        extras=_decode.compact(extras),
    )
    return Normalized(event=_decode.storable(event), payload=record)

"""Huawei fee pushes (docs/formats.md F3.5): one `call.record` per CDR of `feeLst`.

Both products share the layout; their `Product` says which leg is the call's caller, callee and
answer, and which code tables decide the outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from consumer.errors import InvalidMessage, Reason
from consumer.formats import _decode
from consumer.formats.huawei_codes import (
    CALL_REL_DIRECTION,
    SERVICE_TYPES,
    code,
    q850_outcome,
    sip_outcome,
)
from consumer.formats.huawei_product import Legs, Product, envelope_extras, event, huawei_time
from consumer.model import JsonObject, Kind, Normalized, Outcome, rfc3339

# A fee push merges at most 50 CDRs (Voice Call and Private Number fee-notification pages).
MAX_FEE_RECORDS = 50

# Fee fields every product maps the same way (F3.5): record key → refs key.
FEE_REFS: Mapping[str, str] = {
    "spId": "sp_id",
    "appKey": "app_key",
    "icid": "icid",
    "bindNum": "bind_num",
    "subscriptionId": "subscription_id",
}


def fee_push(product: Product, envelope: JsonObject) -> list[Normalized]:
    """The records of a fee push; an error names the record it is in."""
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
    started = None
    for started_key in legs.started:  # the first one set; the others stay extras as sent
        started = huawei_time(record, started_key)
        if started is not None:
            used.add(started_key)
            break
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
    extras.update(envelope_extras(envelope, ("eventType", "feeLst"), extras))

    icid = refs["icid"]
    # F3.2 proposal; the separate slots keep an icid from ever equalling an end time.
    key = ("fee", session_id, icid, None if icid else rfc3339(occurred))
    return event(
        product,
        Kind.CALL_RECORD,
        key,
        record,
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

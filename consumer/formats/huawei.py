"""What Huawei Voice Call and Private Number share (docs/formats.md F3), and their status events.

Both products run on the same CallEnabler platform: the same two envelopes (F3.2), the same UTC
clock (F0.1), the same Q.850 and SIP vocabularies (F3.8, `huawei_codes`) and the same fee-record
layout (F3.5, `huawei_fee`). They differ in their code tables and in which leg of a fee record is
the call's caller, callee and answer; each product module states those in a `Product`
(`huawei_product`) and this module does the rest.
"""

from __future__ import annotations

from typing import Any

from consumer.errors import InvalidMessage, Reason, clip
from consumer.formats import _decode
from consumer.formats._common import STATE_TIME_FIELD
from consumer.formats.huawei_codes import CALL_REL_DIRECTION, FEE, STATUS_KINDS, code
from consumer.formats.huawei_fee import fee_push
from consumer.formats.huawei_product import Product, envelope_extras, event, required_time
from consumer.model import JsonObject, Kind, Normalized, Outcome, rfc3339

PUSH_ANSWER = b'{"resultcode":"0","resultdesc":"Success"}'
"""The 200 body of a stored push: Voice Call fee judges success by resultcode "0"; the other
Huawei pushes ignore the body."""

# statusInfo keys that become normalized fields; every other key is kept in extras.
_STATUS_NORMALIZED = frozenset(
    {"sessionId", "timestamp", "stateCode", "caller", "called", "digitInfo", "userData"}
    | {"subscriptionId"}
)


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
        return fee_push(product, envelope)
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


def _status_event(
    product: Product, envelope: JsonObject, event_type: str, kind: Kind, status: JsonObject
) -> Normalized:
    # Every field is read (and may fail) in the order the documented key and fields name them.
    session_id = _decode.required_text(status, "sessionId")
    occurred = required_time(status, "timestamp")
    state_code = _decode.text(status, "stateCode")
    caller = _decode.text(status, "caller")
    callee = _decode.text(status, "called")
    digits = _decode.text(status, "digitInfo")
    rel_direction = _decode.text(status, "callRelDirection")
    correlation_id = _decode.text(status, "userData")
    subscription_id = _decode.text(status, "subscriptionId")
    outcome = None
    if state_code is not None:
        number = code(state_code)
        known = None if number is None else product.state_outcome(number)
        outcome = known or Outcome.UNKNOWN

    extras: dict[str, Any] = {"eventType": event_type}
    extras.update({key: value for key, value in status.items() if key not in _STATUS_NORMALIZED})
    extras["dtmf"] = digits
    if len(envelope) > 2:  # keys besides eventType and statusInfo, which it has (read above)
        extras.update(envelope_extras(envelope, ("eventType", "statusInfo"), extras))
    times = {STATE_TIME_FIELD[kind]: occurred} if kind in STATE_TIME_FIELD else {}
    # Extended beyond F3.2's key: caller/called split the A- and B-leg events of a callback that
    # share a second, digitInfo splits two inputs in one second. A re-push repeats all of them.
    key = ("status", session_id, event_type, rfc3339(occurred), state_code, caller, callee, digits)
    return event(
        product,
        kind,
        key,
        envelope,
        call_id=session_id,
        occurred_at=occurred,
        caller=caller,
        callee=callee,
        direction=product.status_direction,
        outcome=outcome,
        provider_status=state_code,
        hangup_by=_decode.lookup(CALL_REL_DIRECTION, rel_direction, None),
        correlation_id=correlation_id,
        # text() gives None or non-empty text: compact() of refs could only drop a None.
        refs={} if subscription_id is None else {"subscription_id": subscription_id},
        extras=_decode.compact(extras),
        **times,
    )

"""Huawei status events, as tuned for the commit thread, against the reading they replaced."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.errors import InvalidMessage
from consumer.formats import _decode, huawei, huawei_privacy_number, huawei_voice_call
from consumer.formats._common import STATE_TIME_FIELD
from consumer.formats.huawei_codes import CALL_REL_DIRECTION, STATUS_KINDS, code
from consumer.formats.huawei_product import Product, envelope_extras, event, required_time
from consumer.model import JsonObject, Kind, Normalized, Outcome, rfc3339


def _reference(
    product: Product, envelope: JsonObject, event_type: str, kind: Kind, status: JsonObject
) -> Normalized:
    """`huawei._status_event` as it was before perf-format (December 2026), unchanged."""
    session_id = _decode.required_text(status, "sessionId")
    occurred = required_time(status, "timestamp")
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
    extras.update(
        {key: value for key, value in status.items() if key not in huawei._STATUS_NORMALIZED}
    )
    extras["dtmf"] = digits
    extras.update(envelope_extras(envelope, ("eventType", "statusInfo"), extras))
    times = {STATE_TIME_FIELD[kind]: occurred} if kind in STATE_TIME_FIELD else {}
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
        correlation_id=_decode.text(status, "userData"),
        refs=_decode.compact({"subscription_id": _decode.text(status, "subscriptionId")}),
        extras=_decode.compact(extras),
        **times,
    )


_VALUES = st.one_of(
    st.none(),
    st.sampled_from(["", " ", " x ", "0", "1", "2", "8003", "2019-01-24 03:04:49"]),
    st.sampled_from(["2019-01-24  03:04:49", "1548299089", "1548299089123", "2019-13-01"]),
    st.integers(-3, 9000),
    st.sampled_from([0.0, 8003.0, 1.5, True, False]),
    st.just([]),
    st.just({}),
    st.just({"a": [1]}),
    st.text(max_size=4),
)
_KEYS = st.sampled_from(
    [
        "sessionId",
        "timestamp",
        "stateCode",
        "caller",
        "called",
        "digitInfo",
        "callRelDirection",
        "userData",
        "subscriptionId",
        "stateDesc",
        "dtmf",
        "eventType",
        "other",
    ]
)
_STATUS = st.fixed_dictionaries(
    {"sessionId": st.sampled_from(["s-1", " s ", 7]), "timestamp": st.just("2019-01-24 03:04:49")}
).flatmap(lambda base: st.dictionaries(_KEYS, _VALUES, max_size=8).map(lambda d: {**base, **d}))
_ENVELOPE_EXTRAS = st.dictionaries(
    st.sampled_from(["eventType2", "stateDesc", "dtmf", "other", "x"]), _VALUES, max_size=3
)


def _outcome(run: Any, *args: Any) -> Any:
    try:
        item = run(*args)
    except InvalidMessage as exc:
        return (exc.reason, exc.detail)
    return (item.event.model_dump_json(), item.payload)


@settings(max_examples=600, deadline=None)
@given(
    product=st.sampled_from([huawei_voice_call.PRODUCT, huawei_privacy_number.PRODUCT]),
    event_type=st.sampled_from(list(STATUS_KINDS)),
    status=_STATUS,
    more=_ENVELOPE_EXTRAS,
)
def test_status_events_are_what_the_former_reading_made(
    product: Product, event_type: str, status: JsonObject, more: JsonObject
) -> None:
    envelope = {"eventType": event_type, "statusInfo": status, **more}
    kind = STATUS_KINDS[event_type]
    args = (product, envelope, event_type, kind, status)
    assert _outcome(huawei._status_event, *args) == _outcome(_reference, *args)

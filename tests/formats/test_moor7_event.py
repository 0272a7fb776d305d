"""`moor7.event` (docs/formats.md F4): 7moor v7 event push, every `pushType`."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.errors import InvalidMessage
from consumer.formats import get_format, parse
from consumer.formats import moor7_event as moor7
from consumer.model import CallEvent, Normalized, Provider
from tests.formats.strategies import PROPERTY, check, deterministic, mutated

FORMAT = "moor7.event"
SAMPLES = Path(__file__).parent / "samples"
SEED_SAMPLES = (
    "dialout_ring",
    "dialout_hangup",
    "inbound_ring",
    "inbound_hangup",
    "cdr",
    "customer_answered",
    "agent_status",
    "agent_status_link",
    "media_failreason",
    "login",
    "logout",
)


def raw_sample(name: str) -> bytes:
    return (SAMPLES / f"{FORMAT}.{name}.json").read_bytes()


def sample(name: str) -> Any:
    return json.loads(raw_sample(name))


def run(value: Any) -> list[Normalized]:
    raw = value if isinstance(value, bytes) else json.dumps(value, ensure_ascii=False).encode()
    return parse(FORMAT, raw)


def one(value: Any) -> CallEvent:
    [normalized] = run(value)
    return normalized.event


def invalid(value: Any) -> InvalidMessage:
    with pytest.raises(InvalidMessage) as info:
        run(value)
    assert info.value.detail
    return info.value


def shanghai(*args: int) -> datetime:
    """A Beijing wall time, as the UTC instant it stands for."""
    return datetime(*args, tzinfo=UTC) - timedelta(hours=8)


def push(**fields: Any) -> dict[str, Any]:
    base = {
        "eventUniqueId": "ev1",
        "accountId": "20000153",
        "callUniqueId": "call-1",
        "pushType": "dialoutRing",
        "customerNumber": "17319132391",
        "trunkNumber": "",
        "displayNumber": "01081400192",
        "statusTime": "1620455977",
        "callEvent": "ring",
        "callType": "dialout",
        "agentNumber": "20001",
        "agentName": "sc的坐席",
        "extras": "",
    }
    return {k: v for k, v in {**base, **fields}.items() if v is not ...}


def cdr(**fields: Any) -> dict[str, Any]:
    value = sample("cdr")
    value.update(fields)
    return {k: v for k, v in value.items() if v is not ...}


def test_format_is_registered_for_the_provider() -> None:
    # Given the registry, When the format is looked up, Then it is this module's.
    fmt = get_format(FORMAT)
    assert fmt is moor7.FORMAT
    assert fmt.provider is Provider.MOOR7


# --- every seed sample (F4.6, 7M-EVT) -------------------------------------------------------


def test_seed_outbound_ring() -> None:
    # Given the outbound ringing sample, When normalized, Then a call.ringing of the call.
    e = one(raw_sample("dialout_ring"))
    assert e.event_id == "moor7-8757e994f19040749c5b194faaf21c78-dialoutRing-ring"
    assert e.provider == "moor7"
    assert e.kind == "call.ringing"
    assert e.call_id == "403344537650466816"
    # statusTime is epoch seconds: 14:39:37 in Beijing.
    assert e.occurred_at == shanghai(2021, 5, 8, 14, 39, 37)
    assert e.ringing_at == e.occurred_at
    assert e.direction == "outbound"
    assert e.caller == "01081400192"
    assert e.callee == "17319132391"
    assert e.outcome is None
    assert e.refs == {"account_id": "20000153", "agent_number": "20001"}
    assert e.extras == {"pushType": "dialoutRing", "callEvent": "ring", "agentName": "sc的坐席"}


def test_seed_outbound_hangup() -> None:
    # Given the outbound hangup sample, When normalized, Then a call.ended at statusTime.
    e = one(raw_sample("dialout_hangup"))
    assert e.event_id == "moor7-372e1067da2c40248d8f24425f2f5273-dialoutHangup-hangup"
    assert e.kind == "call.ended"
    assert e.call_id == "403344537650466816"
    assert e.occurred_at == shanghai(2021, 5, 8, 14, 39, 47)
    assert e.ended_at == e.occurred_at
    assert e.outcome is None
    assert e.caller == "01081400192"
    assert e.callee == "17319132391"
    # groupIdList [""] is absent; groupNameList is kept as sent.
    assert "group_ids" not in e.refs
    assert e.extras["groupNameList"] == [""]


def test_seed_inbound_ring_is_an_agent_status() -> None:
    # Given the "inbound ringing" sample, which is a callStatus push,
    e = one(raw_sample("inbound_ring"))
    # Then it stays agent.status, with the agent state number as provider_status.
    assert e.event_id == "moor7-e454d40def4d47ee9d7a76aba5d6cbb7-callStatus-calling"
    assert e.kind == "agent.status"
    assert e.call_id == "403344537650466816"
    assert e.provider_status == "2"
    assert e.occurred_at == shanghai(2021, 5, 8, 14, 39, 32)
    assert e.extras == {
        "pushType": "callStatus",
        "callEvent": "calling",
        "status_name": "呼叫中",
        "agentName": "sc的坐席",
    }
    # And an agent state drives no call times.
    assert e.started_at is None
    assert e.ringing_at is None


def test_seed_inbound_hangup_as_published_is_invalid_json() -> None:
    # Given the inbound-hangup sample exactly as the vendor published it (a comma missing),
    raw = (SAMPLES / f"{FORMAT}.inbound_hangup_seed.invalid.txt").read_bytes()
    # When normalized, Then it is not_json, and the detail points at the spot.
    error = invalid(raw)
    assert error.reason == "not_json"
    assert "line 12" in error.detail


def test_seed_inbound_hangup_corrected() -> None:
    # Given the same sample with the comma added,
    raw = raw_sample("inbound_hangup")
    published = (SAMPLES / f"{FORMAT}.inbound_hangup_seed.invalid.txt").read_bytes()
    assert raw == published.replace('"默认坐席"\n'.encode(), '"默认坐席",\n'.encode())
    e = one(raw)
    # Then an inbound call.ended: callUniqueId wins over superUniqueId, which goes to refs.
    assert e.event_id == "moor7-e454d40def4d47ee9d7a76aba5d6cbb7--hangup"
    assert e.kind == "call.ended"
    assert e.call_id == "403344537650466816"
    assert e.refs == {
        "super_unique_id": "393928840994361344",
        "account_id": "2000100",
        "agent_number": "2000",
    }
    assert e.direction == "inbound"
    assert e.caller == "17319132391"
    assert e.callee == "01080455499"
    assert e.occurred_at == datetime(2020, 12, 14, 11, 12, 35, tzinfo=UTC)
    assert e.ended_at == e.occurred_at
    assert e.extras == {"callEvent": "hangup", "agentName": "默认坐席"}


def test_seed_cdr_field_by_field() -> None:
    # Given the call-record sample,
    raw = raw_sample("cdr")
    [normalized] = run(raw)
    e = normalized.event
    # Then a call.record, Shanghai wall times in UTC, outbound legs as ringing and answer.
    assert e.event_id == "moor7-0db0948a14ea4b7eaa719f1f2501d142-cdr-"
    assert e.kind == "call.record"
    assert e.call_id == "403344537650466816"
    assert e.direction == "outbound"
    assert e.caller == "01081400192"
    assert e.callee == "17319132391"
    assert e.started_at == shanghai(2021, 5, 8, 14, 39, 32)
    assert e.ringing_at == shanghai(2021, 5, 8, 14, 39, 37)
    assert e.answered_at == shanghai(2021, 5, 8, 14, 39, 42)
    assert e.ended_at == shanghai(2021, 5, 8, 14, 39, 47)
    assert e.occurred_at == shanghai(2021, 5, 8, 14, 39, 47)
    assert e.duration_seconds == 5
    assert e.outcome == "answered"
    assert e.provider_status == "ANSWER"
    assert e.hangup_by == "agent"
    assert e.recording_url is not None
    assert e.recording_url.endswith("403344537650466816-doubleTrack.mp3")
    assert e.correlation_id is None  # actionId ""
    assert e.refs == {
        "account_id": "2100147",
        "agent_number": "20001",
        "agent_id": "6094f5aa696609001197e4b9",
        "channel_call_id": "635be250-10e9-4c60-93f7-32479dfe85e1",
        "group_ids": "60541bbf4aab2c0021278ad2,605be962a342660011ecc5af",
    }
    x = e.extras
    # Other times are kept in UTC, durations as ints, the rest as sent; "" is dropped.
    assert x["agentStartTime"] == "2021-05-08T06:39:32Z"
    assert x["agentAnswerTime"] == "2021-05-08T06:39:37Z"
    assert x["bridgeTime"] == "2021-05-08T06:39:42Z"
    assert x["systemAnswerTime"] == "2021-05-08T06:39:37Z"
    assert x["createTime"] == "2021-05-08T06:39:48Z"
    assert x["saveTime"] == "2021-05-08T06:39:48Z"
    assert x["totalDuration"] == 15
    assert x["agentRingDuration"] == 5
    assert x["waitDuration"] == 0
    assert x["sipCode"] == 200
    assert x["recordType"] == "doubleTrack"
    assert x["cdrType"] == "callRecord"
    assert x["agentAreaCode"] == "010"
    assert x["groupNameList"] == ["分组1", "分组2"]
    assert len(x["billCalls"]) == 2
    assert x["agentFileUrl"].endswith("-out.mp3")
    assert x["customerFileUrl"].endswith("-in.mp3")
    assert x["voiceMailUrl"].endswith(".mp3")
    assert x["matchResult"] == "000"
    assert "satisfyKeys" not in x  # []
    assert "ivrTime" not in x  # ""
    assert "hangUpSide" not in x  # mapped
    assert "status" not in x  # provider_status
    # And the payload is the record as received.
    assert normalized.payload == json.loads(raw)


def test_seed_customer_answered_in_its_content_wrapper() -> None:
    # Given the customer-answered sample: wrapped in content, superUniqueId, no pushType,
    [normalized] = run(raw_sample("customer_answered"))
    e = normalized.event
    # Then the wrapper is opened: the outer uniqueId is the event id, superUniqueId the call.
    assert e.event_id == "moor7-92fe6e957421411c9343fdef75411ca1--link"
    assert e.kind == "call.answered"
    assert e.call_id == "393928840994361344"
    assert e.outcome == "answered"
    assert e.occurred_at == datetime(2021, 3, 25, 2, 7, 44, tzinfo=UTC)
    assert e.answered_at == e.occurred_at
    assert e.caller == "02258834811"
    assert e.callee == "15201277786"
    assert e.refs == {"account_id": "2100147", "agent_number": "1121"}
    assert e.extras == {"callEvent": "link", "agentName": "1121"}
    assert normalized.payload == sample("customer_answered")


@pytest.mark.parametrize(
    ("name", "status", "label", "call_event"),
    [("agent_status", "5", "整理", "hangup"), ("agent_status_link", "4", "通话中", "link")],
)
def test_seed_agent_status_changes(name: str, status: str, label: str, call_event: str) -> None:
    # Given an agent state change (plain, or carrying a call event),
    e = one(raw_sample(name))
    # Then agent.status with the state number, its label and the call event in extras.
    assert e.kind == "agent.status"
    assert e.provider_status == status
    assert e.extras["status_name"] == label
    assert e.extras["callEvent"] == call_event
    assert e.call_id == "403344537650466816"
    assert e.answered_at is None
    assert e.ended_at is None
    assert e.outcome is None


def test_seed_media_failure_reason() -> None:
    # Given the early-media refusal sample, which carries no time at all,
    before = datetime.now(UTC).replace(microsecond=0)
    e = one(raw_sample("media_failreason"))
    after = datetime.now(UTC)
    # Then a call.ended, busy for onThePhone, the reason as provider_status,
    assert e.event_id == "moor7-88c15955242645b485e902ec077acc52-mediaFailreason-"
    assert e.kind == "call.ended"
    assert e.call_id == "403381132931895296"
    assert e.outcome == "busy"
    assert e.provider_status == "onThePhone"
    assert e.extras == {
        "pushType": "mediaFailreason",
        "preMediaCode": 15,
        "preMediaKeyWord": "正在通话",
    }
    assert e.refs == {"account_id": "20000153", "agent_number": "2001"}
    # And it is dated when it was read, a time not claimed as the call's end.
    assert before <= e.occurred_at <= after
    assert e.ended_at is None


@pytest.mark.parametrize(
    ("name", "kind_extra", "at"),
    [
        ("login", ("loginType", "PSTN"), datetime(2021, 7, 22, 10, 6, 48, tzinfo=UTC)),
        ("logout", ("logoutType", "normal"), datetime(2021, 7, 22, 10, 6, 55, tzinfo=UTC)),
    ],
)
def test_seed_login_logout(name: str, kind_extra: tuple[str, str], at: datetime) -> None:
    # Given a login or logout, whose statusTime is a Shanghai wall time,
    e = one(raw_sample(name))
    # Then an agent.session of no call, at that instant in UTC.
    assert e.kind == "agent.session"
    assert e.call_id is None
    assert e.provider_status == name
    assert e.occurred_at == at
    assert e.direction is None
    assert e.refs == {"account_id": "2000103", "agent_number": "9998"}
    assert e.extras[kind_extra[0]] == kind_extra[1]


def test_every_seed_sample_has_its_own_event_id() -> None:
    # Given all the seed's samples (two of them share an eventUniqueId),
    ids = [one(raw_sample(name)).event_id for name in SEED_SAMPLES]
    # Then no two events share an id.
    assert len(set(ids)) == len(SEED_SAMPLES)


# --- decoding: JSON, base64, form (F4.1) ------------------------------------------------------


def test_form_body_with_one_field_holding_json() -> None:
    # Given the ring sample posted as application/x-www-form-urlencoded in one field,
    text = raw_sample("dialout_ring").decode()
    form = urlencode({"data": text}).encode()
    # When normalized, Then it is the same event as the JSON body.
    assert one(form) == one(raw_sample("dialout_ring"))


def test_form_body_that_is_urlencoded_json_without_a_name() -> None:
    # Given the cdr urlencoded with no field name, Then the same event as the JSON.
    form = quote(raw_sample("cdr").decode()).encode()
    assert one(form) == one(raw_sample("cdr"))


def test_base64_body_is_accepted_like_every_format() -> None:
    # Given a base64-wrapped push, When normalized, Then the same event as the JSON.
    assert one(base64.b64encode(raw_sample("login"))) == one(raw_sample("login"))


@pytest.mark.parametrize(
    ("raw", "reason", "words"),
    [
        (b"a=1&b=2", "bad_form", "2 fields"),
        (b"data=not-json", "not_json", "form field 'data'"),
        (b"data=%7B%22a%22", "not_json", "form field 'data'"),
        (b"a=1&b", "not_json", "neither JSON nor a form"),
        (b"{not json", "not_json", "line 1"),
        (b"hello world", "not_json", "JSON"),
        (b"\xff\xfe", "not_utf8", "UTF-8"),
        (b"", "not_json", "JSON"),
        (b"[]", "empty_batch", "empty"),
        (b"7", "not_object", "number"),
        (b"1" * 5000, "not_json", "digits"),
        (b'{"pushType": "login", "agentNumber": "\\udc00"}', "bad_unicode", "surrogate"),
    ],
)
def test_bodies_that_are_not_pushes_are_named(raw: bytes, reason: str, words: str) -> None:
    # Given a body that is no push, When normalized, Then the reason and detail say why.
    error = invalid(raw)
    assert error.reason == reason
    assert words in error.detail


# --- kinds (F4.2) -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("push_type", "call_event", "kind"),
    [
        ("dialoutRing", "ring", "call.ringing"),
        ("dialoutHangup", "hangup", "call.ended"),
        ("callStatus", "calling", "agent.status"),
        ("callStatus", "ring", "agent.status"),
        ("callStatus", "link", "agent.status"),
        ("callStatus", "hangup", "agent.status"),
        ("cdr", ..., "call.record"),
        ("mediaFailreason", ..., "call.ended"),
        ("login", ..., "agent.session"),
        ("logout", ..., "agent.session"),
        ("LOGIN", ..., "agent.session"),
        (..., "calling", "call.initiated"),
        (..., "ring", "call.ringing"),
        (..., "link", "call.answered"),
        (..., "hangup", "call.ended"),
        ("", "Hangup", "call.ended"),
        # an unknown pushType that says what happened to the call is taken by its callEvent
        ("incomingRing", "ring", "call.ringing"),
    ],
)
def test_kind_from_push_type_then_call_event(push_type: Any, call_event: Any, kind: str) -> None:
    # Given a pushType and/or callEvent, When normalized, Then the kind of F4.2.
    e = one(push(pushType=push_type, callEvent=call_event))
    assert e.kind == kind


def test_cdr_without_push_type_is_known_by_its_cdr_type() -> None:
    # Given a cdr without pushType, When normalized, Then its cdrType makes it a record.
    assert one(cdr(pushType=...)).kind == "call.record"


@pytest.mark.parametrize(
    ("push_type", "call_event", "reason", "words"),
    [
        ("queueOverflow", ..., "unknown_event_type", "pushType 'queueOverflow'"),
        ("queueOverflow", "transfer", "unknown_event_type", "callEvent 'transfer'"),
        (..., "transfer", "unknown_event_type", "callEvent 'transfer'"),
        (..., ..., "missing_field", "neither pushType nor callEvent"),
        ("", "", "missing_field", "neither pushType nor callEvent"),
    ],
)
def test_unknown_or_missing_kind_is_invalid(
    push_type: Any, call_event: Any, reason: str, words: str
) -> None:
    # Given no known pushType or callEvent, When normalized, Then the reason says which.
    error = invalid(push(pushType=push_type, callEvent=call_event))
    assert error.reason == reason
    assert words in error.detail


@pytest.mark.parametrize(
    ("call_type", "direction", "caller", "callee"),
    [
        ("dialout", "outbound", "01081400192", "17319132391"),
        ("previewDialout", "outbound", "01081400192", "17319132391"),
        ("autoDialout", "outbound", "01081400192", "17319132391"),
        ("webcall", "outbound", "01081400192", "17319132391"),
        ("incoming", "inbound", "17319132391", "4008000000"),
        ("INCOMING", "inbound", "17319132391", "4008000000"),
        (..., None, None, None),
    ],
)
def test_direction_decides_caller_and_callee(
    call_type: Any, direction: str | None, caller: str | None, callee: str | None
) -> None:
    # Given each callType, When normalized, Then direction picks caller and callee.
    e = one(push(callType=call_type, trunkNumber="4008000000"))
    assert e.direction == direction
    assert e.caller == caller
    assert e.callee == callee
    if direction is None:
        # Without a direction the numbers are kept under their own names.
        assert e.extras["customerNumber"] == "17319132391"
        assert e.extras["displayNumber"] == "01081400192"
    else:
        assert "customerNumber" not in e.extras


def test_number_fallbacks() -> None:
    # Given an AXB outbound call showing the X number, and an inbound call to a hotline,
    axb = one(push(displayNumber="", virtualNumber="17000000000"))
    hotline = one(push(callType="incoming", trunkNumber="", hotLineNumber="4001"))
    # Then the X number is the caller and the hotline the callee.
    assert axb.caller == "17000000000"
    assert hotline.callee == "4001"


# --- times (F0.1) -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status_time", "expected"),
    [
        ("1620455977", datetime(2021, 5, 8, 6, 39, 37, tzinfo=UTC)),
        (1620455977, datetime(2021, 5, 8, 6, 39, 37, tzinfo=UTC)),
        ("1620455977123", datetime(2021, 5, 8, 6, 39, 37, 123000, tzinfo=UTC)),
        ("2021-05-08 14:39:37", datetime(2021, 5, 8, 6, 39, 37, tzinfo=UTC)),
        (" 2021-05-08  14:39:37 ", datetime(2021, 5, 8, 6, 39, 37, tzinfo=UTC)),
    ],
)
def test_status_time_forms(status_time: Any, expected: datetime) -> None:
    # Given 10 digits (seconds), 13 digits (millis) or a Beijing wall time,
    e = one(push(statusTime=status_time))
    # Then the instant in UTC.
    assert e.occurred_at == expected
    assert e.ringing_at == expected


@pytest.mark.parametrize("status_time", ["yesterday", "162045597", "2021-05-08T14:39:37", "²" * 10])
def test_unreadable_status_time_is_a_bad_time(status_time: str) -> None:
    # Given a statusTime in no known form, When normalized, Then bad_time naming it.
    error = invalid(push(statusTime=status_time))
    assert error.reason == "bad_time"
    assert "statusTime" in error.detail


def test_bad_cdr_time_in_extras_is_named() -> None:
    # Given a cdr time kept in extras but unreadable, Then bad_time naming it.
    error = invalid(cdr(createTime="2021/05/08"))
    assert error.reason == "bad_time"
    assert "createTime" in error.detail


def test_cdr_occurred_at_falls_back_from_end_to_hangup_to_start() -> None:
    # Given a cdr missing endTime (and hangupTime), Then occurred_at falls back.
    assert one(cdr(endTime="")).occurred_at == shanghai(2021, 5, 8, 14, 39, 47)
    no_end = one(cdr(endTime="", hangupTime=""))
    assert no_end.occurred_at == shanghai(2021, 5, 8, 14, 39, 32)
    assert no_end.ended_at is None


def test_inbound_cdr_takes_the_agent_leg() -> None:
    # Given an inbound record, When normalized,
    e = one(cdr(callType="incoming", trunkNumber="01080455499"))
    # Then the agent leg gives ringing and answer, the customer leg stays in extras.
    assert e.direction == "inbound"
    assert e.caller == "17319132391"
    assert e.callee == "01080455499"
    assert e.ringing_at == shanghai(2021, 5, 8, 14, 39, 32)
    assert e.answered_at == shanghai(2021, 5, 8, 14, 39, 37)
    assert e.extras["customerAnswerTime"] == "2021-05-08T06:39:42Z"
    assert e.extras["displayNumber"] == "01081400192"


# --- CDR outcome and hang-up side (F4.5) ------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "failure", "outcome"),
    [
        ("ANSWER", ..., "answered"),
        ("CALL_TRANSFER", ..., "answered"),
        ("CUSTOMER_NO_ANSWER", ..., "no_answer"),
        ("AGENT_NO_ANSWER", ..., "no_answer"),
        ("QUEUE_ABANDON", ..., "cancelled"),
        ("IVR", ..., "cancelled"),
        ("CUSTOMER_NO_ANSWER", "forbidden", "blocked"),
        ("CUSTOMER_NO_ANSWER", "serviceUnavailable", "failed"),
        ("CUSTOMER_NO_ANSWER", "cancel", "cancelled"),
        ("CUSTOMER_NO_ANSWER", "requestTimeout", "no_answer"),
        ("CUSTOMER_NO_ANSWER", "decline", "rejected"),
        ("CUSTOMER_NO_ANSWER", "unknow", "unknown"),
        ("AGENT_NO_ANSWER", "decline", "rejected"),
        ("CUSTOMER_NO_ANSWER", "somethingNew", "no_answer"),
        ("ANSWER", "decline", "answered"),
        ("customer_no_answer", ..., "no_answer"),
        ("EXPLODED", ..., "unknown"),
        ("", "decline", "rejected"),
        ("", ..., "unknown"),
    ],
)
def test_cdr_outcome(status: str, failure: Any, outcome: str) -> None:
    # Given a cdr status and failureReason, When normalized, Then the outcome of F4.5.
    e = one(cdr(status=status, failureReason=failure))
    assert e.outcome == outcome
    assert e.provider_status == (status or None)
    if failure is not ...:
        assert e.extras["failureReason"] == failure


@pytest.mark.parametrize(
    ("side", "call_type", "hangup_by"),
    [
        ("AGENT", "dialout", "agent"),
        ("agent", "incoming", "agent"),
        ("CUSTOMER", "dialout", "callee"),
        ("CUSTOMER", "incoming", "caller"),
        ("CUSTOMER", ..., None),
        ("SYSTEM", "dialout", None),
    ],
)
def test_hang_up_side(side: str, call_type: Any, hangup_by: str | None) -> None:
    # Given each hangUpSide and direction, When normalized, Then hangup_by of F4.5.
    e = one(cdr(hangUpSide=side, callType=call_type))
    assert e.hangup_by == hangup_by
    # An unmapped side is kept as sent.
    assert ("hangUpSide" in e.extras) == (hangup_by is None)


@pytest.mark.parametrize(
    ("reason", "outcome"), [("onThePhone", "busy"), ("powerOff", "unknown"), (..., "unknown")]
)
def test_media_failure_outcome(reason: Any, outcome: str) -> None:
    # Given an early-media refusal with a time, Then busy only for onThePhone.
    value = sample("media_failreason")
    value["statusTime"] = "1620455977"
    if reason is ...:
        del value["preMediaFailureReason"]
    else:
        value["preMediaFailureReason"] = reason
    e = one(value)
    assert e.outcome == outcome
    assert e.occurred_at == datetime(2021, 5, 8, 6, 39, 37, tzinfo=UTC)


# --- ids, refs, extras (F4.3, F4.4) -----------------------------------------------------------


def test_same_delivery_twice_gives_the_same_id() -> None:
    # Given one push sent twice, once re-serialized and once as a form,
    value = sample("cdr")
    bodies = [
        raw_sample("cdr"),
        json.dumps(value).encode(),
        urlencode({"json": json.dumps(value)}).encode(),
    ]
    # Then all three give the same event id.
    assert len({one(body).event_id for body in bodies}) == 1


def test_reused_event_unique_id_is_told_apart_by_push_type_and_call_event() -> None:
    # Given three pushes that share one eventUniqueId (the vendor's samples do that),
    ids = {
        one(push(eventUniqueId="same", pushType="callStatus", callEvent="ring")).event_id,
        one(push(eventUniqueId="same", pushType="callStatus", callEvent="link")).event_id,
        one(push(eventUniqueId="same", pushType="dialoutRing", callEvent="ring")).event_id,
        one(push(eventUniqueId="same", pushType=..., callEvent="ring")).event_id,
    }
    # Then four ids.
    assert len(ids) == 4


def test_odd_ids_are_hashed_so_that_parts_cannot_run_together() -> None:
    # Given ids holding the separator, which would make "a-b" + "c" equal "a" + "b-c",
    one_way = one(push(eventUniqueId="a-b", pushType="callStatus", callEvent="ring"))
    other = one(push(eventUniqueId="a", pushType="b-callStatus", callEvent="ring"))
    # Then they are hashed (still prefixed with the provider) and differ.
    assert one_way.event_id.startswith("moor7-")
    assert len(one_way.event_id) == len("moor7-") + 32
    assert one_way.event_id != other.event_id
    # And the same odd push gives the same id again.
    again = one(push(eventUniqueId="a-b", pushType="callStatus", callEvent="ring"))
    assert again.event_id == one_way.event_id


def test_push_without_any_event_id_is_hashed_from_its_content() -> None:
    # Given pushes without eventUniqueId or uniqueId,
    ring = push(eventUniqueId=...)
    later = push(eventUniqueId=..., statusTime="1620455980")
    # Then ids are stable for the same content and differ for another moment.
    assert one(ring).event_id == one(ring).event_id
    assert one(ring).event_id != one(later).event_id
    assert one(ring).event_id.startswith("moor7-")


def test_event_unique_id_wins_over_unique_id_which_goes_to_refs() -> None:
    # Given a cdr with every id, When normalized, Then each lands in its ref.
    e = one(cdr(uniqueId="u-1", _id="m-1", id=17, relativeCallUniqueId="r-1", actionId="act-1"))
    assert e.event_id == "moor7-0db0948a14ea4b7eaa719f1f2501d142-cdr-"
    assert e.refs["unique_id"] == "u-1"
    assert e.refs["record_id"] == "m-1"
    assert e.refs["row_id"] == "17"
    assert e.refs["relative_call_id"] == "r-1"
    assert e.correlation_id == "act-1"


def test_content_wrapper_with_its_own_ids() -> None:
    # Given a wrapped push whose content has eventUniqueId and callUniqueId,
    value = {"content": push(eventUniqueId="inner"), "uniqueId": "outer"}
    e = one(value)
    # Then the inner ids win and the outer uniqueId is a ref.
    assert e.event_id == "moor7-inner-dialoutRing-ring"
    assert e.call_id == "call-1"
    assert e.refs["unique_id"] == "outer"


def test_content_that_is_not_an_object_is_just_a_field() -> None:
    # Given a content that is text, When normalized, Then it is kept as a field.
    e = one(push(content="free text"))
    assert e.extras["content"] == "free text"


def test_custom_extras_object_is_flattened_without_hiding_ours() -> None:
    # Given custom outbound parameters as an object, one named like a key we set,
    e = one(push(extras={"orderId": "o-1", "agentName": "mine", "empty": ""}))
    # Then each is a key; the clashing one moves under `extras.`; empty ones are dropped.
    assert e.extras["orderId"] == "o-1"
    assert e.extras["agentName"] == "sc的坐席"
    assert e.extras["extras.agentName"] == "mine"
    assert "empty" not in e.extras


def test_undocumented_key_named_like_ours_does_not_hide_it() -> None:
    # Given an undocumented key named like ours, Then ours stays and theirs moves.
    e = one(push(pushType="callStatus", statusName="整理", status_name="theirs", newKey=1))
    assert e.extras["status_name"] == "整理"
    assert e.extras["unknown.status_name"] == "theirs"
    assert e.extras["newKey"] == 1


@pytest.mark.parametrize("extras", ["some text", ["a", "b"], 5])
def test_custom_extras_of_another_shape_are_kept_whole(extras: Any) -> None:
    # Given custom extras that are no object, When normalized, Then kept whole.
    assert one(push(extras=extras)).extras["extras"] == extras


def test_group_ids_are_joined() -> None:
    # Given groupIdList with an empty item, When normalized, Then one joined ref.
    e = one(push(pushType="dialoutHangup", callEvent="hangup", groupIdList=["g1", "", 7]))
    assert e.refs["group_ids"] == "g1,7"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("accountId", {"a": 1}),
        ("agentNumber", [1]),
        ("groupIdList", [{"a": 1}]),
        ("bridgeDuration", "long"),
        ("totalDuration", "x"),
    ],
)
def test_malformed_fields_are_named(field: str, value: Any) -> None:
    # Given a field of an impossible type, When normalized, Then bad_field naming it.
    error = invalid(cdr(**{field: value}))
    assert error.reason == "bad_field"
    assert field in error.detail


def test_numbers_as_strings_or_numbers_give_the_same_event() -> None:
    # Given durations as numbers and as strings, Then the same event.
    as_numbers = cdr(bridgeDuration=5, totalDuration=15, sipCode=200)
    as_strings = cdr(bridgeDuration="5", totalDuration="15", sipCode=200)
    assert one(as_numbers) == one(as_strings)


def test_an_array_of_pushes_gives_one_event_each() -> None:
    # Given three pushes in one array, Then three events; an error names its index.
    events = run([sample("dialout_ring"), sample("dialout_hangup"), sample("cdr")])
    assert [n.event.kind for n in events] == ["call.ringing", "call.ended", "call.record"]
    error = invalid([sample("login"), {"pushType": "nope"}])
    assert error.detail.startswith("record [1]:")


def test_nesting_too_deep_to_store_is_invalid() -> None:
    # Given custom extras nested deeper than the serializer goes, Then invalid at once.
    deep: Any = "x"
    for _ in range(300):
        deep = [deep]
    error = invalid(push(extras={"deep": deep}))
    assert error.reason == "bad_field"


# --- properties -------------------------------------------------------------------------------

BODIES = [sample(name) for name in SEED_SAMPLES]


@PROPERTY
@given(raw=st.text(max_size=200).map(str.encode))
def test_arbitrary_text_that_may_look_like_a_form_gives_events_or_invalid_message(
    raw: bytes,
) -> None:
    # Given any text (a 7moor body may be a form whose single field holds JSON), Then only
    # InvalidMessage escapes.
    check(FORMAT, raw)


@PROPERTY
@given(data=st.data())
def test_mutated_pushes_give_events_or_invalid_message(data: st.DataObject) -> None:
    # Given a seed push mutated up to three times, sent as JSON, base64 or a form,
    value = data.draw(mutated(data.draw(st.sampled_from(BODIES))))
    text = json.dumps(value, ensure_ascii=False)
    wrap = data.draw(st.sampled_from(["json", "base64", "form"]))
    raw = text.encode("utf-8", "surrogatepass")
    if wrap == "base64":
        raw = base64.b64encode(raw)
    elif wrap == "form":
        raw = urlencode({"data": text}, errors="surrogatepass").encode()
    # When parsed twice, Then only InvalidMessage escapes and ids are deterministic.
    result = deterministic(FORMAT, raw)
    if isinstance(result, list):
        assert all(event.event_id.startswith("moor7-") for event in result)


@pytest.mark.parametrize(
    ("name", "kind"),
    [("dialout_ring", "call.ringing"), ("dialout_hangup", "call.ended"), ("cdr", "call.record")],
)
@pytest.mark.parametrize("call_id", [..., "", None])
def test_a_call_push_without_its_call_id_is_refused(name: str, kind: str, call_id: Any) -> None:
    # Given a call push of the document whose callUniqueId (and superUniqueId) is gone or empty,
    value = sample(name)
    value.pop("superUniqueId", None)
    if call_id is ...:
        del value["callUniqueId"]
    else:
        value["callUniqueId"] = call_id
    # When normalized, Then it is a dead letter naming the key, not a call event of no call.
    error = invalid(value)
    assert error.reason == "missing_field"
    assert error.detail == f"callUniqueId is missing or empty in a {kind} push (a call event)"


def test_an_agent_push_needs_no_call_id() -> None:
    # Given a login (an agent push) without any call id, Then it is still an agent.session.
    value = sample("login")
    value.pop("callUniqueId", None)
    assert one(value).kind == "agent.session"

"""What both Huawei formats share (formats.md F3): envelopes, clock, fee batches."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.errors import InvalidMessage
from consumer.formats import huawei_product, parse
from consumer.model import CallEvent, Kind
from tests.formats.strategies import (
    PROPERTY,
    check,
    deterministic,
    json_scalars,
    mutated,
    stringified,
)

SAMPLES = Path(__file__).parent / "samples"
FORMATS = ("huawei.voice_call", "huawei.privacy_number")
VOICE, PRIVACY = FORMATS


def body(value: Any) -> bytes:
    """UTF-8 JSON; a lone surrogate (which UTF-8 cannot hold) is sent escaped, as JSON allows."""
    try:
        return json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return json.dumps(value).encode()


def events(fmt: str, value: Any) -> list[CallEvent]:
    raw = value if isinstance(value, bytes) else body(value)
    return [normalized.event for normalized in parse(fmt, raw)]


def invalid(fmt: str, value: Any) -> InvalidMessage:
    raw = value if isinstance(value, bytes) else body(value)
    with pytest.raises(InvalidMessage) as info:
        parse(fmt, raw)
    return info.value


def status(event_type: str = "disconnect", **fields: Any) -> dict[str, Any]:
    info = {"sessionId": "s-1", "timestamp": "2019-01-24 03:04:49", **fields}
    return {"eventType": event_type, "statusInfo": {k: v for k, v in info.items() if v is not ...}}


def fee(*records: Any) -> dict[str, Any]:
    return {"eventType": "fee", "feeLst": list(records)}


def record(**fields: Any) -> dict[str, Any]:
    base = {"sessionId": "s-1", "icid": "i-1", "callEndTime": "2019-01-24 03:04:49"}
    return {k: v for k, v in {**base, **fields}.items() if v is not ...}


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_bytes())


# --- clock (F0.1) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2019-01-24 03:04:49", datetime(2019, 1, 24, 3, 4, 49, tzinfo=UTC)),
        ("2018-04-09  10:57:42", datetime(2018, 4, 9, 10, 57, 42, tzinfo=UTC)),
        (" 2018-04-09 \t10:57:42 ", datetime(2018, 4, 9, 10, 57, 42, tzinfo=UTC)),
        ("1548299089", datetime(2019, 1, 24, 3, 4, 49, tzinfo=UTC)),
        (1548299089, datetime(2019, 1, 24, 3, 4, 49, tzinfo=UTC)),
        ("1548299089500", datetime(2019, 1, 24, 3, 4, 49, 500000, tzinfo=UTC)),
    ],
)
def test_huawei_times_are_utc_with_double_spaces_or_epoch(raw: Any, expected: datetime) -> None:
    # Given a Huawei time as the docs show it (UTC, no marker) or as a "UNIX timestamp",
    # When it is read, Then it is that instant in UTC: no +8 h shift.
    assert huawei_product.huawei_time({"t": raw}, "t") == expected


@pytest.mark.parametrize("raw", ["2019-01-24T03:04:49", "24/01/2019 03:04:49", "²" * 10, "x"])
def test_other_time_forms_are_a_bad_time_naming_the_field(raw: str) -> None:
    # Given a time in a form Huawei does not document, When it is read,
    # Then the error is bad_time and names the field and the value.
    with pytest.raises(InvalidMessage) as info:
        huawei_product.huawei_time({"callEndTime": raw}, "callEndTime")
    assert info.value.reason == "bad_time"
    assert "callEndTime" in info.value.detail


def test_absent_times_are_none() -> None:
    # Given "" or null or no key, When read, Then there is no time (F0.1: "" is null).
    assert huawei_product.huawei_time({"t": ""}, "t") is None
    assert huawei_product.huawei_time({"t": None}, "t") is None
    assert huawei_product.huawei_time({}, "t") is None


# --- envelopes (F3.2) ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("value", "reason", "words"),
    [
        ([status()], "not_object", "array"),
        ("disconnect", "not_object", "string"),
        ({"statusInfo": status()["statusInfo"]}, "missing_field", "eventType"),
        ({"eventType": "", "statusInfo": {}}, "missing_field", "eventType"),
        ({"eventType": ["answer"], "statusInfo": {}}, "bad_field", "eventType"),
        (status("hangup"), "unknown_event_type", "'hangup'"),
        (status("Answer"), "unknown_event_type", "'Answer'"),
        ({"eventType": "answer"}, "missing_field", "statusInfo"),
        ({"eventType": "answer", "statusInfo": "x"}, "bad_field", "statusInfo"),
        ({"eventType": "fee", "statusInfo": {}}, "missing_field", "feeLst"),
        ({"eventType": "fee", "feeLst": []}, "empty_batch", "feeLst"),
        ({"eventType": "fee", "feeLst": "x"}, "not_object", "feeLst"),
        (fee(record(), 7), "not_object", "feeLst[1]"),
        (status(sessionId=...), "missing_field", "statusInfo.sessionId"),
        (status(sessionId=" "), "missing_field", "statusInfo.sessionId"),
        (status(timestamp=...), "missing_field", "statusInfo.timestamp"),
        (status(timestamp="yesterday"), "bad_time", "statusInfo.timestamp"),
        (status(caller={"n": 1}), "bad_field", "statusInfo.caller"),
        (fee(record(), record(sessionId=...)), "missing_field", "feeLst[1].sessionId"),
        (fee(record(callEndTime=...)), "missing_field", "feeLst[0].callEndTime"),
        (fee(record(fwdAnswerTime="soon")), "bad_time", "feeLst[0].fwdAnswerTime"),
        (fee(record(callerNum=[1])), "bad_field", "feeLst[0].callerNum"),
    ],
)
def test_bad_envelopes_name_what_is_wrong(fmt: str, value: Any, reason: str, words: str) -> None:
    # Given a body that breaks the envelope rules of F3.2, When it is parsed,
    # Then it is InvalidMessage with a stable reason and a detail naming the place.
    error = invalid(fmt, value)
    assert error.reason == reason
    assert words in error.detail


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "request_body",
    [
        # Seed 003's AXYB binding requests: bodies sent *to* Huawei, never pushed by it.
        {"origNum": "+86186****5678", "areaCode": "0755"},
        {"origNum": "+86186****5679", "subscriptionId": "****"},
    ],
)
def test_binding_requests_from_the_seed_are_not_pushes(fmt: str, request_body: Any) -> None:
    # Given one of the seed's API request bodies fed to a push queue by mistake,
    # When it is parsed, Then it is refused for lacking eventType.
    error = invalid(fmt, request_body)
    assert (error.reason, error.detail) == ("missing_field", "eventType is missing or empty")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        # A lone surrogate escape is valid JSON but can never be written out again.
        (
            b'{"eventType":"answer","statusInfo":{"sessionId":"\\ud800","timestamp":"0"}}',
            "bad_unicode",
        ),
        (b'{"eventType":"fee","feeLst":[{"sessionId":"s","x":"\\udfff"}]}', "bad_unicode"),
        # An undocumented value nested deeper than the event can be serialized.
        (
            b'{"eventType":"answer","statusInfo":{"sessionId":"s","timestamp":"1548299089","x":'
            + b"[" * 400
            + b"]" * 400
            + b"}}",
            "bad_field",
        ),
    ],
)
def test_json_that_cannot_be_stored_is_refused(fmt: str, raw: bytes, reason: str) -> None:
    # Given JSON that parses but could never be stored (it would be retried forever),
    # When parsed, Then it is an InvalidMessage, so it becomes a dead letter.
    assert invalid(fmt, raw).reason == reason


@pytest.mark.parametrize("fmt", FORMATS)
def test_bytes_that_are_not_json_are_refused(fmt: str) -> None:
    # Given a form-encoded body and a non-UTF-8 body, When parsed, Then both are InvalidMessage.
    assert invalid(fmt, b"eventType=fee&feeLst=").reason == "not_json"
    assert invalid(fmt, b'{"eventType":"\xff"}').reason == "not_utf8"


@pytest.mark.parametrize(
    ("fmt", "name"),
    [
        (VOICE, "huawei.voice_call.fee_callback.json"),
        (VOICE, "huawei.voice_call.status_answer.json"),
        (PRIVACY, "huawei.privacy_number.fee.json"),
        (PRIVACY, "huawei.privacy_number.status_disconnect.json"),
    ],
)
def test_base64_wrapped_and_bom_bodies_give_the_same_events(fmt: str, name: str) -> None:
    # Given a sample as Huawei sends it, base64-wrapped (forwarded through MNS) and with a BOM,
    raw = (SAMPLES / name).read_bytes()
    # When each is parsed, Then all give the very same events.
    plain = events(fmt, raw)
    assert events(fmt, base64.b64encode(raw)) == plain
    assert events(fmt, "\ufeff".encode() + raw) == plain


# --- fee batches and dedupe keys -------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("count", [1, 2, 50])
def test_one_call_record_per_fee_record(fmt: str, count: int) -> None:
    # Given a fee push merging `count` calls that ended in the same second (1 to 50 documented),
    records = [record(sessionId=f"s-{n}", icid=f"i-{n}") for n in range(count)]
    # When it is parsed,
    result = parse(fmt, body(fee(*records)))
    # Then there is one call.record per record, in order, each with its own id and payload.
    assert [n.event.kind for n in result] == [Kind.CALL_RECORD] * count
    assert [n.event.call_id for n in result] == [f"s-{n}" for n in range(count)]
    assert len({n.event.event_id for n in result}) == count
    assert [n.payload for n in result] == records


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("fee_lst", "detail"),
    [
        ("object", ("not_object", "feeLst must be an array of 1 to 50 records, not an object")),
        ("51", ("bad_field", "feeLst holds 51 records; the document allows at most 50")),
    ],
)
def test_fee_list_of_another_shape_is_refused(
    fmt: str, fee_lst: str, detail: tuple[str, str]
) -> None:
    # Given a fee push whose feeLst contradicts the document (a list of 1 to 50 records):
    # a single record in its place, or 51 records,
    value = fee(record())
    if fee_lst == "object":
        value["feeLst"] = record()
    else:
        value["feeLst"] = [record(sessionId=f"s-{n}", icid=f"i-{n}") for n in range(51)]
    # When it is parsed, Then it is a dead letter naming feeLst, not one record of outcome unknown.
    with pytest.raises(InvalidMessage) as info:
        parse(fmt, body(value))
    assert (info.value.reason, info.value.detail) == detail


@pytest.mark.parametrize("fmt", FORMATS)
def test_fee_ids_follow_session_and_icid(fmt: str) -> None:
    # Given the same record twice, and records differing only in icid or session,
    one = events(fmt, fee(record()))[0].event_id
    again = events(fmt, fee(record(hostName="elsewhere", recordFlag=1)))[0].event_id
    other_icid = events(fmt, fee(record(icid="i-2")))[0].event_id
    other_session = events(fmt, fee(record(sessionId="s-2")))[0].event_id
    # When ids are compared, Then the key is (sessionId, icid): the re-push dedupes, others not.
    assert one == again
    assert len({one, other_icid, other_session}) == 3


@pytest.mark.parametrize("fmt", FORMATS)
def test_fee_ids_without_icid_follow_the_normalized_end_time(fmt: str) -> None:
    # Given records without icid, the same end written with one and with two spaces,
    single = events(fmt, fee(record(icid=...)))[0]
    double = events(fmt, fee(record(icid=..., callEndTime="2019-01-24  03:04:49")))[0]
    later = events(fmt, fee(record(icid=..., callEndTime="2019-01-24 03:04:50")))[0]
    # When ids are compared, Then the key is (sessionId, normalized callEndTime).
    assert single.event_id == double.event_id
    assert single.event_id != later.event_id
    assert "icid" not in single.refs


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_fee_without_end_time_falls_back_to_fail_time(fmt: str) -> None:
    # Given a record with a failTime but no callEndTime,
    event = events(fmt, fee(record(callEndTime="", failTime="2019-01-24 03:04:40")))[0]
    # When parsed, Then it happened at the failure and has no end time of its own.
    assert event.occurred_at == datetime(2019, 1, 24, 3, 4, 40, tzinfo=UTC)
    assert event.ended_at is None
    assert event.extras["failTime"] == "2019-01-24 03:04:40"


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_odd_fail_time_is_only_an_extra_when_the_end_time_is_there(fmt: str) -> None:
    # Given a record with a good callEndTime and a failTime in a form we cannot read,
    event = events(fmt, fee(record(failTime="n/a")))[0]
    # When parsed, Then the record is kept, the failTime as sent.
    assert event.occurred_at == datetime(2019, 1, 24, 3, 4, 49, tzinfo=UTC)
    assert event.extras["failTime"] == "n/a"


@pytest.mark.parametrize("fmt", FORMATS)
def test_status_and_fee_of_one_call_never_share_an_id(fmt: str) -> None:
    # Given the disconnect and the fee of one call, at the same second,
    ended = events(fmt, status("disconnect", stateCode=0))[0]
    record_event = events(fmt, fee(record(icid=...)))[0]
    # When ids are compared, Then they differ, and both belong to the call.
    assert ended.event_id != record_event.event_id
    assert ended.call_id == record_event.call_id == "s-1"


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_two_formats_never_share_ids(fmt: str) -> None:
    # Given the same body under both formats, When parsed, Then the ids differ (the format
    # name is part of every key), so a misrouted copy never hides the right one.
    other = PRIVACY if fmt == VOICE else VOICE
    assert events(fmt, status())[0].event_id != events(other, status())[0].event_id


@pytest.mark.parametrize("fmt", FORMATS)
def test_undocumented_keys_are_kept_in_extras(fmt: str) -> None:
    # Given undocumented keys in the envelope and the record, one name used by both,
    value = {**fee(record(newField={"a": 1}, hostName="h")), "batchNo": 7, "hostName": "top"}
    # When parsed, Then each is kept as sent; the envelope's clash gets a prefix.
    event = events(fmt, value)[0]
    assert event.extras["newField"] == {"a": 1}
    assert event.extras["batchNo"] == 7
    assert event.extras["hostName"] == "h"
    assert event.extras["envelope.hostName"] == "top"


@pytest.mark.parametrize("fmt", FORMATS)
def test_status_payload_is_the_envelope_and_fee_payload_the_record(fmt: str) -> None:
    # Given a status body and a fee body,
    status_body = status("answer")
    fee_body = fee(record(), record(sessionId="s-2"))
    # When parsed, Then the status row keeps its whole envelope (its eventType is the kind),
    # and each fee row only its own record (F0.2, model.Normalized).
    assert parse(fmt, body(status_body))[0].payload == status_body
    assert [n.payload for n in parse(fmt, body(fee_body))] == fee_body["feeLst"]


@pytest.mark.parametrize(
    ("fmt", "service_type", "words"),
    [
        (VOICE, "003", "Private Number AX"),
        (VOICE, "007", "Private Number AXYB"),
        (PRIVACY, "001", "Voice Call notify"),
        (PRIVACY, "002", "Voice Call callback"),
    ],
)
def test_a_record_of_the_other_product_is_refused(fmt: str, service_type: str, words: str) -> None:
    # Given a fee record whose serviceType belongs to the other product (F3.5),
    value = fee(record(), record(sessionId="s-2", serviceType=service_type))
    # When parsed, Then it is refused (its legs would be read wrongly), naming both products.
    error = invalid(fmt, value)
    assert error.reason == "wrong_product"
    assert words in error.detail
    assert fmt in error.detail
    assert error.detail.startswith("feeLst[1].")


@pytest.mark.parametrize("fmt", FORMATS)
def test_unknown_service_types_are_accepted(fmt: str) -> None:
    # Given a serviceType no document lists, When parsed, Then it is kept, not judged.
    assert events(fmt, fee(record(serviceType="099")))[0].extras["serviceType"] == "099"


# --- property-based: nothing but InvalidMessage, whatever arrives ----------------------------

SEEDS = [
    (VOICE, sample("huawei.voice_call.fee_callback.json")),
    (VOICE, sample("huawei.voice_call.fee_callback_failed.json")),
    (VOICE, sample("huawei.voice_call.status_answer.json")),
    (VOICE, sample("huawei.voice_call.status_disconnect.json")),
    (PRIVACY, sample("huawei.privacy_number.fee.json")),
    (PRIVACY, sample("huawei.privacy_number.status_disconnect.json")),
    (VOICE, status("collectInfo", digitInfo="12#", partyType=1)),
    (PRIVACY, status("callin", callRelDirection=1, notifyMode="Block")),
]


@PROPERTY
@given(data=st.data(), wrap=st.booleans())
def test_mutated_bodies_give_events_or_invalid_message(data: st.DataObject, wrap: bool) -> None:
    # Given a valid Huawei body (samples and the status shapes above) mutated up to three times,
    fmt, seed = data.draw(st.sampled_from(SEEDS))
    raw = body(data.draw(mutated(seed)))
    raw = base64.b64encode(raw) if wrap else raw
    # When it is parsed twice, Then only InvalidMessage escapes and the ids are deterministic.
    deterministic(fmt, raw)


@st.composite
def noisy_records(draw: st.DrawFn, value: dict[str, Any]) -> dict[str, Any]:
    """`value` with its envelope intact and scalar noise in the fields of its records."""
    noisy: dict[str, Any] = json.loads(json.dumps(value))
    records = noisy["feeLst"] if "feeLst" in noisy else [noisy["statusInfo"]]
    for item in records:
        for key in draw(st.lists(st.sampled_from(sorted(item)), max_size=4, unique=True)):
            item[key] = draw(json_scalars)
    return noisy


@PROPERTY
@given(data=st.data())
def test_scalar_noise_in_records_gives_events_or_invalid_message(data: st.DataObject) -> None:
    # Given a valid body whose record fields hold odd scalars (codes as text, huge numbers,
    # superscript digits, epoch strings, odd spacing),
    fmt, seed = data.draw(st.sampled_from(SEEDS))
    result = check(fmt, body(data.draw(noisy_records(seed))))
    # When parsed, Then it is events or InvalidMessage; an event always has an outcome whenever
    # it is a call record (an unknown code is `unknown`, never an error).
    if isinstance(result, list):
        for event in result:
            assert event.kind != Kind.CALL_RECORD or event.outcome is not None


@pytest.mark.parametrize(("fmt", "seed"), SEEDS)
def test_numbers_as_strings_change_nothing(fmt: str, seed: Any) -> None:
    # Given a valid body and the same body with every number sent as a string,
    # When both are parsed, Then the events are the same apart from the raw extras.
    plain = events(fmt, seed)
    strung = events(fmt, stringified(seed))
    assert [e.model_copy(update={"extras": {}}) for e in plain] == [
        e.model_copy(update={"extras": {}}) for e in strung
    ]

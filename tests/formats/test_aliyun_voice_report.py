"""`aliyun.voice_report`: the VoiceReport final call record (docs/formats.md F1.3)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from consumer.errors import InvalidMessage
from consumer.formats.aliyun_voice_report import FORMAT, NAME, parse
from consumer.model import CallEvent, Direction, HangupBy, Kind, Outcome, Provider, event_id

SAMPLES = Path(__file__).parent / "samples"


def sample(label: str) -> bytes:
    return (SAMPLES / f"{NAME}.{label}.json").read_bytes()


def record(label: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(sample(label))
    return value


def one(body: dict[str, Any] | bytes) -> CallEvent:
    events = parse(body if isinstance(body, bytes) else json.dumps(body).encode())
    assert len(events) == 1
    return events[0].event


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_the_format_is_registered_under_its_name() -> None:
    assert FORMAT.name == "aliyun.voice_report"
    assert FORMAT.provider is Provider.ALIYUN_VMS


def test_the_assembled_sample_normalizes_field_by_field() -> None:
    # Given a record assembled from the example values of the MNS-layout field table
    body = sample("assembled")
    # When parsed
    events = parse(body)
    # Then it is one answered call record, times moved from Shanghai to UTC
    assert len(events) == 1
    assert events[0].payload == json.loads(body)
    event = events[0].event
    assert event.event_id == event_id(
        NAME, "100001616500^100001871490", "200000", "2020-05-01 10:00:15"
    )
    assert event.provider is Provider.ALIYUN_VMS
    assert event.kind is Kind.CALL_RECORD
    assert event.call_id == "100001616500^100001871490"
    assert event.direction is Direction.OUTBOUND
    assert event.started_at == utc("2020-05-01 02:00:00")
    assert event.ringing_at == utc("2020-05-01 02:00:03")
    assert event.answered_at == utc("2020-05-01 02:00:05")
    assert event.ended_at == utc("2020-05-01 02:00:15")
    assert event.occurred_at == event.ended_at
    assert event.caller == "05711111****"
    assert event.callee == "1390000****"
    assert event.duration_seconds == 10
    assert event.outcome is Outcome.ANSWERED
    assert event.provider_status == "200000"
    assert event.hangup_by is HangupBy.CALLEE
    assert event.recording_url is None
    assert event.correlation_id == "123456"
    assert event.refs == {}
    # and the empty dtmf is not carried as a value
    assert event.extras == {"status_msg": "执行完成", "voice_type": "voice", "toll_type": "LOCAL"}


def test_the_seed_example_values_normalize_field_by_field() -> None:
    # Given every example value of V-VR-MNS ("10秒", a SaaS out_id, start_time with 200010)
    event = one(sample("seed000"))
    # Then the answer time makes it answered, whatever the code (F1.2 rule)
    assert event.outcome is Outcome.ANSWERED
    assert event.provider_status == "200010"
    assert event.duration_seconds == 10
    assert event.started_at == utc("2020-05-01 02:00:00")
    assert event.ringing_at == utc("2020-05-01 02:00:03")
    assert event.answered_at == utc("2017-06-01 02:00:00")
    assert event.ended_at == utc("2017-06-01 02:00:00")
    assert event.hangup_by is HangupBy.CALLEE
    assert event.correlation_id == "ALICOM_SMART_SAAS^111111^2222222"
    assert event.refs == {"task_id": "111111", "dialog_id": "100001097****"}
    assert event.extras == {
        "early_media_code": "200002",
        "status_msg": "执行完成",
        "dtmf": "123456",
        "voice_type": "voice",
        "toll_type": "LOCAL",
    }


def test_an_unanswered_busy_call_has_no_answer_time_and_its_code_decides() -> None:
    # Given a record with empty ring_time and start_time and code 200002
    event = one(sample("busy"))
    # Then it is busy, never rang, lasted 0 s, and the machine hung up
    assert event.outcome is Outcome.BUSY
    assert event.answered_at is None
    assert event.ringing_at is None
    assert event.started_at == utc("2024-05-01 02:05:00")
    assert event.occurred_at == utc("2024-05-01 02:05:02")
    assert event.duration_seconds == 0
    assert event.hangup_by is HangupBy.SYSTEM
    assert "dtmf" not in event.extras
    assert event.extras["status_msg"] == "用户忙"


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        ("200001", Outcome.ANSWERED),
        ("200003", Outcome.NO_ANSWER),
        ("200004", Outcome.INVALID_NUMBER),
        ("200005", Outcome.REJECTED),
        ("200007", Outcome.UNREACHABLE),
        ("200010", Outcome.POWERED_OFF),
        ("200011", Outcome.OUT_OF_SERVICE),
        ("200100", Outcome.UNKNOWN),
        ("200112", Outcome.BUSY),
        ("200121", Outcome.FAILED),
        ("999999", Outcome.FAILED),
        ("123", Outcome.UNKNOWN),
    ],
)
def test_without_an_answer_time_the_status_code_gives_the_outcome(
    code: str, outcome: Outcome
) -> None:
    # Given an unanswered record with a code of each family
    body = record("busy") | {"status_code": code}
    # When parsed / Then F1.2 decides, and the raw code is kept
    event = one(body)
    assert event.outcome is outcome
    assert event.provider_status == code


def test_200100_with_an_answer_time_is_answered() -> None:
    event = one(record("busy") | {"status_code": "200100", "start_time": "2024-05-01 10:05:01"})
    assert event.outcome is Outcome.ANSWERED
    assert event.answered_at == utc("2024-05-01 02:05:01")


def test_numbers_sent_as_json_numbers_read_like_strings() -> None:
    # Given status_code and duration as JSON numbers
    as_numbers = record("busy") | {"status_code": 200003, "duration": 0}
    as_strings = record("busy") | {"status_code": "200003", "duration": "0"}
    # Then the event is the same, event_id included
    assert one(as_numbers) == one(as_strings)
    assert one(as_numbers).provider_status == "200003"


def test_an_unknown_hangup_direction_is_kept_in_extras() -> None:
    event = one(record("busy") | {"hangup_direction": "平台"})
    assert event.hangup_by is None
    assert event.extras["hangup_direction"] == "平台"


def test_undocumented_keys_go_to_extras_unchanged_and_absent_ones_do_not() -> None:
    # Given keys the docs do not list, one of them nested, one empty
    body = record("assembled") | {"new_field": {"a": [1, 2]}, "sip_code": 486, "blank": ""}
    # Then they are carried as sent, minus the absent one
    extras = one(body).extras
    assert extras["new_field"] == {"a": [1, 2]}
    assert extras["sip_code"] == 486
    assert "blank" not in extras


def test_the_same_record_twice_has_the_same_event_id() -> None:
    assert one(sample("assembled")).event_id == one(sample("assembled")).event_id


@pytest.mark.parametrize(
    "change",
    [
        {"call_id": "100001616500^100001871491"},
        {"status_code": "200001"},
        {"end_time": "2020-05-01 10:00:16"},
    ],
)
def test_a_different_dedupe_key_gives_a_different_event_id(change: dict[str, str]) -> None:
    assert one(record("assembled") | change).event_id != one(sample("assembled")).event_id


def test_an_array_gives_one_event_per_record_with_its_own_payload() -> None:
    # Given an HTTP-push style array of three records of three calls
    records = [record("assembled"), record("busy"), record("story")]
    # When parsed
    events = parse(json.dumps(records).encode())
    # Then three events, in order, each with its own record and id
    assert len(events) == 3
    assert [normalized.payload for normalized in events] == records
    assert [normalized.event.outcome for normalized in events] == [
        Outcome.ANSWERED,
        Outcome.BUSY,
        Outcome.ANSWERED,
    ]
    assert len({normalized.event.event_id for normalized in events}) == 3


def test_without_end_time_the_latest_other_time_dates_the_record() -> None:
    body = {k: v for k, v in record("assembled").items() if k != "end_time"}
    event = one(body)
    assert event.ended_at is None
    assert event.occurred_at == utc("2020-05-01 02:00:05")


def test_a_record_without_any_time_is_refused() -> None:
    body = {"call_id": "1^2", "status_code": "200002", "end_time": ""}
    with pytest.raises(InvalidMessage) as caught:
        parse(json.dumps(body).encode())
    assert caught.value.reason == "missing_field"
    assert "end_time is missing" in caught.value.detail


@pytest.mark.parametrize(
    ("change", "reason", "detail"),
    [
        ({"call_id": ""}, "missing_field", "call_id is missing or empty"),
        ({"end_time": "2020/05/01 10:00:15"}, "bad_time", "end_time is not a yyyy-MM-dd"),
        ({"start_time": "0001-01-01 00:00:00"}, "bad_time", "start_time is out of range"),
        ({"duration": "十秒"}, "bad_field", "duration is not a number of seconds"),
        ({"caller": ["0571"]}, "bad_field", "caller must be a string or number"),
        ({"status_msg": {"text": "x"}}, "bad_field", "status_msg must be a string or number"),
    ],
)
def test_bad_fields_are_refused_by_name(change: dict[str, Any], reason: str, detail: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse(json.dumps(record("assembled") | change).encode())
    assert caught.value.reason == reason
    assert detail in caught.value.detail

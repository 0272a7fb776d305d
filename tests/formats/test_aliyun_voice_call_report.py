"""`aliyun.voice_call_report`: VoiceCallReport intermediate states (docs/formats.md F1.4)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from consumer.errors import InvalidMessage
from consumer.formats.aliyun_voice_call_report import FORMAT, NAME, parse
from consumer.model import CallEvent, Direction, Kind, Outcome, Provider, event_id

SAMPLES = Path(__file__).parent / "samples"
STORY = sorted(SAMPLES.glob(f"{NAME}.story_*.json"))
TIME_FIELDS = ("started_at", "ringing_at", "answered_at", "ended_at")


def one(body: dict[str, Any] | bytes) -> CallEvent:
    events = parse(body if isinstance(body, bytes) else json.dumps(body).encode())
    assert len(events) == 1
    return events[0].event


def base(**change: Any) -> dict[str, Any]:
    return {
        "call_id": "100002233401^100002478812",
        "status_code": "200101",
        "status_time": "2024-05-01 10:00:00",
        "out_id": "order-1",
    } | change


def test_the_format_is_registered_under_its_name() -> None:
    assert FORMAT.name == "aliyun.voice_call_report"
    assert FORMAT.provider is Provider.ALIYUN_VMS


def test_the_dtmf_page_example_is_one_dtmf_input() -> None:
    # Given the example of help.aliyun.com/zh/vms/developer-reference/voicecallreport-4,
    # verbatim: an array of one DTMF record
    body = (SAMPLES / f"{NAME}.dtmf_page.json").read_bytes()
    # When parsed
    events = parse(body)
    # Then one call.input event carries the key pressed and no call time
    assert len(events) == 1
    assert events[0].payload == json.loads(body)[0]
    event = events[0].event
    assert event.event_id == event_id(
        NAME, "1***********3^1***********2", "300000", "2023-03-06 16:21:12", "1"
    )
    assert event.kind is Kind.CALL_INPUT
    assert event.call_id == "1***********3^1***********2"
    assert event.occurred_at == datetime(2023, 3, 6, 8, 21, 12, tzinfo=UTC)
    assert event.direction is Direction.OUTBOUND
    assert event.provider_status == "300000"
    assert event.outcome is None
    assert all(getattr(event, field) is None for field in TIME_FIELDS)
    assert event.correlation_id == "4*************2"
    assert event.refs == {}
    assert event.extras == {"smart_status_code": "ANSWERED", "dtmf": "1"}


@pytest.mark.parametrize(
    ("code", "kind", "time_field", "outcome"),
    [
        ("200101", Kind.CALL_INITIATED, "started_at", None),
        ("200201", Kind.CALL_RINGING, "ringing_at", None),
        ("200202", Kind.CALL_RINGING, "ringing_at", None),
        ("200102", Kind.CALL_ANSWERED, "answered_at", None),
        ("200103", Kind.CALL_ANSWERED, "answered_at", None),
        ("200100", Kind.CALL_ENDED, "ended_at", Outcome.UNKNOWN),
        ("300000", Kind.CALL_INPUT, None, None),
        ("200002", Kind.CALL_ENDED, "ended_at", Outcome.BUSY),
        ("200003", Kind.CALL_ENDED, "ended_at", Outcome.NO_ANSWER),
        ("200000", Kind.CALL_ENDED, "ended_at", Outcome.ANSWERED),
        ("200113", Kind.CALL_ENDED, "ended_at", Outcome.NO_ANSWER),
        ("200010", Kind.CALL_ENDED, "ended_at", Outcome.POWERED_OFF),
        ("987654", Kind.CALL_ENDED, "ended_at", Outcome.UNKNOWN),
    ],
)
def test_the_status_code_gives_kind_matching_time_and_outcome(
    code: str, kind: Kind, time_field: str | None, outcome: Outcome | None
) -> None:
    # Given a state at 10:00:00 Shanghai / When parsed
    event = one(base(status_code=code))
    # Then the kind follows F1.4, the status_time fills the matching *_at, finals get an outcome
    expected_time = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)
    assert event.kind is kind
    assert event.occurred_at == expected_time
    for field in TIME_FIELDS:
        assert getattr(event, field) == (expected_time if field == time_field else None)
    assert event.outcome is outcome
    assert event.provider_status == code


def test_a_single_call_story_gives_five_distinct_events_of_one_call() -> None:
    # Given the five states of one single call, one MNS message each
    events = [event for path in STORY for event in parse(path.read_bytes())]
    # Then five events in order, one call, five ids, one correlation id
    assert [n.event.kind for n in events] == [
        Kind.CALL_INITIATED,
        Kind.CALL_RINGING,
        Kind.CALL_ANSWERED,
        Kind.CALL_INPUT,
        Kind.CALL_ENDED,
    ]
    assert {n.event.call_id for n in events} == {"100002233401^100002478812"}
    assert {n.event.correlation_id for n in events} == {"order-20240501-0001"}
    assert len({n.event.event_id for n in events}) == 5
    occurred = [n.event.occurred_at for n in events]
    assert occurred == sorted(occurred)


def test_two_keys_pressed_in_the_same_second_are_two_events() -> None:
    # Given two DTMF states of one call with the same status_time
    first = one(base(status_code="300000", dtmf="1"))
    second = one(base(status_code="300000", dtmf="2"))
    # Then they do not share an id, and each carries its key
    assert first.event_id != second.event_id
    assert (first.extras["dtmf"], second.extras["dtmf"]) == ("1", "2")


def test_the_same_state_delivered_twice_has_the_same_id() -> None:
    assert one(base()).event_id == one(base()).event_id
    assert one(base(status_code=200101)).event_id == one(base()).event_id


@pytest.mark.parametrize(
    "change",
    [
        {"call_id": "other^call"},
        {"status_code": "200201"},
        {"status_time": "2024-05-01 10:00:01"},
    ],
)
def test_a_different_dedupe_key_gives_a_different_id(change: dict[str, str]) -> None:
    assert one(base(**change)).event_id != one(base()).event_id


def test_an_array_gives_one_event_per_state() -> None:
    records = [base(status_code=code) for code in ("200101", "200201", "200102", "200100")]
    events = parse(json.dumps(records).encode())
    assert len(events) == 4
    assert [n.payload for n in events] == records
    assert len({n.event.event_id for n in events}) == 4


def test_a_saas_out_id_names_its_task() -> None:
    event = one(base(out_id="ALICOM_SMART_SAAS^777^888"))
    assert event.correlation_id == "ALICOM_SMART_SAAS^777^888"
    assert event.refs == {"task_id": "777"}


def test_undocumented_keys_go_to_extras() -> None:
    event = one(base(leg="B", detail={"sip": 180}, empty=None))
    assert event.extras == {"leg": "B", "detail": {"sip": 180}}


@pytest.mark.parametrize(
    ("change", "reason", "detail"),
    [
        ({"call_id": None}, "missing_field", "call_id is missing or empty"),
        ({"status_code": ""}, "missing_field", "status_code is missing or empty"),
        ({"status_time": " "}, "missing_field", "status_time is missing or empty"),
        ({"status_time": "2024-05-01"}, "bad_time", "status_time is not a yyyy-MM-dd"),
        ({"dtmf": [1]}, "bad_field", "dtmf must be a string or number"),
    ],
)
def test_bad_states_are_refused_by_name(change: dict[str, Any], reason: str, detail: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse(json.dumps(base(**change)).encode())
    assert caught.value.reason == reason
    assert detail in caught.value.detail

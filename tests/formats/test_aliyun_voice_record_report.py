"""`aliyun.voice_record_report`: VoiceRecordReport, recording ready (docs/formats.md F1.5)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from consumer.errors import InvalidMessage
from consumer.formats.aliyun_voice_record_report import FORMAT, NAME, parse
from consumer.model import CallEvent, Direction, Kind, Provider, event_id

SAMPLES = Path(__file__).parent / "samples"


def sample(label: str) -> bytes:
    return (SAMPLES / f"{NAME}.{label}.json").read_bytes()


def story(**change: Any) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(sample("story"))
    return value | change


def one(body: dict[str, Any] | bytes) -> CallEvent:
    events = parse(body if isinstance(body, bytes) else json.dumps(body).encode())
    assert len(events) == 1
    return events[0].event


def test_the_format_is_registered_under_its_name() -> None:
    assert FORMAT.name == "aliyun.voice_record_report"
    assert FORMAT.provider is Provider.ALIYUN_VMS


def test_the_push_page_example_normalizes_field_by_field() -> None:
    # Given the example of help.aliyun.com/zh/vms/voicerecordreport-6 (HTTP batch push),
    # verbatim: an array of one record
    body = sample("vms_push")
    # When parsed
    events = parse(body)
    # Then one recording.ready with the URL, the call's times in UTC, and no outcome
    assert len(events) == 1
    assert events[0].payload == json.loads(body)[0]
    event = events[0].event
    assert event.event_id == event_id(NAME, "100001616500^1000018****", "http://xxxx")
    assert event.kind is Kind.RECORDING_READY
    assert event.call_id == "100001616500^1000018****"
    assert event.direction is Direction.OUTBOUND
    assert event.answered_at == datetime(2017, 6, 1, 2, 0, tzinfo=UTC)
    assert event.ended_at == datetime(2017, 6, 1, 2, 3, tzinfo=UTC)
    assert event.occurred_at == event.ended_at
    assert event.duration_seconds == 10
    assert event.provider_status == "200010"
    assert event.outcome is None
    assert event.recording_url == "http://xxxx"
    assert event.correlation_id == "123456"
    assert event.refs == {}
    assert event.extras == {"record_begin_time": "2017-06-01 10:00:00"}
    assert event.started_at is None
    assert event.ringing_at is None


def test_the_story_recording_belongs_to_the_story_call() -> None:
    event = one(sample("story"))
    assert event.call_id == "100002233401^100002478812"
    assert event.recording_url == "https://vms-record.example.invalid/100002233401.mp3"
    assert event.duration_seconds == 30
    assert event.correlation_id == "order-20240501-0001"
    assert event.extras == {}


def test_duration_as_a_json_integer_or_with_seconds_unit() -> None:
    assert one(story(duration=30)).duration_seconds == 30
    assert one(story(duration="30秒")).duration_seconds == 30


def test_without_end_time_the_recording_start_dates_the_event() -> None:
    event = one(story(end_time="", record_begin_time="2024-05-01 10:00:07"))
    assert event.ended_at is None
    assert event.occurred_at == datetime(2024, 5, 1, 2, 0, 7, tzinfo=UTC)


def test_the_same_recording_twice_has_the_same_id_and_another_file_another() -> None:
    assert one(story()).event_id == one(story()).event_id
    assert one(story(record_file="https://x.invalid/2.mp3")).event_id != one(story()).event_id
    assert one(story(call_id="other^call")).event_id != one(story()).event_id


def test_an_array_gives_one_event_per_recording() -> None:
    records = [story(), story(record_file="https://x.invalid/2.mp3", call_id="2^2")]
    events = parse(json.dumps(records).encode())
    assert len(events) == 2
    assert [n.event.recording_url for n in events] == [
        "https://vms-record.example.invalid/100002233401.mp3",
        "https://x.invalid/2.mp3",
    ]


def test_undocumented_keys_go_to_extras() -> None:
    assert one(story(file_size=1024, format="mp3")).extras == {"file_size": 1024, "format": "mp3"}


@pytest.mark.parametrize(
    ("change", "reason", "detail"),
    [
        ({"record_file": ""}, "missing_field", "record_file is missing or empty"),
        ({"call_id": ""}, "missing_field", "call_id is missing or empty"),
        (
            {"end_time": "", "start_time": None},
            "missing_field",
            "end_time is missing or empty",
        ),
        ({"record_begin_time": "10:00"}, "bad_time", "record_begin_time is not a yyyy-MM-dd"),
        ({"duration": "1.5"}, "bad_field", "duration is not a number of seconds"),
    ],
)
def test_bad_records_are_refused_by_name(change: dict[str, Any], reason: str, detail: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse(json.dumps(story(**change)).encode())
    assert caught.value.reason == reason
    assert detail in caught.value.detail

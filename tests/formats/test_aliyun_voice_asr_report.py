"""`aliyun.voice_asr_report`: VoiceRTASRReport real-time ASR sentences (docs/formats.md F1.6)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from consumer.errors import InvalidMessage
from consumer.formats.aliyun_voice_asr_report import FORMAT, NAME, parse
from consumer.model import CallEvent, Direction, Kind, Provider, event_id

SAMPLES = Path(__file__).parent / "samples"


def sample(label: str) -> bytes:
    return (SAMPLES / f"{NAME}.{label}.json").read_bytes()


def fields(**change: Any) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(sample("fields"))
    return value | change


def one(body: dict[str, Any] | bytes) -> CallEvent:
    events = parse(body if isinstance(body, bytes) else json.dumps(body).encode())
    assert len(events) == 1
    return events[0].event


def test_the_format_is_registered_under_its_name() -> None:
    assert FORMAT.name == "aliyun.voice_asr_report"
    assert FORMAT.provider is Provider.ALIYUN_VMS


def test_a_sentence_built_from_the_documented_examples_normalizes_field_by_field() -> None:
    # Given role B / id2 / 你好 at 1200-2050 ms of a call that began 10:00:05 Shanghai
    body = sample("fields")
    # When parsed
    events = parse(body)
    # Then one asr.sentence dated begin_time + begin_offset, in UTC with milliseconds
    assert len(events) == 1
    assert events[0].payload == json.loads(body)
    event = events[0].event
    assert event.event_id == event_id(NAME, "100001616500^100001871490", "B", "id2", 1200, 2050)
    assert event.kind is Kind.ASR_SENTENCE
    assert event.call_id == "100001616500^100001871490"
    assert event.direction is Direction.OUTBOUND
    assert event.occurred_at == datetime(2020, 5, 1, 2, 0, 6, 200_000, tzinfo=UTC)
    assert event.model_dump(mode="json")["occurred_at"] == "2020-05-01T02:00:06.200Z"
    assert event.correlation_id == "123456"
    assert event.refs == {}
    assert event.extras == {
        "role": "B",
        "identity": "id2",
        "words": "你好",
        "begin_offset": 1200,
        "end_offset": 2050,
        "begin_time": "2020-05-01 10:00:05",
    }
    assert event.outcome is None
    assert event.answered_at is None


def test_offsets_sent_as_strings_read_like_numbers() -> None:
    as_strings = one(fields(begin_offset="1200", end_offset="2050"))
    assert as_strings == one(fields())
    assert as_strings.extras["begin_offset"] == 1200


def test_the_sentences_of_one_call_are_distinct_events() -> None:
    # Given three sentences: two speakers, and one speaker twice
    sentences = [
        fields(),
        fields(
            role="A", identity="id1", words="您好，这里是客服。", begin_offset=0, end_offset=900
        ),
        fields(words="我想确认订单。", begin_offset=2600, end_offset=4100),
    ]
    # When sent as one array
    events = parse(json.dumps(sentences).encode())
    # Then three events with three ids, each dated by its own offset
    assert len(events) == 3
    assert len({n.event.event_id for n in events}) == 3
    assert [n.event.occurred_at.isoformat() for n in events] == [
        "2020-05-01T02:00:06.200000+00:00",
        "2020-05-01T02:00:05+00:00",
        "2020-05-01T02:00:07.600000+00:00",
    ]


@pytest.mark.parametrize(
    "change",
    [{"role": "A"}, {"identity": "id3"}, {"begin_offset": 1201}, {"end_offset": 2051}],
)
def test_a_different_dedupe_key_gives_a_different_id(change: dict[str, Any]) -> None:
    assert one(fields(**change)).event_id != one(fields()).event_id


def test_the_same_sentence_twice_has_the_same_id() -> None:
    assert one(sample("fields")).event_id == one(sample("fields")).event_id


def test_a_sentence_without_end_offset_or_words_is_still_a_sentence() -> None:
    event = one(fields(end_offset=None, words=""))
    assert "end_offset" not in event.extras
    assert "words" not in event.extras
    assert event.occurred_at == datetime(2020, 5, 1, 2, 0, 6, 200_000, tzinfo=UTC)


def test_the_story_sentence_belongs_to_the_story_call() -> None:
    event = one(sample("story"))
    assert event.call_id == "100002233401^100002478812"
    assert event.occurred_at == datetime(2024, 5, 1, 2, 0, 11, 200_000, tzinfo=UTC)
    assert event.extras["words"] == "好的，我确认。"


def test_undocumented_keys_go_to_extras() -> None:
    assert one(fields(confidence=0.93)).extras["confidence"] == 0.93


@pytest.mark.parametrize(
    ("change", "reason", "detail"),
    [
        ({"begin_offset": ""}, "missing_field", "begin_offset is missing or empty"),
        ({"begin_offset": "1.5"}, "bad_field", "begin_offset is not a whole number"),
        ({"end_offset": "end"}, "bad_field", "end_offset is not a whole number"),
        ({"begin_time": None}, "missing_field", "begin_time is missing or empty"),
        ({"begin_time": "2020-05-01 25:00:00"}, "bad_time", "begin_time is not a yyyy-MM-dd"),
        ({"begin_offset": "9" * 18}, "bad_time", "out of range"),
        ({"call_id": ""}, "missing_field", "call_id is missing or empty"),
        ({"words": {"text": "你好"}}, "bad_field", "words must be a string or number"),
    ],
)
def test_bad_sentences_are_refused_by_name(
    change: dict[str, Any], reason: str, detail: str
) -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse(json.dumps(fields(**change)).encode())
    assert caught.value.reason == reason
    assert detail in caught.value.detail

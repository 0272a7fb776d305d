"""Every example of Aliyun's VMS and AICCS receipt pages, verbatim, with its normalized fields.

Bodies longer than a line are the shipped samples (`consumer/testing/samples/aliyun.*`), so the
property tests mutate them too; docs/formats.md lists each one with its page. Both the MNS
layout (one object) and the HTTP batch push layout (a JSON array) are covered.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from consumer.errors import InvalidMessage
from consumer.formats import parse
from consumer.model import CallEvent, Direction, HangupBy, Kind, Outcome, event_id

SAMPLES = Path(__file__).parent / "samples"
REPORT = "aliyun.voice_report"
CALL = "aliyun.voice_call_report"
RECORD = "aliyun.voice_record_report"


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def one(fmt: str, body: bytes) -> CallEvent:
    events = parse(fmt, body)
    assert len(events) == 1
    # The payload kept is the record itself, not the array that carried it.
    assert events[0].payload == json.loads(body)[0]
    return events[0].event


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- VoiceReport ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "out_id"),
    [
        # help.aliyun.com/zh/vms/voicereport-6 (VMS, HTTP batch push)
        (
            "aliyun.voice_report.vms_push.json",
            "PROD#2021042810271227129999192500610008S#new#MYBK****",
        ),
        # help.aliyun.com/zh/aiccs/developer-reference/voicereportaiccs-1 (AICCS, HTTP batch push)
        ("aliyun.voice_report.aiccs_push.json", "123456"),
    ],
)
def test_push_voice_report_takes_b_start_time_as_the_answer(name: str, out_id: str) -> None:
    # Given the page's example: the push layout, whose answer time is `b_start_time`,
    body = sample(name)
    # When normalized,
    event = one(REPORT, body)
    # Then the answer time is set (Shanghai → UTC), so the call is answered with its duration.
    assert event.event_id == event_id(
        REPORT, "122628733198^10942206****", "200003", "2021-04-28 10:03:40"
    )
    assert event.kind is Kind.CALL_RECORD
    assert event.call_id == "122628733198^10942206****"
    assert event.direction is Direction.OUTBOUND
    assert event.started_at == utc("2021-04-28 02:02:34")
    assert event.ringing_at == utc("2021-04-28 02:02:40")
    assert event.answered_at == utc("2021-04-28 02:03:40")
    assert event.ended_at == utc("2021-04-28 02:03:40")
    assert event.occurred_at == event.ended_at
    assert event.duration_seconds == 10
    # The example pairs 200003 (not answered) with an answer time; the field's definition
    # (未接通则为空: empty when not answered) decides, as for `start_time` (docs/formats.md).
    assert event.outcome is Outcome.ANSWERED
    assert event.provider_status == "200003"
    assert (event.caller, event.callee) == ("20200900****", "130****0000")
    assert event.hangup_by is None
    assert event.correlation_id == out_id
    assert event.refs == {}
    expected = {
        "status_msg": "执行完成",
        "voice_type": "voice",
        "toll_type": "LOCAL",
        "b_start_time": "2021-04-28 10:03:40",
    }
    if "vms" in name:
        expected["dtmf"] = "1"
    assert event.extras == expected


def test_dual_call_legs_fill_the_call_fields_they_stand_for() -> None:
    # Given a dual-call record of the voicereport-3 layout (a_* caller leg, b_* callee leg,
    # hangup_direction "aleg") without the call-level times, as its example starts,
    record = {
        "a_start_time": "2023-02-06 17:50:48",
        "a_ring_time": "2023-02-06 17:50:48",
        "status_code": "200100",
        "smart_status_code": "ANSWERED",
        "hangup_direction": "aleg",
        "a_originate_time": "2023-02-06 17:50:47",
        "b_originate_time": "2023-02-06 17:50:52",
        "b_ring_time": "2023-02-06 17:50:53",
        "b_start_time": "2023-02-06 17:50:57",
        "b_end_time": "2023-02-06 17:51:30",
        "b_duration": 33,
        "call_id": "1***********3^1***********9",
    }
    # When normalized,
    event = one(REPORT, json.dumps([record]).encode())
    # Then the caller leg starts the call, the callee leg rings, answers and ends it,
    assert event.started_at == utc("2023-02-06 09:50:47")
    assert event.ringing_at == utc("2023-02-06 09:50:53")
    assert event.answered_at == utc("2023-02-06 09:50:57")
    assert event.ended_at == event.occurred_at == utc("2023-02-06 09:51:30")
    assert event.duration_seconds == 33
    assert event.outcome is Outcome.ANSWERED
    # and "aleg" hung up: the caller.
    assert event.hangup_by is HangupBy.CALLER
    assert event.extras["a_start_time"] == "2023-02-06 17:50:48"
    assert event.extras["smart_status_code"] == "ANSWERED"


def test_the_call_level_time_wins_over_its_leg() -> None:
    # Given a record with both `start_time` and a different `b_start_time`,
    record = {
        "call_id": "c^1",
        "status_code": "200000",
        "start_time": "2023-03-13 14:42:22",
        "b_start_time": "2023-03-13 14:42:23",
        "end_time": "2023-03-13 14:43:11",
    }
    # When normalized, Then `start_time` is the answer time, the leg's is kept in extras.
    event = one(REPORT, json.dumps([record]).encode())
    assert event.answered_at == utc("2023-03-13 06:42:22")
    assert event.extras["b_start_time"] == "2023-03-13 14:42:23"


def test_a_malformed_leg_time_is_named() -> None:
    # Given a push record whose b_start_time is not a time,
    record = {"call_id": "c^1", "status_code": "200000", "b_start_time": "soon"}
    # When normalized, Then it is bad_time naming the element and the key.
    with pytest.raises(InvalidMessage) as info:
        parse(REPORT, json.dumps([record]).encode())
    assert info.value.reason == "bad_time"
    assert info.value.detail.startswith("body[0]: b_start_time")


# --- VoiceCallReport --------------------------------------------------------------------------


def test_push_call_report_page_example_is_the_call_being_placed() -> None:
    # Given the example of help.aliyun.com/zh/vms/voicecallreport-6, verbatim (the AICCS page
    # help.aliyun.com/zh/aiccs/developer-reference/voicecallreportaiccs-1 shows the same body),
    event = one(CALL, sample("aliyun.voice_call_report.vms_push.json"))
    # Then 200101 is call.initiated, dated by status_time.
    assert event.kind is Kind.CALL_INITIATED
    assert event.call_id == "100001616500^10000187****"
    assert event.started_at == event.occurred_at == utc("2021-04-28 01:55:02")
    assert event.outcome is None
    assert event.provider_status == "200101"
    assert event.correlation_id == "PROD#2021042810271227129999192500610008S#new#MYBK****#"
    assert event.extras == {}


def test_outbound_page_example_is_the_hang_up() -> None:
    # Given the outbound example of help.aliyun.com/zh/vms/developer-reference/voicecallreport-1,
    event = one(CALL, sample("aliyun.voice_call_report.outbound_page.json"))
    # Then 200100 ends the call with no outcome of its own (the VoiceReport gives it),
    assert event.kind is Kind.CALL_ENDED
    assert event.ended_at == event.occurred_at == utc("2023-03-06 08:23:59")
    assert event.outcome is Outcome.UNKNOWN
    # and the out_id, a JSON text, is echoed whole.
    assert event.correlation_id == '{"callType":2,"rID":45******************7}'
    assert event.extras == {"smart_status_code": "ANSWERED"}


def test_inbound_page_example_takes_biz_id_as_the_call_id() -> None:
    # Given the inbound example of the same page: no call_id, but biz_id and extend,
    event = one(CALL, sample("aliyun.voice_call_report.inbound_page.json"))
    # Then biz_id is the call id and the call is inbound, answered at status_time.
    assert event.call_id == "1***********3^1***********6"
    assert event.direction is Direction.INBOUND
    assert event.kind is Kind.CALL_ANSWERED
    assert event.answered_at == event.occurred_at == utc("2023-03-05 16:47:10")
    assert event.event_id == event_id(
        CALL, "1***********3^1***********6", "200102", "2023-03-06 00:47:10", None
    )
    assert event.correlation_id is None
    assert event.extras == {"extend": "3619", "smart_status_code": "ANSWERED"}


@pytest.mark.parametrize(
    ("page", "body", "kind", "correlation_id"),
    [
        (
            "help.aliyun.com/zh/vms/developer-reference/voicecallreport-2",
            '[\n{\n"status_code": "300000",\n"smart_status_code": "ANSWERED",\n'
            '"status_time": "2023-03-06 16:21:12",\n"out_id": "43****************0",\n'
            '"call_id": "1***********3^1***********2"\n}\n]',
            Kind.CALL_INPUT,
            "43****************0",
        ),
        (
            "help.aliyun.com/zh/vms/developer-reference/voicecallreport-5",
            '[\n{\n"status_code": "200100",\n"smart_status_code": "ANSWERED",\n'
            '"status_time": "2023-03-06 16:23:59",\n'
            '"out_id": "{\\"callType\\":2,\\"rID\\":450*********1}",\n'
            '"call_id": "1**********2^1*********4"\n}\n]',
            Kind.CALL_ENDED,
            '{"callType":2,"rID":450*********1}',
        ),
    ],
)
def test_the_other_call_report_page_examples(
    page: str, body: str, kind: Kind, correlation_id: str
) -> None:
    # Given the example of `page`, verbatim,
    event = one(CALL, body.encode())
    # Then its kind follows the code, and a DTMF record without dtmf carries no keys.
    assert event.kind is kind, page
    assert event.correlation_id == correlation_id
    assert "dtmf" not in event.extras


# --- VoiceRecordReport ------------------------------------------------------------------------


def test_smart_call_recording_page_example() -> None:
    # Given the example of help.aliyun.com/en/vms/developer-reference/voicerecordreport-2:
    # duration a JSON number 0, a signed OSS URL, smart_status_code,
    event = one(RECORD, sample("aliyun.voice_record_report.smart_page.json"))
    # Then the recording is dated by end_time and carries the whole URL.
    assert event.kind is Kind.RECORDING_READY
    assert event.call_id == "1*******5^2*******0"
    assert event.recording_url == (
        "http://aliyuncs.com/Free_record.wav?Expires=****2&OSSAccessKeyId=b****LI&Signature=zqj4****"
    )
    assert event.answered_at == utc("2023-03-15 08:02:07")
    assert event.ended_at == event.occurred_at == utc("2023-03-15 08:03:07")
    assert event.duration_seconds == 0
    assert event.provider_status == "200005"
    assert event.outcome is None
    assert event.correlation_id == "2aqbhgty1***************2"
    assert event.extras == {
        "record_begin_time": "2023-03-15 16:02:11",
        "smart_status_code": "ANSWERED",
    }


# The example of the Chinese voicerecordreportaiccs-1 page, verbatim (not shipped as a sample: it
# is no message the demo should load).
AICCS_RECORD_PUSH_ZH = """[
  {
    "call_id": "100001616500^1000018****",
    "start_time": "2017-06-01 10:00:00",
    "end_time": "2017-06-01 10:03:00",
    "duration": "10"
    "status_code": "200010"
    "record_file": "http://xxxx"
    "out_id": "123456"
    "record_begin_time": "2017-06-01 10:00:00"
  }
]
"""


def test_the_aiccs_recording_page_example_as_published_is_not_json() -> None:
    # Given the example of help.aliyun.com/zh/aiccs/developer-reference/voicerecordreportaiccs-1
    # as published (four commas missing; the English page has them),
    body = AICCS_RECORD_PUSH_ZH.encode()
    # When parsed, Then it is a dead letter saying why, not a guess.
    with pytest.raises(InvalidMessage) as info:
        parse(RECORD, body)
    assert info.value.reason == "not_json"
    # And with the commas put back it is the push page's record (voicerecordreport-6).
    fixed = body.decode().replace('"\n    "', '",\n    "').encode()
    assert parse(RECORD, fixed)[0].event == one(
        RECORD, sample("aliyun.voice_record_report.vms_push.json")
    )

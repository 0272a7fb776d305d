"""`huawei.voice_call` (docs/formats.md F3): Voice Call status events and fee records."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from consumer.formats import huawei_voice_call, parse
from consumer.model import CallEvent, Direction, HangupBy, Kind, Outcome, Provider, event_id

FMT = "huawei.voice_call"
SAMPLES = Path(__file__).parent / "samples"


def utc(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def events(value: Any) -> list[CallEvent]:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return [normalized.event for normalized in parse(FMT, raw)]


def one(value: Any) -> CallEvent:
    result = events(value)
    assert len(result) == 1
    return result[0]


def status(event_type: str, **fields: Any) -> dict[str, Any]:
    info = {"sessionId": "s-1", "timestamp": "2019-01-24 03:04:49", **fields}
    return {"eventType": event_type, "statusInfo": info}


def sample(name: str) -> bytes:
    return (SAMPLES / f"huawei.voice_call.{name}.json").read_bytes()


# The callback record of F3.10 (rtc_04_0032), as the base of varied cases.
CALLBACK = json.loads(sample("fee_callback"))["feeLst"][0]

# A voice notification (001) record assembled from the F3.5 field table.
NOTIFY = {
    "direction": 0,
    "spId": "CaaS_Test_01",
    "appKey": "ka4k******YnEm2",
    "icid": "CAE-20190124120000-1",
    "bindNum": "+8675512****78",
    "sessionId": "1200_1_0_20190124040000@callenabler245.huaweicaas.com",
    "callerNum": "+8675512****78",
    "calleeNum": "+86138****0021",
    "callOutStartTime": "2019-01-24 04:00:00",
    "callOutAlertingTime": "2019-01-24 04:00:03",
    "callOutAnswerTime": "2019-01-24 04:00:09",
    "callEndTime": "2019-01-24 04:00:40",
    "callOutUnaswRsn": 0,
    "ulFailReason": 0,
    "sipStatusCode": 0,
    "ttsPlayTimes": 1,
    "ttsTransDuration": 12,
    "dynIVRStartTime": "2019-01-24 04:00:10",
    "dynIVRPath": "0-2-3",
    "serviceType": "001",
    "hostName": "callenabler245.huaweicaas.com",
    "userData": "order-42",
}


def callback(**changes: Any) -> CallEvent:
    fields = {**CALLBACK, **changes}
    return one({"eventType": "fee", "feeLst": [{k: v for k, v in fields.items() if v is not ...}]})


def notify(**changes: Any) -> CallEvent:
    fields = {**NOTIFY, **changes}
    return one({"eventType": "fee", "feeLst": [{k: v for k, v in fields.items() if v is not ...}]})


# --- samples ---------------------------------------------------------------------------------


def test_format_is_registered_for_huawei_voice() -> None:
    # Given the registry, When asked for the format, Then it names the Voice Call provider.
    assert huawei_voice_call.FORMAT.name == FMT
    assert huawei_voice_call.FORMAT.provider == Provider.HUAWEI_VOICE


def test_demo_answer_event_with_double_space() -> None:
    # Given the Huawei demo's answer event (two spaces in its UTC timestamp, F3.10),
    event = one(sample("status_answer"))
    # When normalized, Then it is the answer of that session at that UTC instant.
    assert event.event_id == event_id(
        FMT,
        "status",
        "1200_366_0_20161228102743@callenabler.home1.com",
        "answer",
        "2018-04-09T10:57:42Z",
        None,
        None,
        None,
        None,
    )
    assert event.provider == Provider.HUAWEI_VOICE
    assert event.kind == Kind.CALL_ANSWERED
    assert event.call_id == "1200_366_0_20161228102743@callenabler.home1.com"
    assert event.occurred_at == event.answered_at == utc("2018-04-09 10:57:42")
    assert (event.started_at, event.ringing_at, event.ended_at) == (None, None, None)
    assert event.correlation_id == "cwgtest"
    assert event.direction == Direction.OUTBOUND
    assert (event.outcome, event.provider_status, event.hangup_by) == (None, None, None)
    assert (event.caller, event.callee) == (None, None)
    assert event.refs == {}
    assert event.extras == {"eventType": "answer"}


def test_doc_disconnect_event() -> None:
    # Given the disconnect of F3.10 (stateCode 0),
    event = one(sample("status_disconnect"))
    # When normalized, Then it ends the call answered, with its parties as sent.
    assert event.kind == Kind.CALL_ENDED
    assert event.call_id == "1201_612_4294967295_20190124030424@callenabler245.huaweicaas.com"
    assert event.occurred_at == event.ended_at == utc("2019-01-24 03:04:49")
    assert (event.caller, event.callee) == ("+86138****0022", "+86138****0021")
    assert (event.outcome, event.provider_status) == (Outcome.ANSWERED, "0")
    assert event.extras == {"eventType": "disconnect", "stateDesc": "The user releases the call."}
    assert event.refs == {}


def test_doc_callback_fee_record() -> None:
    # Given the callback CDR of F3.10 (rtc_04_0032),
    event = one(sample("fee_callback"))
    # When normalized, Then A's real number calls B, timed by the A leg's start and B's answer.
    assert event.event_id == event_id(
        FMT,
        "fee",
        "1201_612_4294967295_20190124030424@callenabler245.huaweicaas.com",
        "CAE-20190124110424-12019775",
        None,
    )
    assert event.kind == Kind.CALL_RECORD
    assert event.call_id == "1201_612_4294967295_20190124030424@callenabler245.huaweicaas.com"
    assert event.caller == "+86138****0021"
    assert event.callee == "+86138****7021"
    assert event.direction == Direction.OUTBOUND
    assert event.started_at == utc("2019-01-24 03:04:24")
    assert event.ringing_at == utc("2019-01-24 03:04:36")
    assert event.answered_at == utc("2019-01-24 03:04:38")
    assert event.ended_at == event.occurred_at == utc("2019-01-24 03:04:49")
    assert event.duration_seconds == 11
    assert (event.outcome, event.provider_status, event.hangup_by) == (Outcome.ANSWERED, "0", None)
    assert (event.recording_url, event.correlation_id) == (None, None)
    assert event.refs == {
        "sp_id": "CaaS_Test_01",
        "app_key": "ka4k******YnEm2",
        "icid": "CAE-20190124110424-12019775",
        "bind_num": "+8675512****78",
    }
    assert event.extras == {
        "direction": 0,
        "callerNum": "+86138****0022",
        "fwdDisplayNum": "+86138****0022",
        "fwdStartTime": "2019-01-24 03:04:31",
        "fwdUnaswRsn": 0,
        "sipStatusCode": 0,
        "callOutAlertingTime": "2019-01-24 03:04:27",
        "callOutAnswerTime": "2019-01-24 03:04:31",
        "callOutUnaswRsn": 0,
        "recordFlag": 0,
        "ttsPlayTimes": 0,
        "ttsTransDuration": 0,
        "serviceType": "002",
        "hostName": "callenabler245.huaweicaas.com",
    }


def test_doc_failed_b_leg_fee_record() -> None:
    # Given the failed B leg F3.10 describes (no fwdAnswerTime; 518 with SIP 480),
    event = one(sample("fee_callback_failed"))
    # When normalized, Then SIP 480 decides (518 says "read with Q.850 / SIP"), and the
    # teardown point stays the provider status.
    assert event.outcome == Outcome.UNREACHABLE
    assert event.provider_status == "518"
    assert (event.answered_at, event.duration_seconds) == (None, None)
    assert event.ended_at == utc("2019-01-24 03:04:49")
    assert event.extras["failTime"] == "2019-01-24 03:04:49"
    assert event.extras["sipStatusCode"] == 480


# --- status events (F3.3) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "kind", "time_field"),
    [
        ("callout", Kind.CALL_INITIATED, "started_at"),
        ("callin", Kind.CALL_INITIATED, "started_at"),
        ("alerting", Kind.CALL_RINGING, "ringing_at"),
        ("answer", Kind.CALL_ANSWERED, "answered_at"),
        ("disconnect", Kind.CALL_ENDED, "ended_at"),
        ("collectInfo", Kind.CALL_INPUT, None),
    ],
)
def test_status_event_kinds_and_times(event_type: str, kind: Kind, time_field: str | None) -> None:
    # Given a status event of each documented type,
    event = one(status(event_type, caller="+8610", called="+8620"))
    # When normalized, Then its kind follows F3.3 and its timestamp fills the matching field.
    assert event.kind == kind
    assert event.occurred_at == utc("2019-01-24 03:04:49")
    times = {
        "started_at": event.started_at,
        "ringing_at": event.ringing_at,
        "answered_at": event.answered_at,
        "ended_at": event.ended_at,
    }
    assert {k for k, v in times.items() if v is not None} == ({time_field} - {None})
    assert (event.caller, event.callee) == ("+8610", "+8620")
    assert event.extras["eventType"] == event_type


def test_collect_info_digits_become_dtmf() -> None:
    # Given a collectInfo event with digits and the callback-only partyType,
    event = one(status("collectInfo", digitInfo="1#", partyType=1, displayCallerNum="+8675"))
    # When normalized, Then the digits are extras.dtmf and the rest is kept as sent.
    assert event.kind == Kind.CALL_INPUT
    assert event.extras == {
        "eventType": "collectInfo",
        "dtmf": "1#",
        "partyType": 1,
        "displayCallerNum": "+8675",
    }


def test_status_event_ids() -> None:
    # Given deliveries of status events of one call,
    base = one(status("alerting", caller="+86A", called="+86B")).event_id
    # When ids are compared,
    # Then the same content dedupes, also when only the timestamp's spacing differs,
    assert one(status("alerting", caller="+86A", called="+86B")).event_id == base
    spaced = status("alerting", caller="+86A", called="+86B", timestamp="2019-01-24  03:04:49")
    assert one(spaced).event_id == base
    # and different events never share one: the other type, second, leg, or digits.
    others = [
        status("answer", caller="+86A", called="+86B"),
        status("alerting", caller="+86A", called="+86B", timestamp="2019-01-24 03:04:50"),
        status("alerting", caller="+86D", called="+86A"),
        status("alerting", caller="+86A", called="+86B", sessionId="s-2"),
    ]
    ids = {base, *(one(other).event_id for other in others)}
    assert len(ids) == 5
    digits = {one(status("collectInfo", digitInfo=d)).event_id for d in ("1", "2", "12")}
    assert len(digits) == 3


def test_disconnects_with_different_codes_are_different_events() -> None:
    # Given two disconnects of one call in the same second with different hangup causes,
    first = one(status("disconnect", stateCode=8101))
    second = one(status("disconnect", stateCode=0))
    # When ids are compared, Then they differ (stateCode is in the key).
    assert first.event_id != second.event_id


# F3.6 stateCode table, restated from docs/formats.md.
STATE_CODE_ROWS = [
    (0, Outcome.ANSWERED),
    *((code, Outcome.BLOCKED) for code in (7001, 7002, 7003, 7004, 7108)),
    (7109, Outcome.FAILED),
    *(
        (code, Outcome.FAILED)
        for code in (8000, 8002, 8005, 8006, 8007, 8008, 8012, 8015, 8018, 8020, 8001)
    ),
    (8003, Outcome.NO_ANSWER),
    (8004, Outcome.REJECTED),
    (8009, Outcome.CANCELLED),
    (8010, Outcome.ANSWERED),
    (8017, Outcome.ANSWERED),
    (8100, Outcome.INVALID_NUMBER),
    (8106, Outcome.INVALID_NUMBER),
    (8101, Outcome.NO_ANSWER),
    (8107, Outcome.NO_ANSWER),
    (8102, Outcome.BUSY),
    (8108, Outcome.BUSY),
    (8103, Outcome.UNREACHABLE),
    (8109, Outcome.UNREACHABLE),
    (8104, Outcome.POWERED_OFF),
    (8110, Outcome.POWERED_OFF),
    (8105, Outcome.OUT_OF_SERVICE),
    (8111, Outcome.OUT_OF_SERVICE),
]


@pytest.mark.parametrize(("state_code", "outcome"), STATE_CODE_ROWS)
@pytest.mark.parametrize("as_string", [False, True])
def test_disconnect_state_codes(state_code: int, outcome: Outcome, as_string: bool) -> None:
    # Given a disconnect with each documented hangup cause, as a number or as a string,
    sent = str(state_code) if as_string else state_code
    event = one(status("disconnect", stateCode=sent, stateDesc="..."))
    # When normalized, Then the outcome is the F3.6 one and the code is kept unchanged.
    assert event.outcome == outcome
    assert event.provider_status == str(state_code)


@pytest.mark.parametrize("state_code", [9999, 7005, 8011, -3, "busy?", 1.5])
def test_unknown_state_codes_are_unknown(state_code: Any) -> None:
    # Given a disconnect with a code F3.6 does not list, When normalized,
    event = one(status("disconnect", stateCode=state_code))
    # Then the outcome is unknown, with the raw code kept.
    assert event.outcome == Outcome.UNKNOWN
    assert event.provider_status == str(state_code)


def test_disconnect_without_state_code_has_no_outcome() -> None:
    # Given a disconnect without stateCode (status events may be partial), When normalized,
    # Then it claims no outcome: the fee record will tell.
    event = one(status("disconnect"))
    assert (event.outcome, event.provider_status) == (None, None)


def test_status_epoch_timestamp() -> None:
    # Given a timestamp sent as the "UNIX timestamp" the docs name, When normalized,
    event = one(status("answer", timestamp="1548299089"))
    # Then it is that UTC instant.
    assert event.occurred_at == utc("2019-01-24 03:04:49")


# --- fee records (F3.5) ----------------------------------------------------------------------


def test_notify_record_reads_the_single_leg() -> None:
    # Given a voice-notification CDR (serviceType 001),
    event = notify()
    # When normalized, Then caller / callee and times come from the callOut leg (F3.5).
    assert (event.caller, event.callee) == ("+8675512****78", "+86138****0021")
    assert event.started_at == utc("2019-01-24 04:00:00")
    assert event.ringing_at == utc("2019-01-24 04:00:03")
    assert event.answered_at == utc("2019-01-24 04:00:09")
    assert event.ended_at == utc("2019-01-24 04:00:40")
    assert event.duration_seconds == 31
    assert (event.outcome, event.provider_status) == (Outcome.ANSWERED, "0")
    assert event.correlation_id == "order-42"
    assert event.direction == Direction.OUTBOUND
    assert event.extras["dynIVRPath"] == "0-2-3"
    assert event.extras["dynIVRStartTime"] == "2019-01-24 04:00:10"
    assert "callerNum" not in event.extras
    assert "userData" not in event.extras


def test_notify_record_unanswered_uses_the_a_leg_q850() -> None:
    # Given a notification the user did not answer (Q.850 17 on the callOut leg),
    event = notify(callOutAnswerTime=..., callOutUnaswRsn=17, ulFailReason=8102)
    # When normalized, Then it is busy, with no answer and no duration.
    assert event.outcome == Outcome.BUSY
    assert (event.answered_at, event.duration_seconds) == (None, None)
    assert event.provider_status == "8102"


def test_notify_record_ignores_fwd_q850() -> None:
    # Given a notification with no A-leg cause and a stray B-leg cause,
    event = notify(callOutAnswerTime="", fwdUnaswRsn=17, ulFailReason=8101)
    # When normalized, Then the B-leg cause is not read for a one-leg call: 8101 decides.
    assert event.outcome == Outcome.NO_ANSWER


def test_answer_time_wins_over_every_code() -> None:
    # Given an answered callback whose record also carries failure codes,
    event = callback(fwdUnaswRsn=17, sipStatusCode=486, ulFailReason=8102)
    # When normalized, Then rule 1 (answer time of the relevant leg) decides.
    assert event.outcome == Outcome.ANSWERED


def test_a_answered_but_b_not_uses_the_b_leg_q850() -> None:
    # Given a callback where A answered and B's leg failed with Q.850 21,
    event = callback(fwdAnswerTime=..., fwdUnaswRsn=21, callOutUnaswRsn=17, sipStatusCode=486)
    # When normalized, Then B's cause decides: rejected (not A's, not SIP).
    assert event.outcome == Outcome.REJECTED
    assert event.answered_at is None


def test_a_never_answered_uses_the_a_leg_q850() -> None:
    # Given a callback where A never answered (callOutUnaswRsn 19),
    event = callback(callOutAnswerTime=..., fwdAnswerTime=..., callOutUnaswRsn=19)
    # When normalized, Then A's cause decides.
    assert event.outcome == Outcome.NO_ANSWER


def test_q850_normal_clearing_falls_through_to_sip() -> None:
    # Given Q.850 16 (normal clearing) and SIP 603 on an unanswered B leg,
    event = callback(fwdAnswerTime=..., fwdUnaswRsn=16, sipStatusCode=603, ulFailReason=518)
    # When normalized, Then SIP decides (rule 3).
    assert event.outcome == Outcome.REJECTED


def test_sip_zero_falls_through_to_ul_fail_reason() -> None:
    # Given no Q.850 and SIP 0, and teardown point 514 (ringing timeout),
    event = callback(fwdAnswerTime=..., sipStatusCode=0, ulFailReason=514)
    # When normalized, Then ulFailReason decides (rule 4).
    assert (event.outcome, event.provider_status) == (Outcome.NO_ANSWER, "514")


def test_state_code_is_used_when_no_ul_fail_reason() -> None:
    # Given an unanswered record without ulFailReason but with a stateCode,
    event = callback(fwdAnswerTime=..., ulFailReason=..., stateCode=8104)
    # When normalized, Then the stateCode decides and is the provider status.
    assert (event.outcome, event.provider_status) == (Outcome.POWERED_OFF, "8104")
    assert "stateCode" not in event.extras


def test_nothing_known_is_unknown() -> None:
    # Given an unanswered record with no usable code at all,
    event = callback(fwdAnswerTime=..., ulFailReason=..., sipStatusCode=..., fwdUnaswRsn=...)
    # When normalized, Then the outcome is unknown (rule 5).
    assert (event.outcome, event.provider_status) == (Outcome.UNKNOWN, None)


@pytest.mark.parametrize("fail_reason", [9999, 700, 8013, "oops"])
def test_unknown_ul_fail_reason_is_unknown_with_the_raw_code(fail_reason: Any) -> None:
    # Given an unanswered record whose only code is not in F3.6,
    event = callback(fwdAnswerTime=..., fwdUnaswRsn=0, sipStatusCode=0, ulFailReason=fail_reason)
    # When normalized, Then it is unknown and the code is kept.
    assert (event.outcome, event.provider_status) == (Outcome.UNKNOWN, str(fail_reason))


# F3.6 ulFailReason rows, restated from docs/formats.md (one or more codes of every row).
FAIL_REASON_ROWS = [
    (0, Outcome.ANSWERED),
    (100, Outcome.ANSWERED),
    *((code, Outcome.FAILED) for code in (501, 505, 510, 512, 539, 540, 542, 2901, 2914)),
    (513, Outcome.NO_ANSWER),
    (514, Outcome.NO_ANSWER),
    *((code, Outcome.CANCELLED) for code in (515, 516, 530, 552, 553)),
    *((code, Outcome.FAILED) for code in (517, 521, 522, 524, 526, 527, 529, 541, 550, 551)),
    *((code, Outcome.FAILED) for code in (518, 519, 520)),
    (528, Outcome.BLOCKED),
    (486, Outcome.BUSY),
    (480, Outcome.UNREACHABLE),
    (404, Outcome.INVALID_NUMBER),
    (487, Outcome.CANCELLED),
    (699, Outcome.FAILED),
    *((code, Outcome.ANSWERED) for code in (1001, 1002, 1003, 1004)),
    *((code, Outcome.FAILED) for code in (2801, 2847, 2868, 2871)),
    *((code, Outcome.BLOCKED) for code in (7001, 7005, 7100, 7105, 7106, 7107, 7108)),
    (7109, Outcome.FAILED),
    *STATE_CODE_ROWS,
]


@pytest.mark.parametrize(("fail_reason", "outcome"), FAIL_REASON_ROWS)
def test_ul_fail_reason_rows(fail_reason: int, outcome: Outcome) -> None:
    # Given an unanswered callback whose only code is this teardown point, as a string,
    event = callback(
        fwdAnswerTime=..., fwdUnaswRsn=0, sipStatusCode=0, ulFailReason=str(fail_reason)
    )
    # When normalized, Then its outcome is the F3.6 one.
    assert event.outcome == outcome
    assert event.provider_status == str(fail_reason)


@pytest.mark.parametrize(
    ("fail_reason", "hangup_by"),
    [
        (1001, HangupBy.AGENT),
        (1002, HangupBy.CALLEE),
        (1003, HangupBy.SYSTEM),
        (1004, HangupBy.AGENT),
        (0, None),
        (8101, None),
    ],
)
def test_who_hung_up_from_ul_fail_reason(fail_reason: int, hangup_by: HangupBy | None) -> None:
    # Given an answered callback ending with teardown point 1001-1004 or another,
    event = callback(ulFailReason=fail_reason)
    # When normalized, Then hangup_by follows F3.6 and the call stays answered.
    assert event.hangup_by == hangup_by
    assert event.outcome == Outcome.ANSWERED


def test_recording_url_and_user_data() -> None:
    # Given a callback CDR with a download URL and the API's userData echo,
    url = "https://rtc.example.com/rec/1.wav"
    event = callback(recordFlag=1, recordFileDownloadUrl=url, userData="ticket-7")
    # When normalized, Then they are recording_url and correlation_id.
    assert (event.recording_url, event.correlation_id) == (url, "ticket-7")
    assert event.extras["recordFlag"] == 1
    assert "recordFileDownloadUrl" not in event.extras


def test_service_type_absent_is_inferred_from_the_b_leg() -> None:
    # Given a callback record and a notify record, both without serviceType,
    cb = callback(serviceType=...)
    nt = notify(serviceType=...)
    # When normalized, Then a B leg means callback (caller = A's real number), else notify.
    assert (cb.caller, cb.callee) == ("+86138****0021", "+86138****7021")
    assert (nt.caller, nt.callee) == ("+8675512****78", "+86138****0021")


def test_callback_without_a_leg_start_starts_with_the_b_leg() -> None:
    # Given a callback record missing callOutStartTime, When normalized,
    event = callback(callOutStartTime=...)
    # Then the B leg's start is the call's start.
    assert event.started_at == utc("2019-01-24 03:04:31")
    assert "fwdStartTime" not in event.extras


def test_negative_duration_is_dropped() -> None:
    # Given an answer time after the end (clock trouble), When normalized,
    event = callback(fwdAnswerTime="2019-01-24 03:05:00")
    # Then no duration is invented, the call is still answered.
    assert (event.duration_seconds, event.outcome) == (None, Outcome.ANSWERED)


def test_double_spaced_fee_times() -> None:
    # Given the same CDR with every time double-spaced, When normalized,
    spaced = {k: v.replace(" ", "  ") if k.endswith("Time") else v for k, v in CALLBACK.items()}
    event = one({"eventType": "fee", "feeLst": [spaced]})
    # Then times and id are the same as with single spaces.
    plain = one(sample("fee_callback"))
    assert (event.event_id, event.started_at, event.answered_at, event.ended_at) == (
        plain.event_id,
        plain.started_at,
        plain.answered_at,
        plain.ended_at,
    )
    assert event.duration_seconds == 11


def test_merged_fee_push_gives_one_record_per_call() -> None:
    # Given a push merging a callback and a notify CDR (same callEndTime merge, F3.2),
    value = {"eventType": "fee", "feeLst": [CALLBACK, NOTIFY, {**NOTIFY, "icid": "x"}]}
    # When normalized, Then there are three call.records with three ids.
    result = events(value)
    assert [e.kind for e in result] == [Kind.CALL_RECORD] * 3
    assert [e.call_id for e in result] == [
        CALLBACK["sessionId"],
        NOTIFY["sessionId"],
        NOTIFY["sessionId"],
    ]
    assert len({e.event_id for e in result}) == 3

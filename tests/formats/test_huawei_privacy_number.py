"""`huawei.privacy_number` (docs/formats.md F3): Private Number call events and fee records."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from consumer.formats import huawei_privacy_number, parse
from consumer.model import CallEvent, Direction, HangupBy, Kind, Outcome, Provider, event_id

FMT = "huawei.privacy_number"
SAMPLES = Path(__file__).parent / "samples"
SESSION = "1200_1827_4294967295_20190124023003@callenabler246.huaweicaas.com"


def utc(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def events(value: Any) -> list[CallEvent]:
    raw = value if isinstance(value, bytes) else json.dumps(value, ensure_ascii=False).encode()
    return [normalized.event for normalized in parse(FMT, raw)]


def one(value: Any) -> CallEvent:
    result = events(value)
    assert len(result) == 1
    return result[0]


def sample(name: str) -> bytes:
    return (SAMPLES / f"huawei.privacy_number.{name}.json").read_bytes()


def status(event_type: str, **fields: Any) -> dict[str, Any]:
    info = {"sessionId": "s-1", "timestamp": "2019-01-24 02:30:22", **fields}
    return {"eventType": event_type, "statusInfo": {k: v for k, v in info.items() if v is not ...}}


# The HW-PN-FEE record (AX page, also reused by AXYB), as the base of varied cases.
SEED_RECORD = json.loads(sample("fee"))["feeLst"][0]


def fee(**changes: Any) -> CallEvent:
    fields = {**SEED_RECORD, **changes}
    return one({"eventType": "fee", "feeLst": [{k: v for k, v in fields.items() if v is not ...}]})


def unanswered(**changes: Any) -> CallEvent:
    return fee(**{"fwdAnswerTime": ..., "fwdUnaswRsn": 0, "sipStatusCode": 0, **changes})


# --- samples (HW-PN-FEE) ----------------------------------------------------------------------


def test_format_is_registered_for_huawei_privacy() -> None:
    # Given the registry, When asked for the format, Then it names the Private Number provider.
    assert huawei_privacy_number.FORMAT.name == FMT
    assert huawei_privacy_number.FORMAT.provider == Provider.HUAWEI_PRIVACY


def test_seed_call_event() -> None:
    # Given the seed's call event sample (a disconnect with stateCode 0),
    event = one(sample("status_disconnect"))
    # When normalized, Then every field lands where F3.3 says.
    assert event.event_id == event_id(
        FMT,
        "status",
        SESSION,
        "disconnect",
        "2019-01-24T02:30:22Z",
        "0",
        "+86138****0022",
        "+86138****7021",
        None,
    )
    assert event.provider == Provider.HUAWEI_PRIVACY
    assert event.kind == Kind.CALL_ENDED
    assert event.call_id == SESSION
    assert event.occurred_at == event.ended_at == utc("2019-01-24 02:30:22")
    assert (event.caller, event.callee) == ("+86138****0022", "+86138****7021")
    assert (event.outcome, event.provider_status, event.hangup_by) == (Outcome.ANSWERED, "0", None)
    assert event.direction is None
    assert event.refs == {"subscription_id": "****"}
    assert event.extras == {"eventType": "disconnect", "stateDesc": "The user releases the call."}


def test_seed_fee_record() -> None:
    # Given the seed's fee sample,
    event = one(sample("fee"))
    # When normalized, Then the caller dials X (bind_num) and is forwarded to fwdDstNum.
    assert event.event_id == event_id(
        FMT, "fee", SESSION, "ba171f34e6953fcd751edc77127748f4.3757285803.338666679.5", None
    )
    assert event.kind == Kind.CALL_RECORD
    assert event.call_id == SESSION
    assert (event.caller, event.callee) == ("+86138****0021", "+86138****7021")
    assert event.direction == Direction.OUTBOUND
    assert event.started_at == utc("2019-01-24 02:30:03")
    assert event.ringing_at == utc("2019-01-24 02:30:04")
    assert event.answered_at == utc("2019-01-24 02:30:06")
    assert event.ended_at == event.occurred_at == utc("2019-01-24 02:30:22")
    assert event.duration_seconds == 16
    assert (event.outcome, event.provider_status, event.hangup_by) == (Outcome.ANSWERED, "0", None)
    assert (event.recording_url, event.correlation_id) == (None, None)
    assert event.refs == {
        "sp_id": "****",
        "app_key": "****",
        "icid": "ba171f34e6953fcd751edc77127748f4.3757285803.338666679.5",
        "bind_num": "+86138****0022",
        "subscription_id": "****",
    }
    assert event.extras == {
        "direction": 1,
        "calleeNum": "+86138****0022",
        "fwdDisplayNum": "+86138****0022",
        "fwdStartTime": "2019-01-24 02:30:03",
        "fwdUnaswRsn": 0,
        "sipStatusCode": 0,
        "callOutUnaswRsn": 0,
        "recordFlag": 1,
        "recordStartTime": "2019-01-24 02:30:06",
        "recordDomain": "****.com",
        "recordBucketName": "****",
        "recordObjectName": "****.wav",
        "ttsPlayTimes": 0,
        "ttsTransDuration": 0,
        "mptyId": "****",
        "serviceType": "003",
        "hostName": "callenabler246.huaweicaas.com",
    }


def test_seed_disconnect_and_fee_agree_on_the_call() -> None:
    # Given the seed's disconnect and fee of one session (F3.10: both UTC),
    ended = one(sample("status_disconnect"))
    record = one(sample("fee"))
    # When normalized, Then they share call and end time, but not their ids.
    assert ended.call_id == record.call_id
    assert ended.ended_at == record.ended_at
    assert ended.event_id != record.event_id


# --- call events (F3.3) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "kind", "time_field"),
    [
        ("callin", Kind.CALL_INITIATED, "started_at"),
        ("callout", Kind.CALL_INITIATED, "started_at"),
        ("alerting", Kind.CALL_RINGING, "ringing_at"),
        ("answer", Kind.CALL_ANSWERED, "answered_at"),
        ("disconnect", Kind.CALL_ENDED, "ended_at"),
        ("collectInfo", Kind.CALL_INPUT, None),
    ],
)
def test_call_event_kinds(event_type: str, kind: Kind, time_field: str | None) -> None:
    # Given each call event the seed's handler lists (plus AXE collectInfo),
    event = one(status(event_type, caller="+86A", called="+86X", subscriptionId="sub-1"))
    # When normalized, Then the kind follows F3.3 and the timestamp fills the matching field.
    assert event.kind == kind
    assert event.occurred_at == utc("2019-01-24 02:30:22")
    times = {
        "started_at": event.started_at,
        "ringing_at": event.ringing_at,
        "answered_at": event.answered_at,
        "ended_at": event.ended_at,
    }
    assert {k for k, v in times.items() if v is not None} == ({time_field} - {None})
    assert event.refs == {"subscription_id": "sub-1"}
    assert event.extras["eventType"] == event_type


def test_callin_and_callout_of_one_second_are_different_events() -> None:
    # Given a callin and a callout of one session in the same second (both call.initiated),
    callin = one(status("callin", caller="+86A", called="+86X"))
    callout = one(status("callout", caller="+86X", called="+86B"))
    # When normalized, Then they stay two events, and extras tell which is which.
    assert callin.kind == callout.kind == Kind.CALL_INITIATED
    assert callin.event_id != callout.event_id
    assert (callin.extras["eventType"], callout.extras["eventType"]) == ("callin", "callout")


def test_re_pushed_call_event_dedupes() -> None:
    # Given a call event re-pushed (Private Number retries events too, F3.4),
    first = one(status("answer", caller="+86A", called="+86B"))
    again = one(status("answer", caller="+86A", called="+86B", timestamp="2019-01-24  02:30:22"))
    # When both are normalized, Then they have the same id.
    assert first.event_id == again.event_id


def test_x_mode_block_callin() -> None:
    # Given an X-mode callin in Block mode (no subscriptionId in X / AXE callin, F3.3),
    event = one(status("callin", caller="+86A", called="+86X", notifyMode="Block", userData="u"))
    # When normalized, Then notifyMode is kept, userData is the correlation id, no refs.
    assert event.extras == {"eventType": "callin", "notifyMode": "Block"}
    assert event.correlation_id == "u"
    assert event.refs == {}


def test_axe_extension_digits_are_dtmf() -> None:
    # Given the AXE extension digits event, When normalized, Then they are extras.dtmf.
    event = one(status("collectInfo", digitInfo="1234", extInfo={"a": 1}, extParas="p"))
    assert event.kind == Kind.CALL_INPUT
    assert event.extras == {
        "eventType": "collectInfo",
        "dtmf": "1234",
        "extInfo": {"a": 1},
        "extParas": "p",
    }


@pytest.mark.parametrize(
    ("direction", "hangup_by"),
    [(1, HangupBy.CALLER), ("2", HangupBy.CALLEE), (3, None), ("", None)],
)
def test_call_rel_direction_says_who_hung_up(direction: Any, hangup_by: HangupBy | None) -> None:
    # Given a disconnect with callRelDirection (1 caller, 2 callee; F3.3),
    event = one(status("disconnect", stateCode=0, callRelDirection=direction))
    # When normalized, Then hangup_by follows it, and the raw value is kept when sent.
    assert event.hangup_by == hangup_by
    assert event.extras.get("callRelDirection") == (direction or None)


# F3.7 stateCode table, restated from docs/formats.md.
STATE_CODE_ROWS = [
    (0, Outcome.ANSWERED),
    (8010, Outcome.ANSWERED),
    *((code, Outcome.FAILED) for code in (8013, 8014, 8019, 8022, 8025, 8030, 8031)),
    (8016, Outcome.BLOCKED),
    *((code, Outcome.CANCELLED) for code in (7501, 7502, 7516, 8033)),
    (8032, Outcome.FAILED),
    (7503, Outcome.REJECTED),
    (7504, Outcome.REJECTED),
    (8035, Outcome.NO_ANSWER),
    (8101, Outcome.NO_ANSWER),
    (8100, Outcome.INVALID_NUMBER),
    (8102, Outcome.BUSY),
    (8103, Outcome.UNREACHABLE),
    (8104, Outcome.POWERED_OFF),
    (8105, Outcome.OUT_OF_SERVICE),
    *((code, Outcome.FAILED) for code in (7100, 7101, 7105, 7106, 7507, 8006)),
    (7108, Outcome.BLOCKED),
    *((code, Outcome.BLOCKED) for code in (7001, 7002, 7003, 7004, 7005)),
    (7107, Outcome.FAILED),
    (7109, Outcome.FAILED),
    *(
        (code, Outcome.BLOCKED)
        for code in (7500, 8018, 8023, 8024, 8042, 8043, 8044, 8046, 8047, 8048, 8049, 8050)
    ),
    *((code, Outcome.BLOCKED) for code in (8051, 8055, 8056, 8057)),
    *((code, Outcome.FAILED) for code in (522, 8007, 8008, 8015, 8041, 7102, 8011, 8020, 8040)),
    (8139, Outcome.FAILED),
    *((code, Outcome.FAILED) for code in (7505, 7506, 7508)),
]


@pytest.mark.parametrize(("state_code", "outcome"), STATE_CODE_ROWS)
def test_disconnect_state_codes(state_code: int, outcome: Outcome) -> None:
    # Given a disconnect with each F3.7 code, When normalized, Then its outcome is the table's.
    event = one(status("disconnect", stateCode=state_code))
    assert (event.outcome, event.provider_status) == (outcome, str(state_code))


@pytest.mark.parametrize("state_code", [8001, 8003, 8058, 9999, "x"])
def test_codes_not_in_the_state_code_table_are_unknown(state_code: Any) -> None:
    # Given a disconnect with a code F3.7's stateCode table does not list (8058 is only an
    # ulFailReason; 8001 / 8003 are Voice codes), When normalized, Then it is unknown.
    event = one(status("disconnect", stateCode=state_code))
    assert (event.outcome, event.provider_status) == (Outcome.UNKNOWN, str(state_code))


# --- fee records (F3.5) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("direction", "expected"),
    [
        (1, Direction.OUTBOUND),
        (0, Direction.INBOUND),
        ("0", Direction.INBOUND),
        (2, None),
        (7, None),
        (..., None),
    ],
)
def test_fee_direction(direction: Any, expected: Direction | None) -> None:
    # Given the record's direction (1 A calls others, 0 others call A, 2 abnormal),
    event = fee(direction=direction)
    # When normalized, Then it maps per F3.5, the raw value kept.
    assert event.direction == expected
    assert event.extras.get("direction") == (None if direction is ... else direction)


def test_axb_record_where_b_calls_a() -> None:
    # Given an AXB CDR where B dials X and is forwarded to A (direction 0),
    event = fee(
        direction=0,
        serviceType="004",
        callerNum="+86B",
        calleeNum="+86X",
        bindNum="+86X",
        fwdDisplayNum="+86X",
        fwdDstNum="+86A",
    )
    # When normalized, Then B is the caller, A the callee, X the bound number, inbound to A.
    assert (event.caller, event.callee) == ("+86B", "+86A")
    assert event.refs["bind_num"] == "+86X"
    assert event.direction == Direction.INBOUND


def test_ax_record_without_binding() -> None:
    # Given an AX CDR with no binding: no subscription, no forward, direction 2, 8014 (F3.5),
    event = fee(
        direction=2,
        subscriptionId="",
        mptyId=...,
        fwdDstNum=...,
        fwdDisplayNum=...,
        fwdStartTime=...,
        fwdAlertingTime=...,
        fwdAnswerTime=...,
        recordFlag=0,
        recordStartTime=...,
        recordDomain=...,
        recordBucketName=...,
        recordObjectName=...,
        ulFailReason=8014,
        failTime="2019-01-24 02:30:03",
        callEndTime="2019-01-24 02:30:03",
    )
    # When normalized, Then it failed at once, with no callee, direction, answer or subscription.
    assert (event.outcome, event.provider_status) == (Outcome.FAILED, "8014")
    assert (event.callee, event.direction, event.answered_at) == (None, None, None)
    assert event.started_at == utc("2019-01-24 02:30:03")
    assert "subscription_id" not in event.refs
    assert event.refs["bind_num"] == "+86138****0022"


def test_bind_num_falls_back_to_the_dialled_x() -> None:
    # Given a record without bindNum, When normalized, Then calleeNum (X) is refs.bind_num.
    event = fee(bindNum=..., calleeNum="+86X")
    assert event.refs["bind_num"] == "+86X"
    assert "calleeNum" not in event.extras


def test_start_falls_back_to_the_forward_start() -> None:
    # Given a record without callInTime, When normalized, Then the forward's start is used.
    event = fee(callInTime=..., fwdStartTime="2019-01-24 02:30:02")
    assert event.started_at == utc("2019-01-24 02:30:02")


@pytest.mark.parametrize(
    ("changes", "outcome"),
    [
        ({"fwdUnaswRsn": 17, "sipStatusCode": 486, "ulFailReason": 8102}, Outcome.BUSY),
        ({"fwdUnaswRsn": 18, "ulFailReason": 8101}, Outcome.NO_ANSWER),
        ({"fwdUnaswRsn": 21, "sipStatusCode": 486}, Outcome.REJECTED),
        ({"fwdUnaswRsn": 16, "sipStatusCode": 603, "ulFailReason": 8102}, Outcome.REJECTED),
        ({"fwdUnaswRsn": 0, "sipStatusCode": 404, "ulFailReason": 8102}, Outcome.INVALID_NUMBER),
        ({"sipStatusCode": 0, "ulFailReason": 7503}, Outcome.REJECTED),
        ({"callOutUnaswRsn": 17, "ulFailReason": 8101}, Outcome.NO_ANSWER),
        ({"ulFailReason": ..., "stateCode": 8104}, Outcome.POWERED_OFF),
        ({"ulFailReason": 8058}, Outcome.BLOCKED),
        ({"ulFailReason": 8059}, Outcome.BLOCKED),
        ({"ulFailReason": 8002}, Outcome.UNKNOWN),
        ({"ulFailReason": ...}, Outcome.UNKNOWN),
    ],
)
def test_fee_outcome_rule_order(changes: dict[str, Any], outcome: Outcome) -> None:
    # Given an unanswered forward with these codes (callOutUnaswRsn is reserved for PN),
    event = unanswered(**changes)
    # When normalized, Then Q.850, then SIP, then ulFailReason / stateCode decide (F3.5).
    assert event.outcome == outcome
    assert event.answered_at is None
    assert event.duration_seconds is None


@pytest.mark.parametrize(("fail_reason", "outcome"), STATE_CODE_ROWS)
def test_ul_fail_reason_maps_as_state_code(fail_reason: int, outcome: Outcome) -> None:
    # Given an unanswered record whose only code is a F3.7 code, When normalized,
    event = unanswered(ulFailReason=fail_reason)
    # Then it maps as stateCode (F3.7: "Map them as stateCode").
    assert (event.outcome, event.provider_status) == (outcome, str(fail_reason))


def test_answered_record_ignores_failure_codes() -> None:
    # Given an answered record that also carries a failure code, When normalized,
    event = fee(ulFailReason=8102, sipStatusCode=486)
    # Then the answer time decides (rule 1); the code stays the provider status.
    assert (event.outcome, event.provider_status) == (Outcome.ANSWERED, "8102")


@pytest.mark.parametrize("service_type", ["003", "004", "005", "007"])
def test_every_private_number_mode_is_accepted(service_type: str) -> None:
    # Given a record of each mode (AX, AXB / X, AXE, AXYB), When normalized,
    event = fee(serviceType=service_type, extendNum="12", notifyMode="Block", voiceCheckType=1)
    # Then it is read the same way, the mode's own fields kept in extras.
    assert (event.caller, event.callee) == ("+86138****0021", "+86138****7021")
    assert event.extras["serviceType"] == service_type
    assert (event.extras["extendNum"], event.extras["notifyMode"]) == ("12", "Block")
    assert event.extras["voiceCheckType"] == 1


def test_fee_call_rel_direction_and_user_data() -> None:
    # Given a fee record carrying callRelDirection and userData (both undocumented in fees),
    event = fee(callRelDirection=2, userData="order-1")
    # When normalized, Then they are read as in call events.
    assert (event.hangup_by, event.correlation_id) == (HangupBy.CALLEE, "order-1")


def test_ten_merged_records() -> None:
    # Given a push of ten CDRs merged by callEndTime (F3.2), half of them without icid,
    records = [
        {**SEED_RECORD, "sessionId": f"s-{n}", "icid": f"i-{n}" if n % 2 else ""} for n in range(10)
    ]
    result = events({"eventType": "fee", "feeLst": records})
    # When normalized, Then there are ten records, ten ids, all ended at the same instant.
    assert len(result) == 10
    assert len({e.event_id for e in result}) == 10
    assert {e.ended_at for e in result} == {utc("2019-01-24 02:30:22")}
    assert [("icid" in e.refs) for e in result] == [bool(n % 2) for n in range(10)]

"""`aliyun.outbound_bot` (docs/formats.md F2): job and call events of Aliyun Outbound Bot."""

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
from consumer.formats import aliyun_outbound_bot as bot
from consumer.formats import get_format, parse
from consumer.model import Normalized, Provider
from tests.formats.strategies import PROPERTY, deterministic, mutated

FORMAT = "aliyun.outbound_bot"
SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> Any:
    return json.loads((SAMPLES / f"{FORMAT}.{name}.json").read_bytes())


def run(value: Any) -> list[Normalized]:
    raw = value if isinstance(value, bytes) else json.dumps(value, ensure_ascii=False).encode()
    return parse(FORMAT, raw)


def invalid(value: Any) -> InvalidMessage:
    with pytest.raises(InvalidMessage) as info:
        run(value)
    assert info.value.detail
    return info.value


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


def task(**fields: Any) -> dict[str, Any]:
    base = {
        "id": "t-1",
        "callId": "c-1",
        "planedTime": ms(2024, 3, 1, 1, 0, 0),
        "actualTime": ms(2024, 3, 1, 1, 0, 5),
        "endTime": ms(2024, 3, 1, 1, 1, 5),
        "callingNumber": "0571000",
        "calledNumber": "13800000000",
        "status": "Succeeded",
    }
    return {k: v for k, v in {**base, **fields}.items() if v is not ...}


def message(event_type: str = "JobComplete", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "eventType": event_type,
        "eventTime": ms(2024, 3, 1, 1, 2, 0),
        "instanceId": "inst-1",
        "groupId": "grp-1",
        "id": "job-1",
        "status": "Succeeded",
        "extras": [{"key": "order", "value": "A-42"}],
        "contacts": [
            {
                "id": "ct-1",
                "honorific": "张先生",
                "name": "张三",
                "phoneNumber": "13800000000",
                "referenceId": "ref-1",
            }
        ],
        "tasks": [task()],
    }
    return {k: v for k, v in {**base, **fields}.items() if v is not ...}


def test_format_is_registered_for_the_provider() -> None:
    # Given the registry, When the format is looked up, Then it is this module's.
    # Given the registry, When the format is looked up, Then it is this module's, for the provider.
    fmt = get_format(FORMAT)
    assert fmt is bot.FORMAT
    assert fmt.provider is Provider.ALIYUN_OUTBOUND_BOT


# --- the seed's samples (F2.4) ---------------------------------------------------------------


def test_seed_job_complete_gives_one_job_event_and_one_record_per_task() -> None:
    # Given OB-MSG's JobComplete with two NoAnswer attempts,
    raw = (SAMPLES / f"{FORMAT}.job_complete.json").read_bytes()
    # When it is normalized,
    job, first, second = run(raw)
    # Then the first event is the job's: no call, the job id in refs, outcome from failureReason.
    e = job.event
    assert e.kind == "job.completed"
    assert e.provider == "aliyun_outbound_bot"
    assert e.call_id is None
    assert e.occurred_at == datetime(2020, 5, 7, 11, 21, 30, 334000, tzinfo=UTC)
    assert e.direction == "outbound"
    assert e.outcome == "no_answer"
    assert e.provider_status == "Failed"
    assert e.callee == "11111111"
    assert e.caller is None
    assert e.correlation_id == "762c2e16-****-00a0f13372b1"
    assert e.refs == {
        "instance_id": "08a4c460-****-737e069a154f",
        "group_id": "8869f35d-****-9b46437bc0fa",
        "job_id": "08a4c460-****-737e069a154f",
        "contact_id": "762c2e16-****-00a0f13372b1",
    }
    assert e.extras == {
        "failureReason": "NoAnswer",
        "honorific": "test",
        "name": "test",
        "custom": "aaa",
    }
    assert job.payload == json.loads(raw)
    # And one call.record per task, each with its own call id, times and TaskStatus outcome.
    r = first.event
    assert r.kind == "call.record"
    assert r.call_id == "60b48efe-****-5d6b70479641"
    assert r.caller == "123456"
    assert r.callee == "11111111"
    assert r.started_at == datetime(2020, 5, 7, 11, 21, 30, 334000, tzinfo=UTC)
    assert r.ended_at == r.started_at
    assert r.occurred_at == r.ended_at
    assert r.outcome == "no_answer"
    assert r.provider_status == "NoAnswer"
    assert r.hangup_by is None
    assert r.correlation_id == "762c2e16-****-00a0f13372b1"
    assert r.refs["task_id"] == "60b48efe-****-5d6b70479641"
    assert r.refs["job_id"] == "08a4c460-****-737e069a154f"
    assert r.extras["status"] == "Failed"
    assert r.extras["planedTime"] == "2020-05-07T11:21:30.334Z"
    assert second.event.call_id == "60b48efe-****-5d6b70479642"
    assert second.event.started_at == datetime(2020, 5, 7, 11, 23, 10, 334000, tzinfo=UTC)
    # And each record's payload is the message narrowed to its own task.
    assert first.payload["tasks"] == [json.loads(raw)["tasks"][0]]
    assert second.payload["tasks"] == [json.loads(raw)["tasks"][1]]
    assert first.payload["id"] == "08a4c460-****-737e069a154f"
    # And the three events have three ids.
    assert len({job.event.event_id, r.event_id, second.event.event_id}) == 3


def test_seed_recording_ready_gives_the_recording_of_its_call() -> None:
    # Given OB-MSG's RecordingReady,
    raw = (SAMPLES / f"{FORMAT}.recording_ready.json").read_bytes()
    # When it is normalized,
    [normalized] = run(raw)
    e = normalized.event
    # Then it is the call's recording, with the file name and MKV url kept.
    assert e.kind == "recording.ready"
    assert e.call_id == "60b48efe-***-5d6b70479641"
    assert e.recording_url == "https://a.wav"
    assert e.duration_seconds == 5
    assert e.occurred_at == datetime(2020, 5, 7, 11, 21, 30, 334000, tzinfo=UTC)
    assert e.refs["task_id"] == "60b48efe-***-5d6b70479641"
    assert e.refs["job_id"] == "08a4c460-***-737e069a154f"
    assert e.correlation_id == "762c2e16-***-00a0f13372b1"
    assert e.extras == {
        "file_name": "a.wav",
        "mkv_url": "https://a.wav",
        "honorific": "test",
        "name": "test",
        "custom": "aaa",
    }
    assert e.outcome is None
    assert e.provider_status is None
    assert normalized.payload == json.loads(raw)


@pytest.mark.parametrize(
    ("name", "kind", "outcome", "moment"),
    [
        ("dialing", "call.initiated", None, "started_at"),
        ("call_answered", "call.answered", "answered", "answered_at"),
        ("call_finished", "call.ended", "answered", "ended_at"),
    ],
)
def test_call_level_samples(name: str, kind: str, outcome: str | None, moment: str) -> None:
    # Given one of our call-level samples (the seed's job shape with one attempt),
    value = sample(name)
    # When it is normalized,
    [normalized] = run(value)
    e = normalized.event
    # Then it is that attempt's event, its moment being the event time (or the task's own).
    assert e.kind == kind
    assert e.call_id == "60b48efe-****-5d6b70479643"
    assert e.outcome == outcome
    assert getattr(e, moment) is not None
    assert e.started_at == datetime(2020, 5, 7, 11, 38, 11, tzinfo=UTC)
    assert e.refs["task_id"] == "60b48efe-****-5d6b70479643"
    assert e.extras["status"] == "Executing"


def test_call_finished_sample_names_the_callee_as_the_one_who_hung_up() -> None:
    # Given CallFinished whose attempt ended SucceededClientHangUp,
    [normalized] = run(sample("call_finished"))
    # Then the callee hung up, at the task's end time.
    assert normalized.event.hangup_by == "callee"
    assert normalized.event.ended_at == datetime(2020, 5, 7, 11, 38, 50, tzinfo=UTC)


# --- kinds and their times (F2.4) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "kind"),
    [
        ("Dialing", "call.initiated"),
        ("Ringing", "call.ringing"),
        ("CallAnswered", "call.answered"),
        ("CallFinished", "call.ended"),
    ],
)
def test_call_level_kinds(event_type: str, kind: str) -> None:
    # Given a call-level message, When it is normalized, Then one event of the mapped kind.
    events = run(message(event_type, tasks=[task(status="Executing", endTime=0)]))
    assert [n.event.kind for n in events] == [kind]
    e = events[0].event
    assert e.call_id == "c-1"
    assert e.occurred_at == datetime(2024, 3, 1, 1, 2, 0, tzinfo=UTC)
    assert e.caller == "0571000"
    assert e.callee == "13800000000"
    assert e.started_at == datetime(2024, 3, 1, 1, 0, 5, tzinfo=UTC)
    assert e.provider_status == "Executing"


def test_moments_of_call_level_events() -> None:
    # Given a ringing and an answered message, When normalized,
    ring = run(message("Ringing", tasks=[task(status="Executing", endTime=0)]))[0].event
    answer = run(message("CallAnswered", tasks=[task(status="Executing", endTime=0)]))[0].event
    end = run(message("CallFinished", tasks=[task(status="Busy", endTime=0)]))[0].event
    # Then ringing_at / answered_at are the event time; a task ended at 0 ends at the event time.
    at = datetime(2024, 3, 1, 1, 2, 0, tzinfo=UTC)
    assert ring.ringing_at == at
    assert ring.outcome is None
    assert answer.answered_at == at
    assert answer.outcome == "answered"
    assert answer.ended_at is None
    assert end.ended_at == at
    assert end.outcome == "busy"


def test_dialing_without_actual_time_starts_at_the_event_time() -> None:
    # Given a Dialing whose attempt has no actualTime yet,
    [n] = run(message("Dialing", tasks=[task(status=0, actualTime=..., endTime=...)]))
    # Then started_at is the event time and nothing has ended.
    assert n.event.started_at == datetime(2024, 3, 1, 1, 2, 0, tzinfo=UTC)
    assert n.event.ended_at is None
    assert n.event.outcome is None
    assert n.event.provider_status == "0"


def test_call_level_message_is_about_the_latest_attempt() -> None:
    # Given a CallFinished carrying three attempts out of order,
    tasks = [
        task(id="t-2", callId="c-2", actualTime=ms(2024, 3, 1, 2, 0, 0), status="Busy"),
        task(id="t-3", callId="c-3", actualTime=ms(2024, 3, 1, 3, 0, 0), status="NoAnswer"),
        task(id="t-1", callId="c-1", actualTime=ms(2024, 3, 1, 1, 0, 0), status="Busy"),
    ]
    # When it is normalized, Then the event is about the one with the greatest actualTime.
    [n] = run(message("CallFinished", tasks=tasks))
    assert n.event.call_id == "c-3"
    assert n.event.refs["task_id"] == "t-3"
    assert n.event.outcome == "no_answer"


def test_call_level_tie_or_missing_actual_time_takes_the_last_attempt() -> None:
    # Given attempts without actualTime, When normalized, Then the last one listed is taken.
    tasks = [task(callId="c-1", actualTime=...), task(callId="c-2", actualTime="")]
    assert run(message("Dialing", tasks=tasks))[0].event.call_id == "c-2"


@pytest.mark.parametrize("event_type", ["Dialing", "Ringing", "CallAnswered", "CallFinished"])
@pytest.mark.parametrize("tasks", [..., [], None])
def test_call_event_without_its_task_is_refused(event_type: str, tasks: Any) -> None:
    # Given a call-level message whose tasks are missing or empty (the document: every
    # message carries the job with its call attempts),
    value = message(event_type, tasks=tasks)
    # When normalized, Then it is a dead letter naming the key, not a call event without a call.
    error = invalid(value)
    assert error.reason == "missing_field"
    assert error.detail == f"tasks is missing or empty in a {event_type} (a call event)"


def test_call_event_whose_task_has_no_call_id_is_refused() -> None:
    # Given a CallFinished whose attempt has an empty callId,
    value = message("CallFinished", tasks=[task(callId="")])
    # When normalized, Then the empty required id is named by its key path.
    error = invalid(value)
    assert (error.reason, error.detail) == ("missing_field", "tasks[0].callId is missing or empty")


def test_job_complete_without_tasks_gives_only_the_job_event() -> None:
    # Given a JobComplete whose job was never dialled, When normalized, Then one event.
    events = run(message(tasks=[], status="Failed", failureReason="TimeUp"))
    assert [n.event.kind for n in events] == ["job.completed"]
    assert events[0].event.outcome == "cancelled"


def test_job_complete_with_many_tasks_counts_them() -> None:
    # Given a JobComplete with five attempts, When normalized, Then 1 + 5 events.
    tasks = [task(id=f"t-{i}", callId=f"c-{i}", status="NoAnswer") for i in range(5)]
    events = run(message(tasks=tasks, status="Failed", failureReason="NoAnswer"))
    assert len(events) == 6
    assert [n.event.call_id for n in events[1:]] == [f"c-{i}" for i in range(5)]
    assert len({n.event.event_id for n in events}) == 6


def test_recording_ready_takes_caller_from_the_matching_task() -> None:
    # Given a RecordingReady that also carries the task list,
    recording = {"taskId": "t-2", "callId": "c-2", "duration": "7", "url": "https://r/2.wav"}
    tasks = [task(), task(id="t-2", callId="c-2", callingNumber="0571999")]
    [n] = run(message("RecordingReady", recording=recording, tasks=tasks))
    # Then the call's numbers come from the task with the same call id, the duration as int.
    assert n.event.call_id == "c-2"
    assert n.event.caller == "0571999"
    assert n.event.duration_seconds == 7
    assert n.event.recording_url == "https://r/2.wav"


def test_recording_ready_without_recording_is_invalid() -> None:
    # Given a RecordingReady without its recording object, When normalized, Then it is named.
    error = invalid(message("RecordingReady", recording=...))
    assert error.reason == "missing_field"
    assert "recording" in error.detail


@pytest.mark.parametrize(
    ("recording", "detail"),
    [
        ({"taskId": "t-9", "url": "https://r/9.wav"}, "recording.callId is missing or empty"),
        ({"callId": "", "url": "https://r/9.wav"}, "recording.callId is missing or empty"),
        ({"callId": "c-9", "url": ""}, "recording.url is missing or empty"),
    ],
)
def test_recording_ready_without_its_call_or_url_is_refused(
    recording: dict[str, Any], detail: str
) -> None:
    # Given a RecordingReady whose recording names no call (and no listed task does), or has no URL,
    error = invalid(message("RecordingReady", recording=recording, tasks=[]))
    # When normalized, Then it is a dead letter naming the key, not a recording of nothing.
    assert (error.reason, error.detail) == ("missing_field", detail)


# --- enumerations: names or integers (F2.3) ---------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason", "outcome"),
    [
        ("Succeeded", None, "answered"),
        ("Succeed", None, "answered"),
        (2, None, "answered"),
        ("Cancelled", "TimeUp", "cancelled"),
        ("5", None, "cancelled"),
        ("Failed", None, "failed"),
        (4, None, "failed"),
        ("Failed", "Unknown", "unknown"),
        ("Failed", "NoAnswer", "no_answer"),
        ("Failed", "InvalidStrategy", "failed"),
        ("Failed", "TimeUp", "cancelled"),
        ("Failed", "NoStrategy", "failed"),
        ("Failed", "CallFailed", "failed"),
        ("Failed", "PerDayCallCountLimit", "blocked"),
        ("Failed", "ContactBlockList", "blocked"),
        ("Failed", "EmptyNumber", "invalid_number"),
        ("Failed", "JobPerDayCallCountLimit", "blocked"),
        ("Failed", "VerificationCancelled", "cancelled"),
        ("Failed", "ContactSuspended", "blocked"),
        ("Failed", "InArrears", "out_of_service"),
        ("Failed", "OutOfService", "out_of_service"),
        ("Failed", "NoneRepeatableJobMaxAttemptCountLimit", "failed"),
        ("Failed", 1, "no_answer"),
        (4, "8", "invalid_number"),
        ("FAILED", "noanswer", "no_answer"),
        ("Failed", "SomethingNew", "unknown"),
        ("Failed", 99, "unknown"),
        ("Scheduling", None, None),
        ("Executing", None, None),
        ("Paused", None, None),
        ("Drafted", None, None),
        (6, None, None),
        ("Mystery", None, "unknown"),
        (None, None, "unknown"),
    ],
)
def test_job_outcome(status: Any, reason: Any, outcome: str | None) -> None:
    # Given a JobComplete with a JobStatus and a FailureReason, as names or integers,
    value = message(status=status if status is not None else ..., tasks=[])
    if reason is not None:
        value["failureReason"] = reason
    # When it is normalized,
    [job] = run(value)
    # Then the outcome follows F2.3, and the job status is kept unchanged as provider_status.
    assert job.event.outcome == outcome
    assert job.event.provider_status == (None if status is None else str(status))
    if reason is not None:
        assert job.event.extras["failureReason"] == str(reason)


TASK_CASES = [
    ("Executing", None, None),
    ("Succeeded", "answered", None),
    ("NoAnswer", "no_answer", None),
    ("NotExist", "invalid_number", None),
    ("Busy", "busy", None),
    ("Cancelled", "cancelled", None),
    ("Failed", "failed", None),
    ("NotConnected", "unreachable", None),
    ("PoweredOff", "powered_off", None),
    ("OutOfService", "out_of_service", None),
    ("InArrears", "out_of_service", None),
    ("EmptyNumber", "invalid_number", None),
    ("PerDayCallCountLimit", "blocked", None),
    ("ContactBlockList", "blocked", None),
    ("CallerNotRegistered", "failed", None),
    ("Terminated", "cancelled", None),
    ("VerificationCancelled", "cancelled", None),
    ("OutOfServiceNoCall", "out_of_service", None),
    ("InArrearsNoCall", "out_of_service", None),
    ("CallingNumberNotExist", "failed", None),
    ("SucceededFinish", "answered", None),
    ("SucceededChatbotHangUpAfterNoAnswer", "answered", "system"),
    ("SucceededChatbotHangUpAfterSilence", "answered", "system"),
    ("SucceededClientHangUpAfterNoAnswer", "answered", "callee"),
    ("SucceededClientHangUp", "answered", "callee"),
    ("SucceededTransferByIntent", "answered", None),
    ("SucceededTransferAfterNoAnswer", "answered", None),
    ("SucceededInoInterAction", "answered", None),
    ("SucceededError", "answered", None),
    ("SucceededSpecialInterceptVoiceAssistant", "answered", None),
    ("SucceededSpecialInterceptExtensionNumberTransfer", "answered", None),
    ("SucceededSpecialInterceptCustomSpecialIntercept", "answered", None),
    ("HighRiskSipCode", "blocked", None),
]


@pytest.mark.parametrize(("number", "case"), list(enumerate(TASK_CASES)))
def test_task_status_by_name_and_by_number(number: int, case: tuple[str, Any, Any]) -> None:
    name, outcome, hangup_by = case
    for sent in (name, number, str(number)):
        # Given a task record whose TaskStatus is sent as a name, a number or a numeric string,
        [_, record] = run(message(tasks=[task(status=sent)]))
        # When normalized, Then outcome and hangup_by follow F2.3 and the code is kept as sent.
        assert record.event.outcome == outcome, sent
        assert record.event.hangup_by == hangup_by, sent
        assert record.event.provider_status == str(sent)


@pytest.mark.parametrize("status", ["Exploded", 33, "-1", "99999999"])
def test_unknown_task_status_is_unknown_with_the_raw_code(status: Any) -> None:
    # Given a TaskStatus we do not know, When normalized, Then unknown with the code kept.
    [_, record] = run(message(tasks=[task(status=status)]))
    assert record.event.outcome == "unknown"
    assert record.event.provider_status == str(status)


def test_task_record_without_status_is_unknown_but_a_call_event_without_is_open() -> None:
    # Given a task without status, Then its final record is unknown, a Dialing has no outcome.
    assert run(message(tasks=[task(status=...)]))[1].event.outcome == "unknown"
    assert run(message("Dialing", tasks=[task(status=...)]))[0].event.outcome is None


# --- times, ids, extras -----------------------------------------------------------------------


def test_times_are_epoch_millis_as_numbers_or_strings() -> None:
    # Given the same message with its times as JSON numbers and as strings,
    as_numbers = run(message())
    as_strings = run(
        message(
            eventTime=str(ms(2024, 3, 1, 1, 2, 0)),
            tasks=[{k: str(v) for k, v in task().items()}],
        )
    )
    # Then both normalize alike, in UTC, with the same ids.
    assert [n.event for n in as_numbers] == [n.event for n in as_strings]
    record = as_numbers[1].event
    assert record.started_at == datetime(2024, 3, 1, 1, 0, 5, tzinfo=UTC)
    assert record.ended_at == datetime(2024, 3, 1, 1, 1, 5, tzinfo=UTC)
    assert record.occurred_at == record.ended_at
    assert record.extras["planedTime"] == "2024-03-01T01:00:00Z"


def test_task_record_falls_back_to_actual_then_event_time() -> None:
    # Given attempts without an end (or without any time), Then occurred_at falls back.
    [_, started] = run(message(tasks=[task(endTime=0)]))
    [_, neither] = run(message(tasks=[task(endTime=..., actualTime=...)]))
    assert started.event.occurred_at == datetime(2024, 3, 1, 1, 0, 5, tzinfo=UTC)
    assert started.event.ended_at is None
    assert neither.event.occurred_at == datetime(2024, 3, 1, 1, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize("event_time", [..., None, "", 0, "0"])
def test_missing_event_time_is_invalid(event_time: Any) -> None:
    # Given no usable eventTime, When normalized, Then missing_field naming it.
    error = invalid(message(eventTime=event_time))
    assert error.reason == "missing_field"
    assert "eventTime" in error.detail


@pytest.mark.parametrize("event_time", ["soon", "99999999999999999", 1e300])
def test_unreadable_event_time_is_invalid(event_time: Any) -> None:
    # Given an eventTime that is no epoch millis, When normalized, Then it is named.
    error = invalid(message(eventTime=event_time))
    assert error.reason in {"bad_field", "bad_time"}
    assert "eventTime" in error.detail


def test_unknown_event_type_goes_to_dead_letters_by_its_reason() -> None:
    # Given an eventType the mapping does not know, When normalized,
    error = invalid(message("AgentTransferred"))
    # Then the reason is unknown_event_type and the detail names the value and the known ones.
    assert error.reason == "unknown_event_type"
    assert "AgentTransferred" in error.detail
    assert "JobComplete" in error.detail


def test_event_type_in_another_case_is_the_same_event() -> None:
    # Given JobComplete spelled in lower case, When normalized, Then the same events and ids.
    lower = [n.event for n in run(message("jobcomplete"))]
    assert lower == [n.event for n in run(message("JobComplete"))]


@pytest.mark.parametrize("event_type", [..., None, "", "  "])
def test_missing_event_type_is_invalid(event_type: Any) -> None:
    # Given no eventType, When normalized, Then missing_field naming it.
    error = invalid(message(eventType=event_type))
    assert error.reason == "missing_field"
    assert "eventType" in error.detail


def test_same_delivery_twice_gives_the_same_ids_whatever_the_encoding() -> None:
    # Given one message as JSON, re-serialized with other spacing, and base64-wrapped,
    value = message(tasks=[task(), task(id="t-2", callId="c-2", status="Busy")])
    raw = json.dumps(value).encode()
    variants = [raw, json.dumps(value, indent=2).encode(), base64.b64encode(raw)]
    # When each is normalized, Then the ids are the same every time.
    ids = [[n.event.event_id for n in run(v)] for v in variants]
    assert ids[0] == ids[1] == ids[2]
    assert len(set(ids[0])) == 3


def test_events_of_one_call_never_share_an_id() -> None:
    # Given every message about one call: dialing, ringing, answered, finished, recording, job,
    tasks = [task(status="SucceededFinish")]
    recording = {"taskId": "t-1", "callId": "c-1", "url": "https://r"}
    ids = []
    for event_type in ("Dialing", "Ringing", "CallAnswered", "CallFinished"):
        ids += [n.event.event_id for n in run(message(event_type, tasks=tasks))]
    ids += [n.event.event_id for n in run(message("RecordingReady", recording=recording))]
    ids += [n.event.event_id for n in run(message(tasks=tasks))]
    # And a later delivery of the same CallFinished with a new event time,
    ids += [
        n.event.event_id
        for n in run(message("CallFinished", tasks=tasks, eventTime=ms(2024, 3, 1, 1, 3, 0)))
    ]
    # Then all eight ids differ.
    assert len(ids) == 8
    assert len(set(ids)) == 8


def test_task_records_dedupe_on_call_status_and_end_not_on_the_job_message() -> None:
    # Given the same attempt reported by two JobComplete messages sent at different times,
    a = run(message(tasks=[task()]))
    b = run(message(tasks=[task()], eventTime=ms(2024, 3, 1, 5, 0, 0)))
    # Then the job events differ but the attempt's call.record is one and the same.
    assert a[0].event.event_id != b[0].event.event_id
    assert a[1].event.event_id == b[1].event.event_id
    # And a task with a different status or end is another record.
    c = run(message(tasks=[task(status="Busy")]))
    d = run(message(tasks=[task(endTime=ms(2024, 3, 1, 1, 1, 6))]))
    assert len({a[1].event.event_id, c[1].event.event_id, d[1].event.event_id}) == 3


def test_task_records_without_call_id_keep_apart_by_task_id() -> None:
    # Given two undialled attempts without callId, Then their records still differ.
    tasks = [task(id="t-1", callId=...), task(id="t-2", callId=...)]
    _, one, two = run(message(tasks=tasks, status="Failed", failureReason="TimeUp"))
    assert one.event.call_id is None
    assert one.event.event_id != two.event.event_id


def test_extras_are_flattened_and_never_hide_our_keys() -> None:
    # Given custom parameters, one of them named like a key we set, an undocumented top-level key,
    value = message(
        extras=[
            {"key": "TenantId", "value": "ten-1"},
            {"key": "status", "value": "mine"},
            {"key": "ServiceId", "value": 7},
            {"key": "empty", "value": ""},
            {"key": "ServiceId", "value": 8},
        ],
        newField={"x": 1},
    )
    value["contacts"][0]["vip"] = True
    value["tasks"][0]["lineId"] = "L1"
    [_, record] = run(value)
    extras = record.event.extras
    # Then each custom parameter is a key (the last of a repeat wins, empty ones are dropped),
    assert extras["TenantId"] == "ten-1"
    assert extras["ServiceId"] == 8
    assert "empty" not in extras
    # And ours keeps its name while the clashing custom one moves under `extras.`,
    assert extras["status"] == "Succeeded"
    assert extras["extras.status"] == "mine"
    # And undocumented keys are kept, nested ones under their container's name.
    assert extras["newField"] == {"x": 1}
    assert extras["contact.vip"] is True
    assert extras["task.lineId"] == "L1"


@pytest.mark.parametrize("extras", [None, "", [], {}])
def test_absent_extras_add_nothing(extras: Any) -> None:
    # Given extras absent in any spelling, When normalized, Then only our own keys.
    [job] = run(message(extras=extras, tasks=[]))
    assert job.event.extras == {"honorific": "张先生", "name": "张三"}


@pytest.mark.parametrize(
    ("field", "value"), [("extras", {"a": "1"}), ("contacts", {"phoneNumber": "13800000000"})]
)
def test_an_object_where_the_document_has_an_array_is_refused(field: str, value: Any) -> None:
    # Given extras or contacts sent as an object, where the document has an array,
    error = invalid(message(**{field: value}, tasks=[]))
    # When normalized, Then it is a dead letter naming the key, not a guess.
    assert error.reason == "bad_field"
    assert error.detail.startswith(f"{field} must be an array")


@pytest.mark.parametrize(
    ("extras", "where"),
    [
        ("text", "extras must be an array"),
        ([1], "extras[0] must be an object"),
        ([{"value": "v"}], "extras[0].key"),
        ([{"key": {"a": 1}, "value": "v"}], "key"),
    ],
)
def test_malformed_extras_are_named(extras: Any, where: str) -> None:
    # Given extras of a shape that is not [{key, value}], Then the error names the spot.
    error = invalid(message(extras=extras))
    assert error.reason in {"bad_field", "missing_field"}
    assert where in error.detail


def test_contact_reference_is_the_correlation_id_and_extra_contacts_are_kept() -> None:
    # Given two contacts (the FAQ says one job is one contact),
    second = {"id": "ct-2", "phoneNumber": "13900000000", "referenceId": "ref-2"}
    value = message(tasks=[])
    value["contacts"].append(second)
    [job] = run(value)
    # Then the first is the job's, and the rest are kept in extras.
    assert job.event.correlation_id == "ref-1"
    assert job.event.refs["contact_id"] == "ct-1"
    assert job.event.extras["more_contacts"] == [second]


def test_contact_number_other_than_the_called_number_is_kept() -> None:
    # Given a task calling another number than the contact's, Then both are kept.
    [_, record] = run(message(tasks=[task(calledNumber="13811111111")]))
    assert record.event.callee == "13811111111"
    assert record.event.extras["phoneNumber"] == "13800000000"


@pytest.mark.parametrize(
    ("field", "value", "where"),
    [
        ("contacts", "x", "contacts must be an array"),
        ("contacts", [1], "contacts[0]"),
        ("tasks", {"id": 1}, "tasks must be an array"),
        ("tasks", [task(), "x"], "tasks[1]"),
        ("instanceId", {"a": 1}, "instanceId"),
    ],
)
def test_malformed_structure_is_named(field: str, value: Any, where: str) -> None:
    # Given a structural field of the wrong type, When normalized, Then it is named.
    error = invalid(message(**{field: value}))
    assert error.reason == "bad_field"
    assert where in error.detail


def test_an_array_of_messages_gives_all_their_events() -> None:
    # Given two messages in one body (as a forwarding source may batch them),
    body = [message(tasks=[task()]), message("Dialing", tasks=[task(status="Executing")])]
    # Then the events of both, in order; and an error in one names its index.
    assert [n.event.kind for n in run(body)] == ["job.completed", "call.record", "call.initiated"]
    error = invalid([message(), message("Nope")])
    assert error.detail.startswith("record [1]:")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "not_json"),
        (b"not json", "not_json"),
        (b"\xff\xfe", "not_utf8"),
        (b"[]", "empty_batch"),
        (b"42", "not_object"),
        (b'"text"', "not_object"),
        (b"[1]", "not_object"),
        (b"1" * 5000, "not_json"),
        (b'{"eventType": "Dialing", "eventTime": 1, "id": "\\ud800"}', "bad_unicode"),
    ],
)
def test_bodies_that_are_not_messages(raw: bytes, reason: str) -> None:
    # Given a body that is no message, When normalized, Then the reason says why.
    error = invalid(raw)
    assert error.reason == reason


def test_nesting_too_deep_to_store_is_invalid() -> None:
    # Given custom extras nested deeper than the serializer goes, Then invalid at once.
    # Given a custom parameter nested deeper than the serializer goes,
    deep: Any = "x"
    for _ in range(300):
        deep = [deep]
    error = invalid(message(extras=[{"key": "deep", "value": deep}]))
    # Then the message is dead-lettered at once, not retried by a failing sink.
    assert error.reason == "bad_field"
    assert "serialized" in error.detail


# --- properties -------------------------------------------------------------------------------

SEED_BODIES = [
    json.loads(path.read_bytes()) for path in sorted(SAMPLES.glob(f"{FORMAT}.*.json"))
] + [
    message(),
    message("CallFinished"),
    message("RecordingReady", recording={"callId": "c", "url": "https://r"}),
]


@PROPERTY
@given(data=st.data())
def test_mutated_messages_give_events_or_invalid_message(data: st.DataObject) -> None:
    # Given a valid message (samples and the job/call shapes above) mutated up to three times,
    value = data.draw(mutated(data.draw(st.sampled_from(SEED_BODIES))))
    raw = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    if data.draw(st.booleans()):
        raw = base64.b64encode(raw)
    # When parsed twice, Then only InvalidMessage escapes, and the ids are deterministic.
    result = deterministic(FORMAT, raw)
    if isinstance(result, list):
        assert {event.provider for event in result} == {Provider.ALIYUN_OUTBOUND_BOT}

"""Realistic event sequences of one call per provider, built as CallEvents (docs/formats.md F1-4).

Each scenario is the events a format module would make from the provider's messages of one
call, and the `calls` row the merge must make of them, whatever order they arrive in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from consumer.model import CallEvent, Normalized, event_id
from consumer.sinks.base import StoredEvent

T0 = datetime(2021, 5, 8, 6, 39, 30, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def event(
    kind: str, provider: str, call_id: str | None, seconds: float, **fields: Any
) -> CallEvent:
    """A CallEvent whose id hashes everything given, like a format's dedupe key."""
    key = sorted((name, repr(value)) for name, value in fields.items())
    return CallEvent(
        event_id=event_id(f"test.{provider}", kind, call_id, seconds, key),
        provider=provider,
        kind=kind,
        call_id=call_id,
        occurred_at=at(seconds),
        **fields,
    )


def stored(events: list[CallEvent], queue: str = "q", received: float = 100.0) -> list[StoredEvent]:
    return [
        StoredEvent(
            Normalized(e, {"raw": e.event_id, "文本": "中文"}),
            queue,
            f"m-{e.event_id}",
            at(received),
        )
        for e in events
    ]


def with_call_id(events: list[CallEvent], call_id: str) -> list[CallEvent]:
    """The same call under another id (and so other event ids): one database, many runs."""
    return [
        e.model_copy(update={"call_id": call_id, "event_id": f"{e.event_id}-{call_id}"})
        if e.call_id is not None
        else e
        for e in events
    ]


@dataclass(frozen=True)
class Scenario:
    name: str
    events: list[CallEvent]
    expected: dict[str, Any]
    no_call: list[CallEvent] = field(default_factory=list)  # events that make no calls row


def aliyun_vms() -> Scenario:
    call = "100001616500^100001871490"
    p = "aliyun_vms"
    common = {"correlation_id": "123456", "direction": "outbound"}
    events = [
        event("call.initiated", p, call, 0, provider_status="200101", started_at=at(0), **common),
        event("call.ringing", p, call, 3, provider_status="200201", ringing_at=at(3), **common),
        event("call.answered", p, call, 5, provider_status="200102", answered_at=at(5), **common),
        event("call.input", p, call, 8, provider_status="300000", extras={"dtmf": "1"}, **common),
        event("call.ended", p, call, 15, provider_status="200100", ended_at=at(15), **common),
        event(
            "call.record",
            p,
            call,
            15,
            caller="05711111****",
            callee="1390000****",
            started_at=at(0),
            ringing_at=at(3),
            answered_at=at(5),
            ended_at=at(15),
            duration_seconds=10,
            outcome="answered",
            provider_status="200000",
            hangup_by="callee",
            **common,
        ),
        event(
            "recording.ready",
            p,
            call,
            15,
            answered_at=at(5),
            ended_at=at(15),
            duration_seconds=10,
            provider_status="200010",
            recording_url="http://oss.example/rec.wav",
            correlation_id="123456",
        ),
        event("asr.sentence", p, call, 7, extras={"words": "你好"}, correlation_id="123456"),
    ]
    expected = {
        "outcome": "answered",
        "caller": "05711111****",
        "callee": "1390000****",
        "direction": "outbound",
        "started_at": at(0),
        "ringing_at": at(3),
        "answered_at": at(5),
        "ended_at": at(15),
        "duration_seconds": 10,
        "recording_url": "http://oss.example/rec.wav",
        "provider_status": "200000",
        "hangup_by": "callee",
        "correlation_id": "123456",
        "last_event_kind": "recording.ready",
        "last_event_at": at(15),
        "event_count": 8,
    }
    return Scenario("aliyun_vms", events, expected)


def aliyun_outbound_bot() -> Scenario:
    call = "60b48efe-5d6b70479641"
    p = "aliyun_outbound_bot"
    refs = {"job_id": "08a4c460", "group_id": "8869f35d", "instance_id": "08a4c460"}
    common = {"direction": "outbound", "correlation_id": "762c2e16", "refs": refs}
    job_done = event("job.completed", p, None, 40, provider_status="Succeeded", refs=refs)
    events = [
        event(
            "call.initiated", p, call, 0, started_at=at(0), provider_status="Executing", **common
        ),
        event("call.answered", p, call, 6, answered_at=at(6), **common),
        event("call.ended", p, call, 30, ended_at=at(30), **common),
        event(
            "call.record",
            p,
            call,
            30,
            caller="123456",
            callee="11111111",
            started_at=at(0),
            ended_at=at(30),
            outcome="answered",
            provider_status="ClientHangUp",
            hangup_by="callee",
            direction="outbound",
            correlation_id="762c2e16",
            refs={**refs, "task_id": "60b48efe"},
        ),
        event(
            "recording.ready",
            p,
            call,
            35,
            recording_url="https://a.wav",
            duration_seconds=24,
            extras={"file_name": "a.wav"},
            **common,
        ),
        job_done,
    ]
    expected = {
        "outcome": "answered",
        "caller": "123456",
        "callee": "11111111",
        "started_at": at(0),
        "ringing_at": None,
        "answered_at": at(6),
        "ended_at": at(30),
        "duration_seconds": 24,
        "recording_url": "https://a.wav",
        "provider_status": "ClientHangUp",
        "hangup_by": "callee",
        "correlation_id": "762c2e16",
        "refs": {**refs, "task_id": "60b48efe"},
        "last_event_kind": "recording.ready",
        "event_count": 5,
    }
    return Scenario("aliyun_outbound_bot", events, expected, no_call=[job_done])


def huawei_voice() -> Scenario:
    """A callback whose alerting status was lost (Voice Call status events are never re-sent)."""
    call = "1201_612_4294967295_20190124030424@callenabler245.huaweicaas.com"
    p = "huawei_voice"
    events = [
        event("call.initiated", p, call, 0, caller="+8613800000001", callee="+8613800000002"),
        event("call.answered", p, call, 4, caller="+8613800000001", callee="+8613800000002"),
        event(
            "call.ended",
            p,
            call,
            20,
            provider_status="0",
            outcome="answered",
            correlation_id="biz-7",
            caller="+8613800000001",
            callee="+8613800000002",
        ),
        event(
            "call.record",
            p,
            call,
            20,
            caller="+8613900000001",
            callee="+8613900000002",
            direction="outbound",
            started_at=at(0),
            ringing_at=at(2),
            answered_at=at(4),
            ended_at=at(20),
            duration_seconds=16,
            outcome="answered",
            provider_status="0",
            correlation_id="biz-7",
            refs={"icid": "CAE-20190124110424-12019775"},
        ),
    ]
    expected = {
        "outcome": "answered",
        "caller": "+8613900000001",  # the fee record is authoritative for the numbers
        "callee": "+8613900000002",
        "started_at": at(0),
        "ringing_at": at(2),
        "answered_at": at(4),
        "ended_at": at(20),
        "duration_seconds": 16,
        "recording_url": None,
        "provider_status": "0",
        "refs": {"icid": "CAE-20190124110424-12019775"},
        "last_event_kind": "call.record",
        "event_count": 4,
    }
    return Scenario("huawei_voice", events, expected)


def huawei_privacy() -> Scenario:
    """An AXB call that the callee rejected; the disconnect was re-pushed (same event twice)."""
    call = "1200_1827_4294967295_20190124023003@callenabler246.huaweicaas.com"
    p = "huawei_privacy"
    parties = {"caller": "+86138****0021", "callee": "+86138****7021"}
    disconnect = event(
        "call.ended", p, call, 9, provider_status="31", outcome="rejected", hangup_by="callee"
    )
    events = [
        event("call.initiated", p, call, 0, refs={"subscription_id": "s-1"}, **parties),
        event("call.ringing", p, call, 1, ringing_at=at(1), **parties),
        disconnect,
        disconnect,
        event(
            "call.record",
            p,
            call,
            9,
            direction="outbound",
            started_at=at(0),
            ringing_at=at(1),
            ended_at=at(9),
            outcome="rejected",
            provider_status="ulFailReason:11",
            refs={"icid": "ba171f34", "bind_num": "+86138****0022"},
            **parties,
        ),
    ]
    expected = {
        "outcome": "rejected",
        "caller": "+86138****0021",
        "callee": "+86138****7021",
        "started_at": at(0),
        "ringing_at": at(1),
        "answered_at": None,
        "ended_at": at(9),
        "duration_seconds": None,
        "provider_status": "ulFailReason:11",
        "hangup_by": "callee",
        "refs": {"subscription_id": "s-1", "icid": "ba171f34", "bind_num": "+86138****0022"},
        "last_event_kind": "call.record",
        "event_count": 4,
    }
    return Scenario("huawei_privacy", events, expected)


def moor7() -> Scenario:
    """An outbound call with agent-state pushes in between, and an agent login elsewhere."""
    call = "403344537650466816"
    p = "moor7"
    agent = {"refs": {"agent_number": "20001", "account_id": "2100147"}}
    numbers = {"caller": "01081400192", "callee": "17319132391", "direction": "outbound"}
    login = event("agent.session", p, None, -60, provider_status="login", **agent)
    agent_busy = event(
        "agent.status", p, call, 12, provider_status="4", outcome="busy", **agent
    )  # an agent state: must not make the call "busy"
    events = [
        event("call.ringing", p, call, 2, ringing_at=at(2), **numbers, **agent),
        event("call.answered", p, call, 12, answered_at=at(12), **numbers, **agent),
        agent_busy,
        event("call.ended", p, call, 17, ended_at=at(17), **numbers, **agent),
        event(
            "call.record",
            p,
            call,
            17,
            started_at=at(2),
            ringing_at=at(2),
            answered_at=at(12),
            ended_at=at(17),
            duration_seconds=5,
            outcome="answered",
            provider_status="ANSWER",
            hangup_by="agent",
            recording_url="https://x/403344537650466816-doubleTrack.mp3",
            **numbers,
            **agent,
        ),
        login,
    ]
    expected = {
        "outcome": "answered",
        "caller": "01081400192",
        "callee": "17319132391",
        "direction": "outbound",
        "started_at": at(2),
        "answered_at": at(12),
        "ended_at": at(17),
        "duration_seconds": 5,
        "recording_url": "https://x/403344537650466816-doubleTrack.mp3",
        "provider_status": "ANSWER",
        "hangup_by": "agent",
        "last_event_kind": "call.record",
        "event_count": 4,
    }
    return Scenario("moor7", events, expected, no_call=[login, agent_busy])


SCENARIOS = [aliyun_vms(), aliyun_outbound_bot(), huawei_voice(), huawei_privacy(), moor7()]

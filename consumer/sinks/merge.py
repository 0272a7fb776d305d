"""The `calls` merge rule: one row per (provider, call_id) from all of the call's events.

The row is a pure function of the *set* of the call's events: `merge_call` deduplicates by
`event_id` and ranks the events by a total order before it looks at any field, so neither the
order the events arrived in nor how often each arrived changes the result. The sinks recompute
the row from every stored event of the call inside the transaction that added an event.

Authority (providers.md §0.3): the final record (`call.record`: Aliyun VoiceReport, Outbound
Bot task record, Huawei fee record, 7moor `cdr`) wins for outcome, times and duration; the
other events fill the gaps it leaves. `recording_url` prefers the dedicated `recording.ready`
event (Aliyun VoiceRecordReport, Outbound Bot RecordingReady). Within one kind the later event
wins, and `event_id` breaks exact ties. `agent.status` events never shape a call (providers.md
§4.2) and events without a `call_id` (job.completed, agent.session) belong to no call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from consumer.model import CallEvent, Direction, HangupBy, Kind, Outcome, Provider

T = TypeVar("T")

# Lower is more authoritative. call.ended carries the hangup cause (Huawei disconnect, VMS
# VoiceCallReport end codes) and outranks the in-progress events for outcome and times.
_AUTHORITY: dict[Kind, int] = {
    Kind.CALL_RECORD: 0,
    Kind.CALL_ENDED: 1,
    Kind.RECORDING_READY: 2,
    Kind.CALL_ANSWERED: 3,
    Kind.CALL_RINGING: 4,
    Kind.CALL_INITIATED: 5,
    Kind.CALL_INPUT: 6,
    Kind.ASR_SENTENCE: 7,
}

# A call's life in order; breaks ties between events that carry the same `occurred_at`
# when choosing `last_event_kind` (a recording is ready after the call record is written).
_LIFECYCLE: dict[Kind, int] = {
    Kind.CALL_INITIATED: 0,
    Kind.CALL_RINGING: 1,
    Kind.CALL_ANSWERED: 2,
    Kind.CALL_INPUT: 3,
    Kind.ASR_SENTENCE: 4,
    Kind.CALL_ENDED: 5,
    Kind.CALL_RECORD: 6,
    Kind.RECORDING_READY: 7,
}

# The time an event of this kind marks, used only when the event left its own field empty.
_IMPLIED_TIME: dict[Kind, str] = {
    Kind.CALL_INITIATED: "started_at",
    Kind.CALL_RINGING: "ringing_at",
    Kind.CALL_ANSWERED: "answered_at",
    Kind.CALL_ENDED: "ended_at",
}


@dataclass(frozen=True, slots=True)
class CallRow:
    """A `calls` row without `updated_at`, which the sink stamps when it writes the row."""

    provider: Provider
    call_id: str
    outcome: Outcome | None = None
    caller: str | None = None
    callee: str | None = None
    direction: Direction | None = None
    started_at: datetime | None = None
    ringing_at: datetime | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    duration_seconds: int | None = None
    recording_url: str | None = None
    provider_status: str | None = None
    hangup_by: HangupBy | None = None
    correlation_id: str | None = None
    refs: dict[str, str] = field(default_factory=dict)
    last_event_kind: Kind = Kind.CALL_INITIATED
    last_event_at: datetime | None = None
    event_count: int = 0


def shapes_call(event: CallEvent) -> bool:
    """Whether the event takes part in a `calls` row at all."""
    return event.call_id is not None and event.kind in _AUTHORITY


def merge_call(events: Iterable[CallEvent]) -> CallRow | None:
    """The `calls` row of one call's events; None when none of them shapes a call.

    All events must share provider and call_id (`ValueError` otherwise): mixing two calls is a
    bug in the caller, and silently picking one would corrupt both rows.
    """
    unique: dict[str, CallEvent] = {}
    for event in events:
        if not shapes_call(event):
            continue
        seen = unique.get(event.event_id)
        # The same id should mean the same content; if a format ever breaks that, still pick
        # one copy by content rather than by arrival.
        if seen is None or (seen != event and event.model_dump_json() < seen.model_dump_json()):
            unique[event.event_id] = event
    if not unique:
        return None
    keys = {(event.provider, event.call_id) for event in unique.values()}
    if len(keys) != 1:
        raise ValueError(f"events of several calls given to one merge: {sorted(map(str, keys))}")
    provider, call_id = next(iter(keys))
    assert call_id is not None  # shapes_call() admitted only events with a call_id

    # Most authoritative first; later first within a kind; event_id last so the order is total.
    ranked = sorted(unique.values(), key=_rank_key)
    # Stable sort: keeps the authority order among the events that are not recordings.
    recordings_first = sorted(ranked, key=lambda e: e.kind is not Kind.RECORDING_READY)

    refs: dict[str, str] = {}
    for event in reversed(ranked):  # least authoritative first, so the best one writes last
        refs.update(event.refs)
    last = max(unique.values(), key=_recency_key)
    return CallRow(
        provider=provider,
        call_id=call_id,
        outcome=_first(ranked, lambda e: e.outcome),
        caller=_first(ranked, lambda e: e.caller),
        callee=_first(ranked, lambda e: e.callee),
        direction=_first(ranked, lambda e: e.direction),
        started_at=_time(ranked, "started_at", lambda e: e.started_at),
        ringing_at=_time(ranked, "ringing_at", lambda e: e.ringing_at),
        answered_at=_time(ranked, "answered_at", lambda e: e.answered_at),
        ended_at=_time(ranked, "ended_at", lambda e: e.ended_at),
        duration_seconds=_first(ranked, lambda e: e.duration_seconds),
        recording_url=_first(recordings_first, lambda e: e.recording_url),
        provider_status=_first(ranked, lambda e: e.provider_status),
        hangup_by=_first(ranked, lambda e: e.hangup_by),
        correlation_id=_first(ranked, lambda e: e.correlation_id),
        refs=refs,
        last_event_kind=last.kind,
        last_event_at=last.occurred_at,
        event_count=len(unique),
    )


def _first(order: Sequence[CallEvent], pick: Callable[[CallEvent], T | None]) -> T | None:
    for event in order:
        value = pick(event)
        if value is not None:
            return value
    return None


def _time(
    order: Sequence[CallEvent], name: str, pick: Callable[[CallEvent], datetime | None]
) -> datetime | None:
    """The field as the events state it, else the `occurred_at` of the event that marks it."""
    stated = _first(order, pick)
    if stated is not None:
        return stated
    return _first(order, lambda e: e.occurred_at if _IMPLIED_TIME.get(e.kind) == name else None)


def _rank_key(event: CallEvent) -> tuple[int, float, str]:
    return (_AUTHORITY[event.kind], -event.occurred_at.timestamp(), event.event_id)


def _recency_key(event: CallEvent) -> tuple[datetime, int, str]:
    return (event.occurred_at, _LIFECYCLE[event.kind], event.event_id)


__all__ = ["CallRow", "merge_call", "shapes_call"]

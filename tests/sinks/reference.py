"""The calls merge as it was before it became incremental: sort all events, take the first.

Kept as the oracle the incremental merge is checked against: it ranks every event of the call
at once, so it cannot share a folding mistake with `MergeState`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TypeVar

from consumer.model import CallEvent, Kind
from consumer.sinks.merge import _AUTHORITY, _IMPLIED_TIME, _LIFECYCLE, CallRow, one_call

T = TypeVar("T")


def recompute(events: Iterable[CallEvent]) -> CallRow | None:
    """The `calls` row of one call's events; None when none of them shapes a call.

    All events must share provider and call_id (`ValueError` otherwise): mixing two calls is a
    bug in the caller, and silently picking one would corrupt both rows.
    """
    call = one_call(events)
    if call is None:
        return None
    provider, call_id, unique = call

    # Most authoritative first; later first within a kind; event_id last so the order is total.
    ranked = sorted(unique, key=_rank_key)
    # Stable sort: keeps the authority order among the events that are not recordings.
    recordings_first = sorted(ranked, key=lambda e: e.kind is not Kind.RECORDING_READY)

    refs: dict[str, str] = {}
    for event in reversed(ranked):  # least authoritative first, so the best one writes last
        refs.update(event.refs)
    last = max(unique, key=_recency_key)
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

"""The `calls` merge rule: one row per (provider, call_id) from all of the call's events.

The row is a pure function of the *set* of the call's events: `merge_call` deduplicates by
`event_id` and ranks the events by a total order before it looks at any field, so neither the
order the events arrived in nor how often each arrived changes the result. The ranking is kept
as a `MergeState` (each field's winning candidate), a join of the events' own candidates: the
sinks store it with the row and fold each new event into it inside the transaction that added
the event, so an event costs the same whether its call has one event or a thousand.

Authority (docs/formats.md F0.3): the final record (`call.record`: Aliyun VoiceReport, Outbound
Bot task record, Huawei fee record, 7moor `cdr`) wins for outcome, times and duration; the
other events fill the gaps it leaves. `recording_url` prefers the dedicated `recording.ready`
event (Aliyun VoiceRecordReport, Outbound Bot RecordingReady). Within one kind the later event
wins, and `event_id` breaks exact ties. `agent.status` events never shape a call (docs/formats.md
F4.2) and events without a `call_id` (job.completed, agent.session) belong to no call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from operator import attrgetter
from typing import Any

from consumer.model import CallEvent, Direction, HangupBy, Kind, Outcome, Provider

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


def one_call(events: Iterable[CallEvent]) -> tuple[str, str, list[CallEvent]] | None:
    """The provider, call id and distinct events of one call's `events` that shape its row;
    None when none does.

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
    return provider, call_id, list(unique.values())


def merge_call(events: Iterable[CallEvent]) -> CallRow | None:
    """The `calls` row of one call's events; None when none of them shapes a call (`one_call`
    says which events count)."""
    call = one_call(events)
    if call is None:
        return None
    provider, call_id, unique = call
    state = MergeState()
    for event in unique:
        state.fold(event)
    return state.row(provider, call_id)


# A candidate for one field: the rank key of the event that offers it, and the value. The
# lowest key wins; keys are total (they end with the event_id), so the winner of a set of
# candidates is the same whatever order they are offered in, and offering one twice is a no-op.
_Candidate = tuple[tuple[Any, ...], Any]

# Row fields taken from the best-ranked event that states them, as they are.
_PLAIN: tuple[str, ...] = (
    "outcome",
    "caller",
    "callee",
    "direction",
    "duration_seconds",
    "provider_status",
    "hangup_by",
    "correlation_id",
)
_TIMES: tuple[str, ...] = ("started_at", "ringing_at", "answered_at", "ended_at")
_IMPLIED = "~"  # slot prefix: the time as implied by the kind of event that marks it
_TIME_SLOTS = frozenset(_TIMES) | {_IMPLIED + name for name in _TIMES}
_ENUMS: dict[str, Callable[[str], Any]] = {
    "outcome": Outcome,
    "direction": Direction,
    "hangup_by": HangupBy,
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_OFFERED = (*_PLAIN, *_TIMES)  # the fields an event offers as they are
_offered_values = attrgetter(*_OFFERED)


class MergeState:
    """What the merge needs to fold in one more event: the winning candidate of every field.

    It is a join: the state of a set of events is the same whatever order they are folded in,
    so the sink keeps it next to the `calls` row (`calls.merge_state`) and folds each new event
    into it, at a cost that does not grow with the events the call already has. Only
    `event_count` assumes that each folded event is new to the call, which the sink knows from
    its insert. A new derived column is one more method over the same winners. The stored
    keys are ranks under `_AUTHORITY` and `_LIFECYCLE`: a change to those tables must come with
    a migration that sets `calls.merge_state` to NULL, so that every row is recomputed.
    """

    __slots__ = ("count", "last", "last_at", "refs", "slots")

    def __init__(self) -> None:
        self.slots: dict[str, _Candidate] = {}
        self.refs: dict[str, _Candidate] = {}
        self.last: tuple[int, int, str, Kind] | None = None  # the max wins (event_id is unique)
        self.last_at: datetime | None = None
        self.count = 0

    def fold(self, event: CallEvent) -> None:
        """Take one event of the call into account (the caller has checked `shapes_call`)."""
        kind = event.kind
        occurred = (event.occurred_at - _EPOCH) // _MICROSECOND
        rank = (_AUTHORITY[kind], -occurred, event.event_id)
        slots = self.slots
        get = slots.get
        # _offer, inlined in the loop that makes most of its calls (a dozen per event)
        for name, value in zip(_OFFERED, _offered_values(event), strict=True):
            if value is not None:
                held = get(name)
                if held is None or rank < held[0]:
                    slots[name] = (rank, value)
        implied = _IMPLIED_TIME.get(kind)
        if implied is not None:
            _offer(slots, _IMPLIED + implied, rank, event.occurred_at)
        if event.recording_url is not None:
            # The dedicated recording event first, then authority as for every other field.
            recording = (int(kind is not Kind.RECORDING_READY), *rank)
            _offer(slots, "recording_url", recording, event.recording_url)
        for key, value in event.refs.items():
            _offer(self.refs, key, rank, value)
        last = (occurred, _LIFECYCLE[kind], event.event_id, kind)
        if self.last is None or last > self.last:
            self.last, self.last_at = last, event.occurred_at
        self.count += 1

    def row(self, provider: Provider | str, call_id: str) -> CallRow:
        return CallRow(*self.values(provider, call_id))

    def values(self, provider: Provider | str, call_id: str) -> tuple[Any, ...]:
        """The fields of `row()` in their order, without building the row: what the sinks
        write, for every call of every transaction."""
        last = self.last
        if last is None:
            raise ValueError("no event folded into the merge state yet")
        won = {name: candidate[1] for name, candidate in self.slots.items()}
        get = won.get  # a time stated by an event wins over one implied ("~") by its kind
        refs = self.refs
        return (
            Provider(provider),
            call_id,
            get("outcome"),
            get("caller"),
            get("callee"),
            get("direction"),
            get("started_at") or get("~started_at"),
            get("ringing_at") or get("~ringing_at"),
            get("answered_at") or get("~answered_at"),
            get("ended_at") or get("~ended_at"),
            get("duration_seconds"),
            get("recording_url"),
            get("provider_status"),
            get("hangup_by"),
            get("correlation_id"),
            {key: candidate[1] for key, candidate in sorted(refs.items())} if refs else {},
            last[3],
            self.last_at,
            self.count,
        )

    # -- storage: compact JSON, read back to an equal state ----------------------------------

    def to_json(self) -> dict[str, Any]:
        """Each distinct rank key once (`k`), each candidate `[index of its key, value]`; times
        as epoch microseconds, enums as their values. A call's fields mostly share a few
        winners, so this is a few hundred bytes."""
        keys: dict[tuple[Any, ...], int] = {}
        slots: dict[str, list[Any]] = {}
        for name, (key, held) in self.slots.items():
            value = held
            if name in _TIME_SLOTS:  # as _from_json reads them back
                value = (held - _EPOCH) // _MICROSECOND
            elif isinstance(held, Enum):
                value = held._value_
            slots[name] = [keys.setdefault(key, len(keys)), value]
        refs = {
            name: [keys.setdefault(key, len(keys)), value]
            for name, (key, value) in self.refs.items()
        }
        last = None if self.last is None else [*self.last[:3], self.last[3]._value_]
        return {"v": 1, "n": self.count, "k": list(keys), "s": slots, "r": refs, "l": last}

    @classmethod
    def from_json(cls, data: Any) -> MergeState:
        """The state `to_json` wrote; `ValueError` (or `LookupError`, `TypeError`) if damaged."""
        if not isinstance(data, dict) or data.get("v") != 1:
            raise ValueError(f"not a version 1 merge state: {str(data)[:200]!r}")
        state = cls()
        state.count = int(data["n"])
        keys = [tuple(key) for key in data["k"]]
        for name, stored in data["s"].items():
            key, value = _candidate(stored, keys)
            state.slots[name] = (key, _from_json(name, value))
        state.refs = {name: _candidate(stored, keys) for name, stored in data["r"].items()}
        if data["l"] is not None:
            occurred, lifecycle, event_id, kind = data["l"]
            state.last = (int(occurred), int(lifecycle), str(event_id), Kind(kind))
            state.last_at = _time(state.last[0])
        return state

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MergeState):
            return NotImplemented
        return self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]  # mutable


def _offer(slots: dict[str, _Candidate], name: str, rank: tuple[Any, ...], value: Any) -> None:
    held = slots.get(name)
    # Keys of one slot always have the same shape, so they compare element by element.
    if held is None or rank < held[0]:
        slots[name] = (rank, value)


def _from_json(slot: str, value: Any) -> Any:
    if slot in _TIME_SLOTS:
        return _time(value)
    factory = _ENUMS.get(slot)
    return value if factory is None else factory(value)


def _candidate(stored: Any, keys: list[tuple[Any, ...]]) -> _Candidate:
    if not isinstance(stored, list) or len(stored) != 2 or not isinstance(stored[0], int):
        raise ValueError(f"not a merge candidate: {str(stored)[:200]!r}")
    return keys[stored[0]], stored[1]


def _time(microseconds: int) -> datetime:
    return _EPOCH + microseconds * _MICROSECOND


__all__ = ["CallRow", "MergeState", "merge_call", "one_call", "shapes_call"]
